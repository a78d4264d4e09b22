import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels
@testable import SparseMoEAnalysis

/// The package root, from this file's path (Tests/SparseMoETests/<file>).
func packageRoot(_ file: String = #filePath) -> URL {
    URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// The shared tiny Hugging Face checkpoints (`../shared/fixtures/hf-tiny` beside the
/// package, or the folder named by SPARSEMOE_HF_TINY), or an XCTSkip when neither exists.
func sharedHFTinyFixtures() throws -> URL {
    var candidates = [packageRoot().deletingLastPathComponent().appendingPathComponent("shared/fixtures/hf-tiny")]
    if let dir = ProcessInfo.processInfo.environment["SPARSEMOE_HF_TINY"] { candidates.append(URL(fileURLWithPath: dir)) }
    for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("mixtral/config.json").path) {
        return c
    }
    throw XCTSkip("shared fixtures not found (looked in \(candidates.map(\.path).joined(separator: ", "))); skipping")
}

/// The committed public configurations under Tests/Fixtures/hf-configs.
func publicConfig(_ name: String) throws -> HFConfig {
    try HFConfig.load(from: packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/\(name).json"))
}

final class HFConfigTests: XCTestCase {
    private func json(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    private func decode(_ object: [String: Any], path: String = "/m/config.json") throws -> HFConfig {
        try HFConfig.decode(JSONSerialization.data(withJSONObject: object), path: path)
    }

    func testSharedFixturesDecode() throws {
        let root = try sharedHFTinyFixtures()
        let mixtral = try HFConfig.load(from: root.appendingPathComponent("mixtral/config.json"))
        XCTAssertEqual(mixtral.modelType, .mixtral)
        XCTAssertEqual(mixtral.numExperts, 4)
        XCTAssertEqual(mixtral.headDim, 16)  // "head_dim": null → hidden / heads
        XCTAssertEqual(mixtral.ropeTheta, 1_000_000)
        XCTAssertEqual(mixtral.ropeScaling, [:])
        XCTAssertTrue(mixtral.normTopKProb)

        let qwen2 = try HFConfig.load(from: root.appendingPathComponent("qwen2_moe/config.json"))
        XCTAssertEqual(qwen2.numExperts, 6)
        XCTAssertEqual(qwen2.sharedExpertWidth, 80)
        XCTAssertTrue(qwen2.qkvBias)
        XCTAssertFalse(qwen2.normTopKProb)

        let qwen3 = try HFConfig.load(from: root.appendingPathComponent("qwen3_moe/config.json"))
        XCTAssertEqual(qwen3.numExperts, 8)  // spelled num_local_experts by transformers 5
        XCTAssertEqual(qwen3.numExpertsPerToken, 3)
        XCTAssertEqual(qwen3.headDim, 16)
        XCTAssertEqual(qwen3.expertIntermediateSize, 40)

        let olmoe = try HFConfig.load(from: root.appendingPathComponent("olmoe/config.json"))
        XCTAssertEqual(olmoe.expertIntermediateSize, 56)
        XCTAssertEqual(olmoe.routerAuxLossCoef, 0.01)

        let ds = try HFConfig.load(from: root.appendingPathComponent("deepseek_v3/config.json"))
        XCTAssertEqual(ds.numExperts, 8)
        XCTAssertEqual(ds.qLoraRank, 32)
        XCTAssertEqual(ds.kvLoraRank, 24)
        XCTAssertEqual(ds.routedScalingFactor, 2.5)
        XCTAssertEqual(ds.scoringFunc, "sigmoid")
        XCTAssertEqual(ds.sharedExpertWidth, 32)
        XCTAssertEqual((0..<3).map(ds.isSparseLayer), [false, true, true])
    }

    /// transformers 4 and transformers 5 spellings of the same model decode equal.
    func testBothSpellingsDecodeEqual() throws {
        let v4 = try publicConfig("mixtral-8x7b")
        var o = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/mixtral-8x7b.json"))
        o["rope_parameters"] = ["rope_theta": 1_000_000.0, "rope_type": "default"]
        o.removeValue(forKey: "rope_theta")
        XCTAssertEqual(try decode(o), v4)
        // Expert-count spellings.
        o.removeValue(forKey: "num_local_experts")
        o["num_experts"] = 8
        XCTAssertEqual(try decode(o), v4)
        // Per-layer-type nested rope_parameters.
        o["rope_parameters"] = ["full_attention": ["rope_theta": 1_000_000.0, "rope_type": "default"]]
        XCTAssertEqual(try decode(o), v4)

        // DeepSeek-V3: rope_scaling (4) ↔ rope_parameters with the same entries (5).
        let ds4 = try publicConfig("deepseek-v3")
        var d = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/deepseek-v3.json"))
        var rope = d.removeValue(forKey: "rope_scaling") as! [String: Any]
        rope["rope_theta"] = d.removeValue(forKey: "rope_theta")
        d["rope_parameters"] = rope
        d["num_local_experts"] = d.removeValue(forKey: "n_routed_experts")
        XCTAssertEqual(try decode(d), ds4)
        XCTAssertEqual(ds4.ropeScaling["factor"]?.number, 40)
        XCTAssertEqual(ds4.ropeScaling["type"], .string("yarn"))

        // Qwen3-MoE: num_experts (4) and num_local_experts (5).
        var q = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/qwen3-30b-a3b.json"))
        q["num_local_experts"] = q.removeValue(forKey: "num_experts")
        XCTAssertEqual(try decode(q), try publicConfig("qwen3-30b-a3b"))
    }

    func testEncodeDecodeRoundTrip() throws {
        for name in ["mixtral-8x7b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b", "olmoe-1b-7b-0924", "deepseek-v3"] {
            let c = try publicConfig(name)
            let back = try HFConfig.decode(JSONEncoder().encode(c))
            XCTAssertEqual(back, c, name)
        }
    }

    func testDefaultsFollowTransformers() throws {
        let minimal: [String: Any] = ["model_type": "qwen2_moe", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                      "num_hidden_layers": 4, "num_attention_heads": 4, "num_experts": 4, "num_experts_per_tok": 2,
                                      "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24]
        let c = try decode(minimal)
        XCTAssertEqual(c.numKeyValueHeads, 4)
        XCTAssertEqual(c.decoderSparseStep, 1)
        XCTAssertEqual(c.mlpOnlyLayers, [])
        XCTAssertTrue(c.qkvBias)
        XCTAssertFalse(c.normTopKProb)
        XCTAssertFalse(c.tieWordEmbeddings)
        XCTAssertEqual(c.ropeTheta, 10_000)
        XCTAssertEqual(c.rmsNormEps, 1e-6)
        XCTAssertEqual((0..<4).map(c.isSparseLayer), [true, true, true, true])

        var sparse2 = minimal
        sparse2["decoder_sparse_step"] = 2
        sparse2["mlp_only_layers"] = [3]
        XCTAssertEqual((0..<4).map(try decode(sparse2).isSparseLayer), [false, true, false, false])

        let ds: [String: Any] = ["model_type": "deepseek_v3", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 6, "num_attention_heads": 4, "n_routed_experts": 8, "num_experts_per_tok": 2,
                                 "moe_intermediate_size": 16, "kv_lora_rank": 8, "q_lora_rank": NSNull(), "qk_rope_head_dim": 4,
                                 "qk_nope_head_dim": 4, "v_head_dim": 8, "n_group": 2, "topk_group": 1]
        let d = try decode(ds)
        XCTAssertNil(d.qLoraRank)
        XCTAssertEqual(d.firstKDenseReplace, 3)
        XCTAssertEqual(d.numSharedExperts, 1)
        XCTAssertEqual(d.routedScalingFactor, 2.5)
        XCTAssertEqual(d.scoringFunc, "sigmoid")
        XCTAssertTrue(d.normTopKProb)
        XCTAssertEqual((0..<6).map(d.isSparseLayer), [false, false, false, true, true, true])
        var freq = ds
        freq["moe_layer_freq"] = 2
        freq["first_k_dense_replace"] = 1
        XCTAssertEqual((0..<6).map(try decode(freq).isSparseLayer), [false, false, true, false, true, false])

        let mixtral: [String: Any] = ["model_type": "mixtral", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                      "num_local_experts": 4, "num_experts_per_tok": 2]
        XCTAssertEqual(try decode(mixtral).ropeTheta, 1_000_000)
    }

    private func assertConfigError(_ object: [String: Any], mentions needles: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(object, path: "/models/x/config.json"), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("/models/x/config.json"), "'\(text)' should name the file", file: file, line: line)
            for n in needles { XCTAssertTrue(text.contains(n), "'\(text)' should mention '\(n)'", file: file, line: line) }
        }
    }

    func testErrorsNameFieldAndFile() throws {
        let root = packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs")
        // Every required field of every architecture, removed one at a time.
        let required: [String: [String]] = [
            "mixtral-8x7b": ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                             "num_local_experts", "num_experts_per_tok"],
            "qwen1.5-moe-a2.7b": ["moe_intermediate_size", "shared_expert_intermediate_size", "num_experts"],
            "qwen3-30b-a3b": ["moe_intermediate_size"],
            "olmoe-1b-7b-0924": ["num_experts"],
            "deepseek-v3": ["moe_intermediate_size", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim",
                            "n_routed_experts"],
        ]
        for (name, fields) in required {
            let o = try json(root.appendingPathComponent("\(name).json"))
            for field in fields {
                var broken = o
                XCTAssertNotNil(broken.removeValue(forKey: field), "\(name) has \(field)")
                let expected = ["num_local_experts", "num_experts", "n_routed_experts"].contains(field) ? "num_local_experts|num_experts|n_routed_experts" : field
                assertConfigError(broken, mentions: [expected, "missing"])
            }
        }
        let base = try json(root.appendingPathComponent("mixtral-8x7b.json"))
        var o = base
        o["model_type"] = "llama4"
        assertConfigError(o, mentions: ["model_type", "llama4", "unsupported"])
        o = base; o["hidden_size"] = "4096"
        assertConfigError(o, mentions: ["hidden_size"])
        o = base; o["hidden_size"] = 0
        assertConfigError(o, mentions: ["hidden_size", "positive"])
        o = base; o["num_key_value_heads"] = 5
        assertConfigError(o, mentions: ["num_key_value_heads"])
        o = base; o["num_experts_per_tok"] = 9
        assertConfigError(o, mentions: ["num_experts_per_tok"])
        o = base; o["num_experts"] = 16
        assertConfigError(o, mentions: ["num_experts", "disagrees"])
        o = base; o["rope_parameters"] = ["rope_theta": 5.0]
        assertConfigError(o, mentions: ["rope_theta", "disagrees"])
        o = base; o["mlp_only_layers"] = [1.5]
        assertConfigError(o, mentions: ["mlp_only_layers"])
        XCTAssertThrowsError(try HFConfig.decode(Data("{\"model_type\": ".utf8), path: "/p/config.json")) {
            XCTAssertTrue("\($0)".contains("/p/config.json") && "\($0)".contains("malformed"))
        }
        XCTAssertThrowsError(try HFConfig.load(from: URL(fileURLWithPath: "/nonexistent/config.json"))) {
            XCTAssertTrue("\($0)".contains("/nonexistent/config.json"))
        }
        o = base; o["hidden_act"] = "swish2"
        let c = try decode(o)
        XCTAssertThrowsError(try ModelArchitecture(huggingFace: c)) { XCTAssertTrue("\($0)".contains("hidden_act")) }
    }
}
