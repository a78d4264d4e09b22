import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoETraining
@testable import SparseMoERuns

/// Configurations that ask for more memory than the machine has are errors naming the
/// field and the bytes, raised before anything is allocated (never a crash).
final class MemoryBudgetTests: XCTestCase {
    /// The bytes in a `MemoryBudget` message ("need N bytes …, only M bytes …").
    func bytes(in message: String) -> [Int] {
        let words = message.split(whereSeparator: { $0 == " " || $0 == "(" })
        return words.indices.dropFirst().compactMap { i in words[i] == "bytes" ? Int(words[i - 1]) : nil }
    }

    func testProductAndSumSaturateInsteadOfTrapping() {
        XCTAssertEqual(MemoryBudget.product(3, 4, 5), 60)
        XCTAssertEqual(MemoryBudget.product(1 << 40, 1 << 30), Int.max)
        XCTAssertEqual(MemoryBudget.product(2, -1), Int.max, "a negative size is no valid size")
        XCTAssertEqual(MemoryBudget.sum([1, 2, 3]), 6)
        XCTAssertEqual(MemoryBudget.sum([Int.max - 1, 2]), Int.max)
        XCTAssertEqual(MemoryBudget.sum([Int.max, -5]), Int.max)
    }

    func testAvailableMemoryIsReadFromTheSystem() throws {
        let (bytes, source) = MemoryBudget.available()
        XCTAssertGreaterThan(bytes, 1 << 20)
        XCTAssertLessThanOrEqual(UInt64(bytes), max(ProcessInfo.processInfo.physicalMemory, UInt64(bytes)))
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            XCTAssertEqual(source, "MemAvailable in /proc/meminfo")
            XCTAssertTrue(text.contains("MemAvailable:"))
        }
        XCTAssertNoThrow(try MemoryBudget.check(100, for: "x", field: "f", availableBytes: 100))
        XCTAssertThrowsError(try MemoryBudget.check(101, for: "the thing", field: "f", availableBytes: 100)) { error in
            XCTAssertEqual("\(error)", "invalid configuration field 'f': the thing need 101 bytes, but only 100 bytes are available (the given budget); make the model or batch smaller")
        }
    }

    /// The lower bound never exceeds the parameters a model really allocates, and misses
    /// only norms and biases (a few per cent of these tiny models, far less of real ones).
    func testParameterLowerBoundIsBelowAndCloseToTheRealCount() throws {
        var configs = try ["tiny-moe", "tiny-dense"].map { try TransformerConfig.preset(named: $0) }
        var mlp = try TransformerConfig.preset(named: "tiny-moe")
        mlp.moe!.expertKind = .gelu; mlp.ffnKind = .relu; mlp.positionEncoding = .learned; mlp.tiedEmbeddings = true
        mlp.moe!.sharedExperts = 1; mlp.moe!.sharedExpertIntermediateSize = 64; mlp.moe!.every = 2
        configs.append(mlp)
        for name in HuggingFaceOwnFixtureTests.names {
            let hf = try HuggingFaceFamilies.load(from: ownHFFixture(name).appendingPathComponent("config.json"))
            configs.append(try hf.transformerConfig())
        }
        for config in configs {
            let real = try TransformerLM(config: config).namedParameters().map(\.tensor.count).reduce(0, +)
            let bound = config.parameterLowerBound
            XCTAssertLessThanOrEqual(bound, real, "\(config)")
            XCTAssertGreaterThanOrEqual(Double(bound), 0.9 * Double(real), "\(config)")
        }
    }

    func testAHugeVocabularyIsAnErrorNamingTheFieldAndTheBytes() throws {
        var config = try TransformerConfig.preset(named: "tiny-moe")
        config.vocabSize = 1_000_000_000_000
        XCTAssertThrowsError(try TransformerLM(config: config)) { error in
            guard case let SparseMoEError.invalidConfig(field, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "vocab_size")
            let numbers = self.bytes(in: message)
            XCTAssertEqual(numbers.count, 2, message)
            // Embedding and head alone: 2 · V · C floats of 4 bytes.
            XCTAssertGreaterThanOrEqual(numbers.first ?? 0, 2 * 1_000_000_000_000 * 128 * 4, message)
            XCTAssertEqual(numbers.last ?? 0, MemoryBudget.available().bytes, accuracy: 1 << 30, message)
            XCTAssertTrue(message.contains("available"), message)
        }
    }

    func testAHundredThousandExpertsIsAnErrorNamingNumExperts() throws {
        var config = try TransformerConfig.preset(named: "small-moe")
        config.moe!.numExperts = 100_000
        XCTAssertThrowsError(try TransformerLM(config: config)) { error in
            guard case let SparseMoEError.invalidConfig(field, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "moe.num_experts")
            XCTAssertTrue(message.contains("100000 experts"), message)
        }
    }

    func testSizesThatOverflowAnIntAreAnErrorNotATrap() throws {
        var config = try TransformerConfig.preset(named: "tiny-dense")
        config.vocabSize = Int.max / 2
        config.hiddenSize = 1 << 60
        config.numHeads = 1; config.numKVHeads = 1
        XCTAssertThrowsError(try TransformerLM(config: config)) { error in
            XCTAssertTrue("\(error)".contains("more than 9.2e18 bytes"), "\(error)")
        }
    }

    func testAHugeVocabularyInAModelFolderNamesItsConfigFile() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("mem-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        // Hugging Face folder.
        let hf = tmp.appendingPathComponent("hf")
        try FileManager.default.createDirectory(at: hf, withIntermediateDirectories: true)
        let src = ownHFFixture("qwen2-moe-step2-mlponly")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as! [String: Any]
        object["vocab_size"] = 1_000_000_000_000
        try JSONSerialization.data(withJSONObject: object).write(to: hf.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"), to: hf.appendingPathComponent("model.safetensors"))
        // Library-native folder.
        let native = tmp.appendingPathComponent("native")
        try ModelFiles.save(TransformerLM(config: try TransformerConfig.preset(named: "tiny-dense")), to: native)
        var nativeObject = try JSONSerialization.jsonObject(with: Data(contentsOf: native.appendingPathComponent("config.json"))) as! [String: Any]
        nativeObject["vocab_size"] = 1_000_000_000_000
        try JSONSerialization.data(withJSONObject: nativeObject).write(to: native.appendingPathComponent("config.json"))
        for dir in [hf, native] {
            XCTAssertThrowsError(try ModelLoader.load(directory: dir)) { error in
                guard case let SparseMoEError.file(path, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
                XCTAssertEqual(path, dir.appendingPathComponent("config.json").path)
                XCTAssertTrue(message.contains("vocab_size") && message.contains("bytes"), message)
            }
        }
    }

    /// `moe train --config big.json`: the run (the library entry the CLI uses) refuses it.
    func testTrainingRunWithAHugeConfigOrBatchIsAnError() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("mem-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let file = tmp.appendingPathComponent("big.json")
        var config = try TransformerConfig.preset(named: "tiny-moe")
        config.vocabSize = 1_000_000_000_000
        try JSONEncoder().encode(config).write(to: file)
        var o = TrainingRunOptions()
        o.outputDirectory = tmp.appendingPathComponent("out").path
        o.model = .config(file.path)
        o.training.sequenceLength = 16
        o.syntheticCorpusBytes = 20_000
        XCTAssertThrowsError(try TrainingRun(options: o)) { error in
            guard case let SparseMoEError.file(path, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, file.path)
            XCTAssertTrue(message.contains("'vocab_size'") && message.contains("bytes"), message)
        }
        o.model = .config("tiny-moe")
        o.training.batchSize = 1 << 40
        XCTAssertThrowsError(try TrainingRun(options: o)) { error in
            guard case let SparseMoEError.invalidConfig(field, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "batch_size")
            XCTAssertTrue(message.contains("micro-batch"), message)
        }
        o.training.batchSize = 2
        o.syntheticCorpusBytes = Int.max
        XCTAssertThrowsError(try TrainingRun(options: o)) { error in
            XCTAssertTrue("\(error)".contains("targetBytes"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.outputDirectory + "/model"), "nothing was written")
    }

    /// generate sizes its KV cache by the positions it can reach, not by max_position_embeddings.
    func testGenerateSizesItsCacheByPromptAndNewTokens() throws {
        var config = try TransformerConfig.preset(named: "tiny-dense")
        config.maxSequenceLength = 1 << 40
        let lm = try TransformerLM(config: config)
        var sampler = try Sampler(options: SamplingOptions(temperature: 0), seed: 0)
        XCTAssertEqual(try lm.generate(prompt: [1, 2], maxNewTokens: 3, sampler: &sampler).count, 3)
        XCTAssertThrowsError(try lm.generate(prompt: [1, 2], maxNewTokens: 1 << 40, sampler: &sampler)) { error in
            guard case let SparseMoEError.invalidConfig(field, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "max_new_tokens")
            XCTAssertTrue(message.contains("KV cache"), message)
        }
    }

    func testExpertsBuiltDirectlyCheckTheirBytes() {
        var rng = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try Experts(kind: .swiglu, numExperts: 100_000, hiddenSize: 4096, intermediateSize: 14336, rng: &rng)) { e in
            guard case let SparseMoEError.invalidConfig(field, message) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(field, "num_experts")
            XCTAssertTrue(message.contains("100000 experts") && message.contains("available"), message)
        }
    }
}
