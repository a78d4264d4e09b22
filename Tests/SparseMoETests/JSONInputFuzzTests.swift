import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels
@testable import SparseMoETraining
@testable import SparseMoERuns

/// Seeded mutation fuzzing of the JSON inputs a user hands the library: `config.json` of
/// every Hugging Face family, `tokenizer.json`, a `--config` TransformerConfig file and a
/// run's `run.json` (training options). Each mutant (`JSONMutator`) must either be
/// accepted — and then a model small enough for the budget is built and run — or be
/// refused with a `SparseMoEError`; never trap, hang or allocate beyond the memory
/// estimate. Counts are printed and recorded in docs/robustness.md.
final class JSONInputFuzzTests: XCTestCase {
    /// SPARSEMOE_FUZZ_SCALE=n runs n times the inputs; SPARSEMOE_FUZZ_SEED=s shifts every seed
    /// (longer or other runs by hand; the default is what `swift test` runs).
    static let scale = max(1, Int(ProcessInfo.processInfo.environment["SPARSEMOE_FUZZ_SCALE"] ?? "") ?? 1)
    static let seedShift = UInt64(ProcessInfo.processInfo.environment["SPARSEMOE_FUZZ_SEED"] ?? "") ?? 0

    /// Configs that fit this budget are built and run on two tokens.
    static let buildBudget = 1 << 20

    func json(_ url: URL) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url)) }

    /// Builds a config within `buildBudget` and runs it; configs beyond it must be refused by the estimate.
    func exercise(_ config: TransformerConfig) throws {
        try config.validate()
        try config.checkMemory(availableBytes: Self.buildBudget)
        try config.checkMemory(copies: 1, availableBytes: Self.buildBudget)
        let lm = try TransformerLM(config: config)
        let t = min(2, config.maxSequenceLength)
        let ids = (0..<t).map { Int32($0 % config.vocabSize) }
        let out = try lm.forward(Tensor(indices: ids, shape: [1, t]))
        XCTAssertEqual(out.logits.shape, [1, t, config.vocabSize])
    }

    /// SPARSEMOE_FUZZ_TRACE=FILE writes every input to FILE before it runs, so that after a
    /// hang or a crash FILE holds the input to blame.
    static let trace = ProcessInfo.processInfo.environment["SPARSEMOE_FUZZ_TRACE"]

    func record(_ counts: inout FuzzCounts, _ body: () throws -> Void, _ input: @autoclosure () -> Data) {
        if let path = Self.trace { try? input().write(to: URL(fileURLWithPath: path)) }
        do {
            try body()
            counts.accepted += 1
        } catch let e as SparseMoEError {
            XCTAssertFalse(e.description.isEmpty)
            counts.rejected += 1
        } catch {
            XCTFail("not a SparseMoEError: \(error) for \(String(decoding: input(), as: UTF8.self))")
        }
    }

    /// Hugging Face config.json: the repository's fixtures of every family, the shared
    /// transformers fixtures when present, and configs written by the library's own export.
    func huggingFaceSeeds() throws -> [JSONValue] {
        var seeds = try HuggingFaceOwnFixtureTests.names.map { try json(ownHFFixture($0).appendingPathComponent("config.json")) }
        let shared = packageRoot().deletingLastPathComponent().appendingPathComponent("shared/fixtures/hf-tiny")
        for family in (try? FileManager.default.contentsOfDirectory(atPath: shared.path))?.sorted() ?? [] {
            if let v = try? json(shared.appendingPathComponent(family).appendingPathComponent("config.json")) { seeds.append(v) }
        }
        var small = try TransformerConfig.preset(named: "tiny-moe")
        small.moe!.firstDense = 0  // every layer routed, as the test needs
        small.hiddenSize = 16; small.numHeads = 2; small.numKVHeads = 2; small.numLayers = 2; small.vocabSize = 40
        small.moe!.expertIntermediateSize = 8; small.intermediateSize = 16
        for family in HuggingFaceFamilies.registered {
            if let exported = try? HFConfigExport.json(for: small, as: family) { seeds.append(.object(exported)) }
        }
        return seeds
    }

    func testFuzzHuggingFaceConfigs() throws {
        let seeds = try huggingFaceSeeds()
        XCTAssertGreaterThanOrEqual(seeds.count, 5)
        var mutator = JSONMutator(seed: 17 &+ Self.seedShift)
        var counts = FuzzCounts()
        for i in 0..<(400 * Self.scale) {
            let data = mutator.mutate(seeds[i % seeds.count])
            record(&counts, {
                let hf = try HuggingFaceFamilies.decode(data, path: "fuzz/config.json")
                try self.exercise(try hf.transformerConfig())
            }, data)
        }
        // The unmutated seeds all load.
        for seed in seeds {
            let hf = try HuggingFaceFamilies.decode(try JSONEncoder().encode(seed))
            XCTAssertNoThrow(try exercise(try hf.transformerConfig()))
        }
        print("fuzz config.json (\(seeds.count) seeds): \(counts)")
        XCTAssertGreaterThan(counts.accepted, 0)
        XCTAssertGreaterThan(counts.rejected, 0)
    }

    /// Found by the fuzzer: a DeepSeek-V3 config with hidden_size / num_attention_heads odd (2 / 2)
    /// crashed the forward, which built rotary tables for that width although latent attention
    /// rotates only its qk_rope_head_dim features.
    func testLatentAttentionIgnoresTheWidthPerHead() throws {
        var tried = 0
        for seed in try huggingFaceSeeds() {
            guard case var .object(o) = seed, o["model_type"] == .string("deepseek_v3") else { continue }
            o["hidden_size"] = .int(2); o["num_attention_heads"] = .int(2); o["num_key_value_heads"] = .int(2)
            let config = try HuggingFaceFamilies.decode(JSONEncoder().encode(JSONValue.object(o))).transformerConfig()
            XCTAssertNotNil(config.latentAttention)
            try exercise(config)
            tried += 1
        }
        XCTAssertGreaterThan(tried, 0, "no deepseek_v3 seed")
    }

    /// Found by the fuzzer: `num_hidden_layers` 2⁶³−1 made the conversion walk every layer.
    func testAHugeLayerCountIsRefusedWithoutWalkingTheLayers() throws {
        for seed in try huggingFaceSeeds() {
            guard case var .object(o) = seed else { continue }
            o["num_hidden_layers"] = .int(Int.max)
            XCTAssertThrowsError(try HuggingFaceFamilies.decode(JSONEncoder().encode(JSONValue.object(o))).transformerConfig()) { error in
                XCTAssertTrue("\(error)".contains("num_hidden_layers"), "\(error)")
            }
        }
    }

    func testFuzzTokenizers() throws {
        let seeds = try ["tokenizer-gpt2", "tokenizer-qwen-split"].map { try json(ownHFFixture($0).appendingPathComponent("tokenizer.json")) }
        var mutator = JSONMutator(seed: 18 &+ Self.seedShift)
        var counts = FuzzCounts()
        for i in 0..<(300 * Self.scale) {
            let data = mutator.mutate(seeds[i % seeds.count])
            record(&counts, {
                let tokenizer = try ByteLevelBPETokenizer(json: data)
                let ids = try tokenizer.encode("Hello, wörld! 123 <|endoftext|>\n\tdone")
                _ = tokenizer.decode(ids + [-1, Int32.max])
            }, data)
        }
        print("fuzz tokenizer.json (\(seeds.count) seeds): \(counts)")
        XCTAssertGreaterThan(counts.accepted, 0)
        XCTAssertGreaterThan(counts.rejected, 0)
    }

    /// A `--config` file: TransformerConfig JSON (snake_case), then built within the budget.
    func testFuzzTransformerConfigFiles() throws {
        var seeds: [JSONValue] = []
        for name in ["tiny-moe", "tiny-dense"] {
            var c = try TransformerConfig.preset(named: name)
            c.hiddenSize = 16; c.numHeads = 2; c.numKVHeads = 2; c.numLayers = 2; c.intermediateSize = 16
            c.moe?.expertIntermediateSize = 8
            seeds.append(try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(c)))
        }
        var mutator = JSONMutator(seed: 19 &+ Self.seedShift)
        var counts = FuzzCounts()
        for i in 0..<(500 * Self.scale) {
            let data = mutator.mutate(seeds[i % seeds.count])
            record(&counts, {
                let config: TransformerConfig
                do { config = try decodeJSON(TransformerConfig.self, from: data) } catch {
                    throw SparseMoEError.file(path: "fuzz.json", message: describeDecodingError(error))
                }
                try self.exercise(config)
            }, data)
        }
        print("fuzz TransformerConfig JSON (\(seeds.count) seeds): \(counts)")
        XCTAssertGreaterThan(counts.accepted, 0)
        XCTAssertGreaterThan(counts.rejected, 0)
    }

    /// run.json (`TrainingRunOptions`, what `--resume` reads): decoded, validated, and the
    /// memory of its data and training estimated for the model it names.
    func testFuzzTrainingRunOptions() throws {
        var seeds: [JSONValue] = []
        for edit: (inout TrainingRunOptions) -> Void in [{ _ in }, { $0.dataPath = "/tmp/x.txt"; $0.dense = true },
                                                        { $0.model = .initFrom("/tmp/model"); $0.training.objective = .masked }] {
            var o = TrainingRunOptions()
            edit(&o)
            seeds.append(try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(o)))
        }
        var mutator = JSONMutator(seed: 20 &+ Self.seedShift)
        var counts = FuzzCounts()
        for i in 0..<(1500 * Self.scale) {
            let data = mutator.mutate(seeds[i % seeds.count])
            record(&counts, {
                let o: TrainingRunOptions
                do { o = try decodeJSON(TrainingRunOptions.self, from: data) } catch {
                    throw SparseMoEError.file(path: "run.json", message: describeDecodingError(error))
                }
                try o.training.validate()
                try SyntheticCorpusConfig(seed: o.training.seed, targetBytes: o.syntheticCorpusBytes).validate()
                _ = TextDataset.minimumTokens(sequenceLength: o.training.sequenceLength, validationFraction: o.validationFraction)
                if case let .config(spec) = o.model, TransformerConfig.presetNames.contains(spec) {
                    try o.training.checkMemory(model: TransformerConfig.preset(named: spec))
                }
            }, data)
        }
        print("fuzz run.json (\(seeds.count) seeds): \(counts)")
        XCTAssertGreaterThan(counts.accepted, 0)
        XCTAssertGreaterThan(counts.rejected, 0)
    }
}
