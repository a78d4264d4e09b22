import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels

/// Malformed model folders: every error is a `SparseMoEError` naming the file and the tensor or field.
final class HuggingFaceBadFileTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("hf-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    static let fixture = "qwen2-moe-step2-mlponly"

    /// A copy of the fixture folder with its tensors and config.json edited.
    func folder(_ name: String, from fixture: String = fixture, tensors edit: (inout [String: Tensor]) throws -> Void = { _ in },
                config editConfig: (inout [String: Any]) -> Void = { _ in }) throws -> URL {
        let src = ownHFFixture(fixture)
        let dir = tmp.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var tensors = try SafetensorsFile(url: src.appendingPathComponent("model.safetensors")).allTensors()
        try edit(&tensors)
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: dir.appendingPathComponent("model.safetensors"))
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as! [String: Any]
        editConfig(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        return dir
    }

    func assertLoadFails(_ dir: URL, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try HuggingFaceModel.load(directory: dir), file: file, line: line) { error in
            guard let e = error as? SparseMoEError, case let .file(path, _) = e else {
                return XCTFail("expected SparseMoEError.file, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(path.hasPrefix(dir.path), "error path \(path) outside \(dir.path)", file: file, line: line)
            for m in mentions { XCTAssertTrue("\(e)".contains(m), "'\(m)' not in: \(e)", file: file, line: line) }
        }
    }

    func testUnmodifiedCopyLoads() throws {
        XCTAssertNoThrow(try HuggingFaceModel.load(directory: try folder("ok")))
    }

    func testMissingTensor() throws {
        let name = "model.layers.1.mlp.experts.3.up_proj.weight"
        let dir = try folder("missing") { $0[name] = nil }
        assertLoadFails(dir, mentions: ["model.safetensors", "missing tensor", name])
    }

    func testExtraTensor() throws {
        let dir = try folder("extra") { $0["model.layers.0.mlp.experts.0.gate_proj.weight"] = Tensor(zeros: [12, 16]) }
        assertLoadFails(dir, mentions: ["model.safetensors", "unexpected tensor", "model.layers.0.mlp.experts.0.gate_proj.weight"])
        let dir2 = try folder("extra2") { $0["model.layers.9.self_attn.q_proj.weight"] = Tensor(zeros: [2, 2]) }
        assertLoadFails(dir2, mentions: ["unexpected tensor", "model.layers.9.self_attn.q_proj.weight"])
    }

    func testWrongShape() throws {
        let name = "model.layers.2.self_attn.k_proj.bias"
        let dir = try folder("shape") { $0[name] = Tensor(zeros: [9]) }
        assertLoadFails(dir, mentions: ["model.safetensors", name, "[9]", "expected [8]"])
    }

    func testNonFloatTensor() throws {
        let name = "model.norm.weight"
        let dir = try folder("dtype") { $0[name] = Tensor(zeros: [16], dtype: .int32) }
        assertLoadFails(dir, mentions: [name, "I32", "floating"])
    }

    func testExpertsStoredTwice() throws {
        let dir = try folder("twice") { $0["model.layers.1.mlp.experts.down_proj"] = Tensor(zeros: [5, 16, 12]) }
        assertLoadFails(dir, mentions: ["stored twice", "model.layers.1.mlp.experts.down_proj"])
    }

    func testFusedExpertsWrongShape() throws {
        let dir = try folder("fused-shape") { t in
            for e in 0..<5 {
                t["model.layers.1.mlp.experts.\(e).gate_proj.weight"] = nil
                t["model.layers.1.mlp.experts.\(e).up_proj.weight"] = nil
            }
            t["model.layers.1.mlp.experts.gate_up_proj"] = Tensor(zeros: [5, 16, 24])  // [E, C, 2F]: not the v5 layout
        }
        assertLoadFails(dir, mentions: ["model.layers.1.mlp.experts.gate_up_proj", "[5, 16, 24]", "expected [5, 24, 16]"])
    }

    func testUnsupportedArchitecture() throws {
        let dir = try folder("arch", config: { $0["model_type"] = "llama" })
        assertLoadFails(dir, mentions: ["config.json", "model_type", "llama"])
    }

    func testMalformedJSON() throws {
        let dir = try folder("json")
        try Data("{\"model_type\": \"qwen2_moe\", ".utf8).write(to: dir.appendingPathComponent("config.json"))
        assertLoadFails(dir, mentions: ["config.json", "malformed JSON"])
    }

    func testMissingConfigField() throws {
        let dir = try folder("field", config: { $0["num_experts_per_tok"] = nil })
        assertLoadFails(dir, mentions: ["config.json", "num_experts_per_tok", "missing"])
    }

    func testMissingConfigFile() throws {
        let dir = try folder("noconfig")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("config.json"))
        assertLoadFails(dir, mentions: ["config.json", "missing"])
    }

    func testMissingWeights() throws {
        let dir = try folder("noweights")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model.safetensors"))
        assertLoadFails(dir, mentions: ["model.safetensors"])
    }

    func testTruncatedSafetensors() throws {
        let dir = try folder("truncated")
        let url = dir.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 100).write(to: url)
        assertLoadFails(dir, mentions: ["model.safetensors"])
    }

    func testRefusedFeatures() throws {
        assertLoadFails(try folder("act", config: { $0["hidden_act"] = "gelu" }), mentions: ["hidden_act", "gelu"])
        assertLoadFails(try folder("yarn", config: { $0["rope_parameters"] = ["rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0] }),
                        mentions: ["rope_parameters", "yarn"])
    }

    func testQwen3AttentionBiasRefused() throws {
        let src = ownHFFixture("qwen3-moe-e5-k3-bf16")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as! [String: Any]
        config["attention_bias"] = true
        let dir = tmp.appendingPathComponent("qwen3bias")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        assertLoadFails(dir, mentions: ["attention_bias", "o_proj"])
    }

    /// A shard listed in the index but absent, and a tensor the index maps to the wrong shard.
    func testShardedErrors() throws {
        let src = ownHFFixture("mixtral-e3-top1-tied-sharded")
        let dir = tmp.appendingPathComponent("sharded")
        try FileManager.default.copyItem(at: src, to: dir)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00002.safetensors"))
        assertLoadFails(dir, mentions: ["model.safetensors.index.json", "model-00002-of-00002.safetensors"])
    }

    func testSaveRefusesShardedFolder() throws {
        let src = ownHFFixture("mixtral-e3-top1-tied-sharded")
        let m = try HuggingFaceModel.load(directory: src)
        let dir = tmp.appendingPathComponent("into-sharded")
        try FileManager.default.copyItem(at: src, to: dir)
        XCTAssertThrowsError(try m.save(to: dir)) { XCTAssertTrue("\($0)".contains("sharded"), "\($0)") }
    }

    /// What transformers skips is skipped: DeepSeek-V3 multi-token-prediction layers, rotary
    /// inv_freq buffers, a stored lm_head of a tied model — and only those.
    func testTensorsTransformersIgnores() throws {
        let ds = "deepseek-v3-noqlora-groups"
        let mtp = "model.layers.2.self_attn.o_proj.weight"
        let withMTP = try folder("mtp", from: ds, tensors: { $0[mtp] = Tensor(zeros: [4, 4]) },
                                 config: { $0["num_nextn_predict_layers"] = 1 })
        XCTAssertNoThrow(try HuggingFaceModel.load(directory: withMTP))
        assertLoadFails(try folder("mtp0", from: ds, tensors: { $0[mtp] = Tensor(zeros: [4, 4]) }), mentions: ["unexpected tensor", mtp])
        let inv = try folder("invfreq", tensors: { $0["model.layers.0.self_attn.rotary_emb.inv_freq"] = Tensor(zeros: [4]) })
        XCTAssertNoThrow(try HuggingFaceModel.load(directory: inv))
        let tied = try folder("tied", config: { $0["tie_word_embeddings"] = true })
        let m = try HuggingFaceModel.load(directory: tied)
        XCTAssertNil(m.model.lmHead)
        let original = try SafetensorsFile(url: ownHFFixture(Self.fixture).appendingPathComponent("model.safetensors"))
        XCTAssertEqual(m.model.embedTokens.scalars, try original.tensor("model.embed_tokens.weight").scalars)
    }

    func testConfigTextWritesFloatsWithDecimalPoint() {
        let text = HuggingFaceModel.configText(.object(["a": .double(0), "b": .double(1e-6), "c": .int(3), "d": .array([.double(2.5)])]))
        XCTAssertEqual(text, "{\n  \"a\": 0.0,\n  \"b\": 1e-06,\n  \"c\": 3,\n  \"d\": [\n    2.5\n  ]\n}")
    }
}
