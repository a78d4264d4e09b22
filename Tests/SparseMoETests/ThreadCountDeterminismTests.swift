import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels

/// Adaptive teams (`Threads.adaptive`) let a parallel region run on fewer threads than asked.
/// Every kernel must then split its work by the team it got: on a machine made busy by
/// spinning threads, a training step and inference with 2 threads asked for and adaptive teams
/// on run on teams of 1 and must give exactly the numbers of 1 thread (the same code on one
/// thread); a kernel that split by the count asked for would skip work and differ.
final class ThreadCountDeterminismTests: XCTestCase {
    func numbers(_ model: TransformerLM, _ quantized: [TransformerLM], _ tokens: Tensor, _ targets: Tensor) throws -> [[Float]] {
        model.zeroGrad()
        let out = try model.forward(tokens, options: ForwardOptions(training: true, rng: RandomGenerator(seed: 5)))
        let loss = add(crossEntropy(out.logits, targets: targets), out.auxLoss!)
        loss.backward()
        var result = [loss.scalars] + model.parameters.map { $0.grad?.scalars ?? [] }
        let decode = Tensor(indices: [5], shape: [1, 1])
        for lm in quantized {
            result.append(try withNoGrad { try lm.forward(tokens).logits.scalars + lm.forward(decode).logits.scalars })
        }
        return result
    }

    func testKernelsOnTeamsSmallerThanAskedGiveTheNumbersOfOneThread() throws {
        // tiny-moe's sizes: large enough that GEMMs, norms and the experts split over threads.
        let config = try TransformerConfig.preset(named: "tiny-moe")
        let model = try TransformerLM(config: config, seed: 1)
        let quantized = try [DType.float32, .bfloat16, .int8, .int4].map { d -> TransformerLM in
            let lm = try TransformerLM(config: config, seed: 1)
            lm.convertWeights(WeightDTypeChoice(dtype: d))
            return lm
        }
        var rng = RandomGenerator(seed: 2)
        let ids = (0..<(4 * 64)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        let tokens = Tensor(indices: ids, shape: [4, 64])
        let targets = Tensor(indices: Array(ids.dropFirst()) + [0], shape: [4, 64])
        let reference = try Threads.with(1) { try numbers(model, quantized, tokens, targets) }

        // Busy the machine: one spinning thread per core.
        let stop = ManagedAtomicFlag()
        let spinners = (0..<Threads.available).map { _ in Thread { while !stop.isSet { } } }
        spinners.forEach { $0.start() }
        defer { stop.set() }
        let wasAdaptive = Threads.adaptive
        Threads.adaptive = true
        defer { Threads.adaptive = wasAdaptive }
        let got = try Threads.with(2) { () throws -> [[Float]]? in
            // The runtime recounts the machine's load about once a second.
            let deadline = Date().addingTimeInterval(5)
            while Threads.currentTeam > 1 && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
            guard Threads.currentTeam == 1 else { return nil }
            return try numbers(model, quantized, tokens, targets)
        }
        guard let got else { throw XCTSkip("the OpenMP runtime kept a team of 2 on a busy machine; nothing to compare") }
        XCTAssertEqual(got.count, reference.count)
        for (i, (a, b)) in zip(got, reference).enumerated() {
            XCTAssertTrue(a == b, "array \(i) (0 = loss, then gradients, then inference per dtype) differs from 1 thread")
        }
    }
}

/// A flag set once by one thread and read by others.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
