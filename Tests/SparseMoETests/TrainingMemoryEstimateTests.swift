import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoETraining

/// The analytic training-memory model against counted bytes: what the tensor pool holds
/// after a training forward (the graph kept for backward) must be the analytic activation
/// bytes within 10 %, for each checkpointing mode, MoE and dense.
final class TrainingMemoryEstimateTests: XCTestCase {
    static func config(dense: Bool = false) -> TransformerConfig {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 48)
        m.firstDense = 1
        let c = TransformerConfig(vocabSize: 96, hiddenSize: 64, numLayers: 3, numHeads: 4, numKVHeads: 2,
                                  maxSequenceLength: 64, intermediateSize: 96, moe: m)
        return dense ? c.denseTwinForTests() : c
    }

    /// Bytes the pool holds after forward + loss, minus before (parameters allocated before).
    func keptBytes(_ model: TransformerLM, _ mode: ActivationCheckpointing, batch b: Int, sequence t: Int) throws -> Int {
        var rng = RandomGenerator(seed: 4)
        let ids = (0..<(b * t)).map { _ in Int32(rng.next() % UInt64(model.config.vocabSize)) }
        let tokens = Tensor(indices: ids, shape: [b, t]), targets = Tensor(indices: ids.reversed(), shape: [b, t])
        let before = StoragePool.shared.liveBytes
        let out = try model.forward(tokens, options: ForwardOptions(training: true, checkpointing: mode))
        let ce = crossEntropy(out.logits, targets: targets)
        let loss = out.auxLoss.map { add(ce, $0) } ?? ce
        let kept = StoragePool.shared.liveBytes - before
        withExtendedLifetime((out, loss)) {}
        return kept
    }

    func testActivationBytesMatchWhatTheForwardKeeps() throws {
        let (b, t) = (4, 32)
        for dense in [false, true] {
            let config = Self.config(dense: dense)
            let model = try TransformerLM(config: config, seed: 1)
            var kept: [ActivationCheckpointing: Int] = [:]
            for mode in ActivationCheckpointing.allCases {
                let counted = try keptBytes(model, mode, batch: b, sequence: t)
                kept[mode] = counted
                let estimate = try TrainingMemoryEstimate(model: config, batchSize: b, sequenceLength: t, checkpointing: mode)
                let analytic = Double(estimate.activationBytes)
                XCTAssertEqual(Double(counted), analytic, accuracy: 0.1 * analytic,
                               "\(dense ? "dense" : "moe") \(mode): counted \(counted) bytes, analytic \(estimate.activationBytes)")
                XCTAssertEqual(estimate.activationBytesWithoutCheckpointing,
                               try TrainingMemoryEstimate(model: config, batchSize: b, sequenceLength: t, checkpointing: .none).activationBytes)
            }
            XCTAssertLessThan(kept[.block]!, kept[.attention]!)
            XCTAssertLessThan(kept[.attention]!, kept[.none]!)
        }
    }

    /// State: 16 bytes per parameter, parameters as the model allocates them.
    func testStateBytesCountEveryParameter() throws {
        let config = Self.config()
        let model = try TransformerLM(config: config, seed: 1)
        let e = try TrainingMemoryEstimate(model: config, batchSize: 2, sequenceLength: 8, checkpointing: .none)
        XCTAssertEqual(e.parameters, model.parameterCount)
        XCTAssertEqual(e.stateBytes, 16 * model.parameterCount)
        XCTAssertEqual(e.rows.count, config.numLayers + 1)
        XCTAssertEqual(e.totalBytes, e.stateBytes + e.activationBytes + e.backwardBytes)
        XCTAssertThrowsError(try TrainingMemoryEstimate(model: config, batchSize: 0, sequenceLength: 8, checkpointing: .none))
    }
}

extension TransformerConfig {
    /// The dense twin: every MoE layer a SwiGLU FFN of K·F.
    func denseTwinForTests() -> TransformerConfig {
        var c = self
        if let m = moe { c.intermediateSize = m.topK * m.expertIntermediateSize; c.moe = nil }
        return c
    }
}
