import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoETraining

/// Activation checkpointing recomputes in backward what the forward did not keep: every
/// gradient must equal the one of the plain forward bit for bit, with the same router
/// noise replayed and the side effects (aux losses, aux-free loads, `lastExperts`) counted once.
final class ActivationCheckpointingTests: XCTestCase {
    /// A tiny model with several layers: the first dense, the others MoE with the given router,
    /// capacity drops, aux and z losses on; GQA with RoPE.
    static func config(router: RouterKind, jitter: Float = 0, capacity: Double? = nil, shared: Bool = false) -> TransformerConfig {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 12)
        m.router = router
        m.jitter = jitter
        m.capacityFactor = capacity
        m.firstDense = 1
        m.auxLossCoefficient = 0.05
        m.zLossCoefficient = 0.01
        if shared { m.sharedExperts = 1; m.sharedExpertIntermediateSize = 10; m.sharedGating = .sigmoid }
        return TransformerConfig(vocabSize: 37, hiddenSize: 16, numLayers: 4, numHeads: 4, numKVHeads: 2,
                                 maxSequenceLength: 12, intermediateSize: 24, moe: m)
    }

    struct Pass {
        var loss: Float
        var aux: Float
        var grads: [String: [Float]]
        var experts: [[Int32]]
        var lastExperts: [[Int32]]
        var pendingLoad: [[Int]]
    }

    /// Forward (training, router noise from `noiseSeed`), loss = CE + aux, backward; everything observable.
    func pass(_ model: TransformerLM, _ mode: ActivationCheckpointing, noiseSeed: UInt64 = 7, tokensSeed: UInt64 = 3) throws -> Pass {
        model.zeroGrad()
        for m in model.moeLayers { m.router.discardPendingLoad() }
        var rng = RandomGenerator(seed: tokensSeed)
        let (b, t) = (3, 10)
        let ids = (0..<(b * t)).map { _ in Int32(rng.next() % UInt64(model.config.vocabSize)) }
        let targets = (0..<(b * t)).map { _ in Int32(rng.next() % UInt64(model.config.vocabSize)) }
        let out = try model.forward(Tensor(indices: ids, shape: [b, t]),
                                    options: ForwardOptions(training: true, rng: RandomGenerator(seed: noiseSeed), checkpointing: mode))
        let ce = crossEntropy(out.logits, targets: Tensor(indices: targets, shape: [b, t]))
        let loss = out.auxLoss.map { add(ce, $0) } ?? ce
        loss.backward()
        var grads: [String: [Float]] = [:]
        for (name, p) in model.namedParameters() { grads[name] = p.grad?.scalars }
        return Pass(loss: loss.item, aux: out.auxLoss?.item ?? 0, grads: grads,
                    experts: out.moe.compactMap { $0?.routing.experts.indexScalars },
                    lastExperts: model.moeLayers.map { $0.lastExperts?.indexScalars ?? [] },
                    pendingLoad: model.moeLayers.map { ($0.router as? SigmoidBiasRouter)?.pendingLoad ?? [] })
    }

    func assertSame(_ a: Pass, _ b: Pass, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.loss, b.loss, "\(what): loss", file: file, line: line)
        XCTAssertEqual(a.aux, b.aux, "\(what): aux loss", file: file, line: line)
        XCTAssertEqual(a.experts, b.experts, "\(what): routing", file: file, line: line)
        XCTAssertEqual(a.lastExperts, b.lastExperts, "\(what): lastExperts", file: file, line: line)
        XCTAssertEqual(a.pendingLoad, b.pendingLoad, "\(what): aux-free loads", file: file, line: line)
        XCTAssertEqual(Set(a.grads.keys), Set(b.grads.keys), file: file, line: line)
        for (name, g) in a.grads {
            XCTAssertNotNil(g, "\(what): \(name) has no gradient", file: file, line: line)
            XCTAssertEqual(g, b.grads[name] ?? nil, "\(what): gradient of \(name)", file: file, line: line)
        }
    }

    /// Every parameter gradient, the loss and the routing equal the plain forward's, bit for
    /// bit, in both modes; for softmax top-k with jitter and capacity drops, noisy top-k, and
    /// sigmoid-bias routers with shared experts.
    func testGradientsAreBitIdenticalInBothModes() throws {
        let configs: [(String, TransformerConfig)] = [
            ("top-k + jitter + capacity", Self.config(router: .softmaxTopK, jitter: 0.2, capacity: 1.0)),
            ("noisy top-k", Self.config(router: .noisyTopK)),
            ("sigmoid bias + shared", Self.config(router: .sigmoidBias, shared: true)),
        ]
        for (name, config) in configs {
            let model = try TransformerLM(config: config, seed: 11)
            let plain = try pass(model, .none)
            for mode in [ActivationCheckpointing.attention, .block] {
                assertSame(plain, try pass(model, mode), "\(name), \(mode)")
            }
        }
    }

    /// The noise matters: another noise seed changes the gradients, so equality above means the
    /// recomputation replayed the forward's noise (a fresh draw would differ).
    func testRouterNoiseChangesGradientsSoReplayIsTested() throws {
        for config in [Self.config(router: .softmaxTopK, jitter: 0.2, capacity: 1.0), Self.config(router: .noisyTopK)] {
            let model = try TransformerLM(config: config, seed: 11)
            let a = try pass(model, .block, noiseSeed: 7), b = try pass(model, .block, noiseSeed: 8)
            XCTAssertNotEqual(a.grads["model.layers.1.mlp.gate.weight"]!, b.grads["model.layers.1.mlp.gate.weight"]!)
        }
    }

    /// Aux-free loads: counted once per forward token slot (T·K per MoE layer), not again on recomputation.
    func testAuxFreeLoadsAreCountedOnce() throws {
        let model = try TransformerLM(config: Self.config(router: .sigmoidBias), seed: 5)
        let p = try pass(model, .block)
        for load in p.pendingLoad { XCTAssertEqual(load.reduce(0, +), 3 * 10 * 2) }
    }

    /// Two micro-batches accumulated and a few optimiser steps: the trained weights are the
    /// same bit for bit with and without checkpointing.
    func testTrainerStepsAreBitIdentical() throws {
        let text = ByteTokenizer().encode(String(repeating: "a stitch in time saves nine. ", count: 20))
        var final: [ActivationCheckpointing: [[Float]]] = [:]
        for mode in ActivationCheckpointing.allCases {
            var cfg = Self.config(router: .softmaxTopK, jitter: 0.1)
            cfg.vocabSize = ByteTokenizer.vocabularySize
            let model = try TransformerLM(config: cfg, seed: 2)
            let dataset = try TextDataset(tokens: text, sequenceLength: 12, validationFraction: 0.1)
            var t = TrainingConfig()
            t.steps = 3; t.batchSize = 2; t.sequenceLength = 12; t.gradAccumulation = 2; t.warmupSteps = 1
            t.checkpointing = mode
            let trainer = try Trainer(model: model, dataset: dataset, config: t)
            for _ in 0..<3 { _ = try trainer.trainStep() }
            final[mode] = model.parameters.map(\.scalars)
        }
        XCTAssertEqual(final[.attention], final[.none])
        XCTAssertEqual(final[.block], final[.none])
    }

    /// The mechanism on its own: a two-output body (one output used twice downstream), an
    /// input used by the body and outside it, parameters reached only through the body.
    func testCheckpointOpMatchesThePlainGraph() throws {
        let w = randomTensor([5, 4], seed: 1), x0 = randomTensor([3, 5], seed: 2)
        w.requiresGrad = true; x0.requiresGrad = true
        func body(_ x: Tensor) -> [Tensor] {
            let h = matmul(x, w)
            return [relu(h), sum(multiply(h, h))]
        }
        func run(_ checkpointed: Bool) throws -> ([Float], [Float], Float) {
            w.zeroGrad(); x0.zeroGrad()
            let x = scale(x0, by: 1.5)
            let outs = checkpointed
                ? try checkpoint(inputs: [x], parameters: [w]) { xs, _ in (outputs: body(xs[0]).map { Optional($0) }, extra: ()) }.outputs.map { $0! }
                : body(x)
            let loss = add(add(sum(multiply(outs[0], outs[0])), scale(outs[1], by: 0.5)), sum(multiply(x, x)))
            loss.backward()
            return (w.grad!.scalars, x0.grad!.scalars, loss.item)
        }
        let (pw, px, pl) = try run(false), (cw, cx, cl) = try run(true)
        XCTAssertEqual(pl, cl)
        XCTAssertEqual(pw, cw)
        XCTAssertEqual(px, cx)
        // Under no-grad the body runs once, directly.
        var calls = 0
        _ = try withNoGrad { try checkpoint(inputs: [x0], parameters: [w]) { xs, recomputing in
            calls += 1; XCTAssertFalse(recomputing); return (outputs: [matmul(xs[0], w)], extra: ()) } }
        XCTAssertEqual(calls, 1)
    }

    /// Checkpointing cannot write a KV cache twice: a forward with a cache and recording throws.
    func testCacheWithCheckpointingThrows() throws {
        let model = try TransformerLM(config: Self.config(router: .softmaxTopK), seed: 1)
        let cache = KVCache(capacity: 12)
        XCTAssertThrowsError(try model.forward(Tensor(indices: [1, 2], shape: [1, 2]),
                                               options: ForwardOptions(cache: cache, checkpointing: .block)))
    }
}

/// The setting travels through configs and runs: older configs without it read as `none`,
/// a bad value names the field, and a run's summary.json reports the mode and the memory.
final class CheckpointingSettingTests: XCTestCase {
    func testTrainingConfigDecodesOlderJSONAndRejectsBadValues() throws {
        var t = TrainingConfig()
        t.checkpointing = .block
        let data = try JSONEncoder().encode(t)
        XCTAssertEqual(try JSONDecoder().decode(TrainingConfig.self, from: data), t)
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(object["checkpointing"] as? String, "block")
        object["checkpointing"] = nil
        let old = try JSONDecoder().decode(TrainingConfig.self, from: try JSONSerialization.data(withJSONObject: object))
        XCTAssertEqual(old.checkpointing, .none)
        object["checkpointing"] = "layers"
        XCTAssertThrowsError(try JSONDecoder().decode(TrainingConfig.self, from: try JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("checkpointing"), "\($0)")
        }
        object["checkpointing"] = "none"
        object["steps"] = nil
        XCTAssertThrowsError(try JSONDecoder().decode(TrainingConfig.self, from: try JSONSerialization.data(withJSONObject: object)),
                             "the other fields stay required")
    }

    /// Presets: every listed name loads and validates; the medium pair is as documented, the
    /// dense one the MoE one's twin (FFN K·F, same active parameters but the router).
    func testPresetsIncludingMediumLoad() throws {
        XCTAssertEqual(TransformerConfig.presetNames,
                       ["tiny-moe", "tiny-dense", "small-moe", "small-dense", "medium-moe", "medium-dense"])
        for name in TransformerConfig.presetNames { XCTAssertNoThrow(try TransformerConfig.preset(named: name).validate(), name) }
        let moe = try TransformerConfig.preset(named: "medium-moe"), dense = try TransformerConfig.preset(named: "medium-dense")
        XCTAssertEqual([moe.hiddenSize, moe.numLayers, moe.numHeads, moe.maxSequenceLength], [512, 8, 8, 512])
        XCTAssertEqual([moe.moe!.numExperts, moe.moe!.expertIntermediateSize, moe.moe!.topK], [16, 1024, 2])
        XCTAssertNil(dense.moe)
        XCTAssertEqual(dense.intermediateSize, 2 * 1024)
        XCTAssertEqual(dense, moe.denseTwinForTests())
        XCTAssertEqual(moe.parameterLowerBound, 8 * (4 * 512 * 512 + 16 * 3 * 512 * 1024 + 16 * 512) + 2 * 260 * 512)
        // tiny-moe: layer 0 dense with the twin's FFN (SwiGLU K·F = 512), layers 1–3 routed;
        // its dense twin is the tiny-dense preset.
        let tiny = try TransformerConfig.preset(named: "tiny-moe")
        XCTAssertEqual((0..<tiny.numLayers).map { tiny.isMoELayer($0) }, [false, true, true, true])
        XCTAssertEqual(tiny.intermediateSize, tiny.moe!.topK * tiny.moe!.expertIntermediateSize)
        XCTAssertEqual(tiny.denseTwinForTests(), try TransformerConfig.preset(named: "tiny-dense"))
    }
}
