import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoETraining
@testable import SparseMoERuns

final class TrainerTests: XCTestCase {
    func tinyModelConfig(causal: Bool = true, router: RouterKind = .softmaxTopK) -> TransformerConfig {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 32)
        m.router = router
        var c = TransformerConfig(vocabSize: ByteTokenizer.vocabularySize, hiddenSize: 32, numLayers: 2, numHeads: 4,
                                  maxSequenceLength: 32, intermediateSize: 64, moe: m)
        c.causal = causal
        return c
    }

    /// A 20 kB synthetic corpus (seed 4) cut into sequences of 16 tokens.
    func syntheticDataset() throws -> TextDataset {
        let corpus = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 4, targetBytes: 20_000))
        return try TextDataset(tokens: corpus.tokens, sequenceLength: 16)
    }

    func trainingConfig(steps: Int, objective: Objective = .causal) -> TrainingConfig {
        var t = TrainingConfig()
        t.steps = steps
        t.batchSize = 4
        t.sequenceLength = 16
        t.learningRate = 3e-3
        t.warmupSteps = 5
        t.weightDecay = 0
        t.evalBatches = 2
        t.objective = objective
        return t
    }

    func testOverfitsASingleBatchCausalAndMasked() throws {
        for objective in [Objective.causal, .masked] {
            // One window per split: every random batch is the same 16 tokens.
            let text = ByteTokenizer().encode("the quick brown f")
            let dataset = try TextDataset(tokens: text, sequenceLength: 16, validationFraction: 0)
            let model = try TransformerLM(config: tinyModelConfig(causal: objective == .causal), seed: 1)
            // Masked LM re-draws the masked positions every step, so it needs more steps: at 400
            // the median below was 0.29–0.42 depending on which OpenBLAS sgemm kernels ran (its
            // Haswell or its generic SSE3 ones), still falling; at 800 it ends at 0.01–0.02.
            var cfg = trainingConfig(steps: objective == .causal ? 150 : 800, objective: objective)
            cfg.learningRate = 1e-2
            let trainer = try Trainer(model: model, dataset: dataset, config: cfg)
            var losses: [Double] = []
            for _ in 0..<cfg.steps { losses.append(try trainer.trainStep().loss) }
            if objective == .causal {
                XCTAssertLessThan(losses.last!, 0.1, "causal: final loss \(losses.last!)")
            } else {
                // Each step masks other positions, so single-step losses swing (0.05–1.3 over the
                // last steps, with the exact values depending on rounding); hold their median.
                let median = losses.suffix(50).sorted()[25]
                XCTAssertLessThan(median, 0.2, "masked: median of the last 50 step losses \(median) (first \(losses[0]))")
            }
        }
    }

    func testLossDecreasesOnTheSyntheticCorpus() throws {
        var cc = SyntheticCorpusConfig(seed: 3, targetBytes: 60_000)
        cc.maxOperand = 20
        let corpus = try SyntheticCorpus(config: cc)
        let dataset = try TextDataset(tokens: corpus.tokens, sequenceLength: 16)
        let model = try TransformerLM(config: tinyModelConfig(), seed: 2)
        let trainer = try Trainer(model: model, dataset: dataset, config: trainingConfig(steps: 200))
        let before = try trainer.evaluate()
        for _ in 0..<200 { _ = try trainer.trainStep() }
        let after = try trainer.evaluate()
        XCTAssertLessThan(after, before - 1.5, "validation loss \(before) → \(after)")
        XCTAssertLessThan(after, 2.6)
    }

    func testSaveLoadGivesIdenticalLogits() throws {
        let model = try TransformerLM(config: tinyModelConfig(router: .sigmoidBias), seed: 5)
        (model.moeLayers[0].router as! SigmoidBiasRouter).bias.floats[1] = 0.25
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-save-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try ModelFiles.save(model, to: dir)
        let loaded = try ModelFiles.load(from: dir)
        let tokens = Tensor(indices: [72, 101, 108, 108, 111], shape: [1, 5])
        let a = try withNoGrad { try model.forward(tokens).logits.scalars }
        let b = try withNoGrad { try loaded.forward(tokens).logits.scalars }
        XCTAssertEqual(a, b)
        for ((n1, t1), (n2, t2)) in zip(model.namedParameters(), loaded.namedParameters()) {
            XCTAssertEqual(n1, n2)
            XCTAssertEqual(t1.scalars, t2.scalars, n1)
        }
    }

    func testResumeContinuesBitIdentically() throws {
        let dataset = try syntheticDataset()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        for (router, precision) in [(RouterKind.softmaxTopK, MatmulPrecision.float32), (.sigmoidBias, .float32), (.softmaxTopK, .bfloat16)] {
            var cfg = trainingConfig(steps: 12)
            cfg.precision = precision
            // Uninterrupted run.
            let full = try Trainer(model: try TransformerLM(config: tinyModelConfig(router: router), seed: 6), dataset: dataset, config: cfg)
            var reference: [Double] = []
            for _ in 0..<12 { reference.append(try full.trainStep().loss) }
            // Interrupted at step 5, resumed from the checkpoint in a fresh trainer.
            let first = try Trainer(model: try TransformerLM(config: tinyModelConfig(router: router), seed: 6), dataset: dataset, config: cfg)
            var resumed: [Double] = []
            for _ in 0..<5 { resumed.append(try first.trainStep().loss) }
            try TrainingCheckpoint.save(first, to: dir)
            let folder = try TrainingCheckpoint.resolve(dir)
            let second = try Trainer(model: try ModelFiles.load(from: folder), dataset: dataset, config: cfg)
            try TrainingCheckpoint.restore(second, from: folder)
            for _ in 5..<12 { resumed.append(try second.trainStep().loss) }
            XCTAssertEqual(resumed, reference, "\(router) \(precision)")
            XCTAssertEqual(second.model.parameters.map(\.scalars), full.model.parameters.map(\.scalars))
        }
    }

    func testInterruptedSaveLeavesThePreviousCheckpointLoadable() throws {
        let dataset = try syntheticDataset()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-crash-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let trainer = try Trainer(model: try TransformerLM(config: tinyModelConfig(), seed: 7), dataset: dataset, config: trainingConfig(steps: 6))
        for _ in 0..<2 { _ = try trainer.trainStep() }
        try TrainingCheckpoint.save(trainer, to: dir)
        let saved = trainer.model.parameters.map(\.scalars)
        for _ in 0..<2 { _ = try trainer.trainStep() }
        // The new checkpoint's files are written, but the process dies before `latest` switches;
        // a leftover temporary file is also lying around.
        let next = dir.appendingPathComponent(String(format: "step-%06d", trainer.step))
        try TrainingCheckpoint.writeFiles(trainer, to: next)
        try Data("partial".utf8).write(to: dir.appendingPathComponent(".latest.tmp-crash"))
        let folder = try TrainingCheckpoint.resolve(dir)
        XCTAssertEqual(folder.lastPathComponent, "step-000002")
        XCTAssertEqual(try ModelFiles.load(from: folder).parameters.map(\.scalars), saved)
        XCTAssertEqual(try TrainingCheckpoint.loadState(folder).step, 2)
    }

    func testNaNGradientsSkipTheStep() throws {
        let dataset = try TextDataset(tokens: ByteTokenizer().encode(String(repeating: "abcdefgh", count: 40)), sequenceLength: 16)
        let model = try TransformerLM(config: tinyModelConfig(), seed: 8)
        let trainer = try Trainer(model: model, dataset: dataset, config: trainingConfig(steps: 3))
        model.embedTokens.floats[Int(ByteTokenizer().encode("a")[0]) * 32] = .nan
        let before = model.parameters.map(\.scalars)
        let report = try trainer.trainStep()
        XCTAssertTrue(report.skipped)
        XCTAssertEqual(trainer.optimizer.stepCount, 0)
        for (b, a) in zip(before, model.parameters.map(\.scalars)) {
            XCTAssertEqual(b.count, a.count)
            XCTAssertTrue(zip(b, a).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) })
        }
    }

    func testFrozenRoutersDoNotMove() throws {
        let dataset = try TextDataset(tokens: ByteTokenizer().encode(String(repeating: "hello world ", count: 20)), sequenceLength: 16)
        let model = try TransformerLM(config: tinyModelConfig(), seed: 9)
        var cfg = trainingConfig(steps: 3)
        cfg.freeze = .routers
        let trainer = try Trainer(model: model, dataset: dataset, config: cfg)
        let router = model.moeLayers[0].router as! TopKRouter
        let before = router.weight.scalars, expertsBefore = model.moeLayers[0].experts.w1.scalars
        for _ in 0..<3 { _ = try trainer.trainStep() }
        XCTAssertEqual(router.weight.scalars, before)
        XCTAssertNotEqual(model.moeLayers[0].experts.w1.scalars, expertsBefore)
    }

    func testInvalidTrainingSetupsFailBeforeWork() throws {
        let dataset = try TextDataset(tokens: ByteTokenizer().encode(String(repeating: "x", count: 400)), sequenceLength: 16)
        var cfg = trainingConfig(steps: 1)
        cfg.objective = .masked
        XCTAssertThrowsError(try Trainer(model: try TransformerLM(config: tinyModelConfig()), dataset: dataset, config: cfg)) {
            XCTAssertTrue("\($0)".contains("causal"), "\($0)")
        }
        var bad = trainingConfig(steps: 0)
        bad.steps = 0
        XCTAssertThrowsError(try Trainer(model: try TransformerLM(config: tinyModelConfig()), dataset: dataset, config: bad)) {
            XCTAssertTrue("\($0)".contains("steps"), "\($0)")
        }
    }
}

import Foundation

final class TrainingRunTests: XCTestCase {
    func options(_ mutate: (inout TrainingRunOptions) -> Void) -> TrainingRunOptions {
        var o = TrainingRunOptions()
        o.outputDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-run-\(UUID().uuidString)").path
        o.training.steps = 2
        o.training.batchSize = 2
        o.training.sequenceLength = 16
        o.training.evalBatches = 1
        o.syntheticCorpusBytes = 20_000
        mutate(&o)
        return o
    }

    func testBadSetupsFailBeforeAnyWorkWithAClearMessage() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-empty-\(UUID().uuidString).txt")
        try Data().write(to: empty)
        defer { try? FileManager.default.removeItem(at: empty) }
        let cases: [(TrainingRunOptions, String)] = [
            (options { $0.dataPath = "/nonexistent/data.txt" }, "/nonexistent/data.txt"),
            (options { $0.dataPath = empty.path }, "empty"),
            (options { $0.model = .config("no-such-preset") }, "tiny-moe"),
            (options { $0.training.sequenceLength = 512 }, "max_position_embeddings"),
            (options { $0.model = .initFrom("/nonexistent/model") }, "/nonexistent/model"),
        ]
        for (o, needle) in cases {
            XCTAssertThrowsError(try TrainingRun(options: o)) { error in
                XCTAssertTrue("\(error)".contains(needle), "'\(error)' should mention '\(needle)'")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: o.outputDirectory), "no output before the checks pass")
        }
    }

    func testRunWritesTheReportFolder() throws {
        let o = options { $0.model = .config("tiny-moe") }
        defer { try? FileManager.default.removeItem(atPath: o.outputDirectory) }
        let summary = try TrainingRun(options: o).run()
        XCTAssertEqual(summary.steps, 2)
        for file in ["summary.json", "loss.svg", "expert_load.svg", "run.json", "model/config.json", "model/model.safetensors",
                     "checkpoints/latest"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: o.outputDirectory + "/" + file), file)
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: o.outputDirectory + "/summary.json"))) as! [String: Any]
        for key in ["val_loss", "train_loss", "tokens_per_second", "total_params", "active_params", "steps",
                    "step_ms_p50", "step_ms_p95"] {
            XCTAssertNotNil(json[key], key)
        }
        let p50 = try XCTUnwrap(json["step_ms_p50"] as? Double), p95 = try XCTUnwrap(json["step_ms_p95"] as? Double)
        XCTAssertGreaterThan(p50, 0)
        XCTAssertGreaterThanOrEqual(p95, p50)
        // tiny-moe by hand: embeddings and lm_head 2·260·128; per layer q,k,v,o 4·128², two norms;
        // layer 0 a SwiGLU FFN 3·128·512, layers 1–3 a router 128·8 and 8 SwiGLU experts 3·128·256 each;
        // final norm.
        let attention = 4 * 128 * 128 + 2 * 128
        let dense = attention + 3 * 128 * 512, sparse = attention + 128 * 8 + 8 * 3 * 128 * 256
        XCTAssertEqual(json["total_params"] as? Int, 2 * 260 * 128 + dense + 3 * sparse + 128)
    }
}
