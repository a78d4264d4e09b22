import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels

/// Adaptive teams (`Threads.adaptive`) let a parallel region run on fewer threads than asked,
/// so no kernel may depend on the team it gets: a training step and an inference forward on
/// 1 thread and on 2 threads must give bit-identical numbers.
final class ThreadCountDeterminismTests: XCTestCase {
    func lossAndGradients(_ model: TransformerLM, _ tokens: Tensor, _ targets: Tensor, threads: Int) throws -> [[Float]] {
        try Threads.with(threads) {
            model.zeroGrad()
            let out = try model.forward(tokens, options: ForwardOptions(training: true, rng: RandomGenerator(seed: 5)))
            let loss = add(crossEntropy(out.logits, targets: targets), out.auxLoss!)
            loss.backward()
            return [loss.scalars] + model.parameters.map { $0.grad?.scalars ?? [] }
        }
    }

    func testTrainingStepAndQuantizedInferenceAreTheSameOnOneAndTwoThreads() throws {
        // tiny-moe's sizes: large enough that GEMMs, norms and the experts split over threads.
        let config = try TransformerConfig.preset(named: "tiny-moe")
        let model = try TransformerLM(config: config, seed: 1)
        var rng = RandomGenerator(seed: 2)
        let ids = (0..<(4 * 64)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        let tokens = Tensor(indices: ids, shape: [4, 64])
        let targets = Tensor(indices: Array(ids.dropFirst()) + [0], shape: [4, 64])
        let one = try lossAndGradients(model, tokens, targets, threads: 1)
        let two = try lossAndGradients(model, tokens, targets, threads: 2)
        XCTAssertEqual(one.count, two.count)
        for (i, (a, b)) in zip(one, two).enumerated() { XCTAssertTrue(a == b, "array \(i) (0 = loss) differs between 1 and 2 threads") }

        for dtype in [DType.float32, .bfloat16, .int8, .int4] {
            let lm = try TransformerLM(config: config, seed: 1)
            lm.convertWeights(WeightDTypeChoice(dtype: dtype))
            let decode = Tensor(indices: [5], shape: [1, 1])
            let logits = { (n: Int) throws -> [Float] in
                try Threads.with(n) {
                    try withNoGrad { try lm.forward(tokens).logits.scalars + lm.forward(decode).logits.scalars }
                }
            }
            XCTAssertTrue(try logits(1) == logits(2), "\(dtype) inference differs between 1 and 2 threads")
        }
    }
}
