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
func publicConfig(_ name: String) throws -> any HuggingFaceFamily {
    try HuggingFaceFamilies.load(from: packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/\(name).json"))
}

/// A committed public configuration as its family's type.
func publicConfig<F: HuggingFaceFamily>(_ name: String, as family: F.Type) throws -> F {
    try F.load(from: packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/\(name).json"))
}

final class HFConfigTests: XCTestCase {
    private func json(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    private func decode(_ object: [String: Any], path: String = "/m/config.json") throws -> any HuggingFaceFamily {
        try HuggingFaceFamilies.decode(JSONSerialization.data(withJSONObject: object), path: path)
    }

    private func decode<F: HuggingFaceFamily>(_ object: [String: Any], as family: F.Type) throws -> F {
        try F.decode(JSONSerialization.data(withJSONObject: object), path: "/m/config.json")
    }

    func testSharedFixturesDecode() throws {
        let root = try sharedHFTinyFixtures()
        let mixtral = try MixtralConfig.load(from: root.appendingPathComponent("mixtral/config.json"))
        XCTAssertEqual(mixtral.modelType, "mixtral")
        XCTAssertEqual(mixtral.common.numExperts, 4)
        XCTAssertEqual(mixtral.common.headDim, 16)  // "head_dim": null → hidden / heads
        XCTAssertEqual(mixtral.common.ropeTheta, 1_000_000)
        XCTAssertEqual(mixtral.common.ropeScaling, [:])
        XCTAssertEqual(try mixtral.transformerConfig().moe?.normalizeTopK, true)

        let qwen2 = try Qwen2MoEConfig.load(from: root.appendingPathComponent("qwen2_moe/config.json"))
        XCTAssertEqual(qwen2.common.numExperts, 6)
        XCTAssertEqual(qwen2.sharedExpertIntermediateSize, 80)
        XCTAssertEqual(qwen2.layout.sharedExpertWidth, 80)
        XCTAssertTrue(qwen2.qkvBias)
        XCTAssertFalse(qwen2.qwen.normTopKProb)

        let qwen3 = try Qwen3MoEConfig.load(from: root.appendingPathComponent("qwen3_moe/config.json"))
        XCTAssertEqual(qwen3.common.numExperts, 8)  // spelled num_local_experts by transformers 5
        XCTAssertEqual(qwen3.common.numExpertsPerToken, 3)
        XCTAssertEqual(qwen3.common.headDim, 16)
        XCTAssertEqual(qwen3.expertIntermediateSize, 40)

        let olmoe = try OLMoEConfig.load(from: root.appendingPathComponent("olmoe/config.json"))
        XCTAssertEqual(olmoe.expertIntermediateSize, 56)
        XCTAssertEqual(olmoe.common.routerAuxLossCoef, 0.01)

        let ds = try DeepSeekV3Config.load(from: root.appendingPathComponent("deepseek_v3/config.json"))
        XCTAssertEqual(ds.common.numExperts, 8)
        XCTAssertEqual(ds.qLoraRank, 32)
        XCTAssertEqual(ds.kvLoraRank, 24)
        XCTAssertEqual(ds.routedScalingFactor, 2.5)
        XCTAssertEqual(ds.scoringFunc, "sigmoid")
        XCTAssertEqual(ds.layout.sharedExpertWidth, 32)
        XCTAssertEqual((0..<3).map(ds.isSparseLayer), [false, true, true])
    }

    /// transformers 4 and transformers 5 spellings of the same model decode equal.
    func testBothSpellingsDecodeEqual() throws {
        let v4 = try publicConfig("mixtral-8x7b", as: MixtralConfig.self)
        var o = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/mixtral-8x7b.json"))
        o["rope_parameters"] = ["rope_theta": 1_000_000.0, "rope_type": "default"]
        o.removeValue(forKey: "rope_theta")
        XCTAssertEqual(try decode(o, as: MixtralConfig.self), v4)
        // Expert-count spellings.
        o.removeValue(forKey: "num_local_experts")
        o["num_experts"] = 8
        XCTAssertEqual(try decode(o, as: MixtralConfig.self), v4)
        // Per-layer-type nested rope_parameters.
        o["rope_parameters"] = ["full_attention": ["rope_theta": 1_000_000.0, "rope_type": "default"]]
        XCTAssertEqual(try decode(o, as: MixtralConfig.self), v4)

        // DeepSeek-V3: rope_scaling (4) ↔ rope_parameters with the same entries (5).
        let ds4 = try publicConfig("deepseek-v3", as: DeepSeekV3Config.self)
        var d = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/deepseek-v3.json"))
        var rope = d.removeValue(forKey: "rope_scaling") as! [String: Any]
        rope["rope_theta"] = d.removeValue(forKey: "rope_theta")
        d["rope_parameters"] = rope
        d["num_local_experts"] = d.removeValue(forKey: "n_routed_experts")
        XCTAssertEqual(try decode(d, as: DeepSeekV3Config.self), ds4)
        XCTAssertEqual(ds4.common.ropeScaling["factor"]?.number, 40)
        XCTAssertEqual(ds4.common.ropeScaling["type"], .string("yarn"))

        // Qwen3-MoE: num_experts (4) and num_local_experts (5).
        var q = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/qwen3-30b-a3b.json"))
        q["num_local_experts"] = q.removeValue(forKey: "num_experts")
        XCTAssertEqual(try decode(q, as: Qwen3MoEConfig.self), try publicConfig("qwen3-30b-a3b", as: Qwen3MoEConfig.self))
    }

    func testEncodeDecodeRoundTrip() throws {
        func roundTrip<F: HuggingFaceFamily>(_ c: F, _ name: String) throws {
            let back = try HuggingFaceFamilies.decode(JSONEncoder().encode(c))
            XCTAssertEqual(back as? F, c, name)
        }
        for name in ["mixtral-8x7b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b", "olmoe-1b-7b-0924", "deepseek-v3"] {
            try roundTrip(publicConfig(name), name)
        }
        // The fields the public files leave at their defaults, set to other values.
        var o = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/qwen1.5-moe-a2.7b.json"))
        o["use_sliding_window"] = true; o["sliding_window"] = 64; o["mlp_only_layers"] = [3]; o["decoder_sparse_step"] = 2
        o["qkv_bias"] = false; o["head_dim"] = 64; o["initializer_range"] = 0.5
        try roundTrip(decode(o, as: Qwen2MoEConfig.self), "qwen2 variant")
        var d = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/deepseek-v3.json"))
        d["moe_layer_freq"] = 2; d["q_lora_rank"] = NSNull(); d["rope_interleave"] = false; d["num_nextn_predict_layers"] = 0
        try roundTrip(decode(d, as: DeepSeekV3Config.self), "deepseek variant")
        var m = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/mixtral-8x7b.json"))
        m["sliding_window"] = 4096; m["router_jitter_noise"] = 0.1
        try roundTrip(decode(m, as: MixtralConfig.self), "mixtral variant")
        var l = try json(packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/olmoe-1b-7b-0924.json"))
        l["clip_qkv"] = 8.0; l["attention_bias"] = true
        try roundTrip(decode(l, as: OLMoEConfig.self), "olmoe variant")
    }

    func testDefaultsFollowTransformers() throws {
        let minimal: [String: Any] = ["model_type": "qwen2_moe", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                      "num_hidden_layers": 4, "num_attention_heads": 4, "num_experts": 4, "num_experts_per_tok": 2,
                                      "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24]
        let c = try decode(minimal, as: Qwen2MoEConfig.self)
        XCTAssertEqual(c.common.numKeyValueHeads, 4)
        XCTAssertEqual(c.qwen.decoderSparseStep, 1)
        XCTAssertEqual(c.qwen.mlpOnlyLayers, [])
        XCTAssertTrue(c.qkvBias)
        XCTAssertFalse(c.qwen.normTopKProb)
        XCTAssertFalse(c.common.tieWordEmbeddings)
        XCTAssertEqual(c.common.ropeTheta, 10_000)
        XCTAssertEqual(c.common.rmsNormEps, 1e-6)
        XCTAssertEqual(c.common.maxPositionEmbeddings, 32768)
        XCTAssertEqual(c.common.routerAuxLossCoef, 0.001)
        XCTAssertEqual((0..<4).map(c.isSparseLayer), [true, true, true, true])

        var sparse2 = minimal
        sparse2["decoder_sparse_step"] = 2
        sparse2["mlp_only_layers"] = [3]
        XCTAssertEqual((0..<4).map(try decode(sparse2, as: Qwen2MoEConfig.self).isSparseLayer), [false, true, false, false])

        let ds: [String: Any] = ["model_type": "deepseek_v3", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 6, "num_attention_heads": 4, "n_routed_experts": 8, "num_experts_per_tok": 2,
                                 "moe_intermediate_size": 16, "kv_lora_rank": 8, "q_lora_rank": NSNull(), "qk_rope_head_dim": 4,
                                 "qk_nope_head_dim": 4, "v_head_dim": 8, "n_group": 2, "topk_group": 1]
        let d = try decode(ds, as: DeepSeekV3Config.self)
        XCTAssertNil(d.qLoraRank)
        XCTAssertEqual(d.firstKDenseReplace, 3)
        XCTAssertEqual(d.numSharedExperts, 1)
        XCTAssertEqual(d.routedScalingFactor, 2.5)
        XCTAssertEqual(d.scoringFunc, "sigmoid")
        XCTAssertTrue(d.normTopKProb)
        XCTAssertTrue(d.ropeInterleave)
        XCTAssertEqual(d.common.headDim, 4)  // qk_rope_head_dim
        XCTAssertEqual(d.common.maxPositionEmbeddings, 4096)
        XCTAssertEqual((0..<6).map(d.isSparseLayer), [false, false, false, true, true, true])
        var freq = ds
        freq["moe_layer_freq"] = 2
        freq["first_k_dense_replace"] = 1
        XCTAssertEqual((0..<6).map(try decode(freq, as: DeepSeekV3Config.self).isSparseLayer), [false, false, true, false, true, false])

        let mixtral: [String: Any] = ["model_type": "mixtral", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                      "num_local_experts": 4, "num_experts_per_tok": 2]
        let mx = try decode(mixtral, as: MixtralConfig.self)
        XCTAssertEqual(mx.common.ropeTheta, 1_000_000)
        XCTAssertEqual(mx.common.rmsNormEps, 1e-5)
        XCTAssertEqual(mx.common.maxPositionEmbeddings, 4096 * 32)

        let olmoe: [String: Any] = ["model_type": "olmoe", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 4, "num_experts_per_tok": 2]
        let ol = try decode(olmoe, as: OLMoEConfig.self)
        XCTAssertEqual(ol.common.routerAuxLossCoef, 0.01)
        XCTAssertEqual(ol.common.rmsNormEps, 1e-5)
        XCTAssertEqual(ol.common.maxPositionEmbeddings, 4096)
        XCTAssertFalse(ol.normTopKProb)
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
        let qwen = try json(root.appendingPathComponent("qwen3-30b-a3b.json"))  // a family that reads mlp_only_layers
        o = qwen; o["mlp_only_layers"] = [1.5]
        assertConfigError(o, mentions: ["mlp_only_layers"])
        o = qwen; o["mlp_only_layers"] = [-1]
        assertConfigError(o, mentions: ["mlp_only_layers", "negative"])
        XCTAssertThrowsError(try HuggingFaceFamilies.decode(Data("{\"model_type\": ".utf8), path: "/p/config.json")) {
            XCTAssertTrue("\($0)".contains("/p/config.json") && "\($0)".contains("malformed"))
        }
        XCTAssertThrowsError(try MixtralConfig.decode(Data("{\"model_type\": ".utf8), path: "/p/config.json")) {
            XCTAssertTrue("\($0)".contains("/p/config.json") && "\($0)".contains("malformed"))
        }
        XCTAssertThrowsError(try HuggingFaceFamilies.load(from: URL(fileURLWithPath: "/nonexistent/config.json"))) {
            XCTAssertTrue("\($0)".contains("/nonexistent/config.json"))
        }
        o = base; o["hidden_act"] = "swish2"
        let c = try decode(o)
        XCTAssertThrowsError(try ModelArchitecture(huggingFace: c)) { XCTAssertTrue("\($0)".contains("hidden_act")) }
    }
}

/// The registry: every family is found by its model_type, and nothing else is.
final class HuggingFaceFamilyRegistryTests: XCTestCase {
    func testFamiliesRegisterByModelType() throws {
        let expected: [String: any HuggingFaceFamily.Type] = [
            "mixtral": MixtralConfig.self, "qwen2_moe": Qwen2MoEConfig.self, "qwen3_moe": Qwen3MoEConfig.self,
            "olmoe": OLMoEConfig.self, "deepseek_v3": DeepSeekV3Config.self,
        ]
        XCTAssertEqual(HuggingFaceFamilies.supportedModelTypes, expected.keys.sorted())
        for (modelType, family) in expected {
            XCTAssertTrue(try HuggingFaceFamilies.family(modelType: modelType) == family, modelType)
            XCTAssertEqual(family.modelTypes.first, modelType)
        }
        // A model_type belongs to one family only.
        let all = HuggingFaceFamilies.registered.flatMap { $0.modelTypes }
        XCTAssertEqual(Set(all).count, all.count)

        // Each committed checkpoint decodes as the family its model_type names.
        let fixtures: [(String, any HuggingFaceFamily.Type)] = [
            ("mixtral-e3-top1-tied-sharded", MixtralConfig.self), ("qwen2-moe-step2-mlponly", Qwen2MoEConfig.self),
            ("qwen3-moe-e5-k3-bf16", Qwen3MoEConfig.self), ("olmoe-e6-k1-fused", OLMoEConfig.self),
            ("deepseek-v3-noqlora-groups", DeepSeekV3Config.self),
        ]
        for (name, family) in fixtures {
            let c = try HuggingFaceFamilies.load(from: ownHFFixture(name).appendingPathComponent("config.json"))
            XCTAssertTrue(type(of: c) == family, name)
            XCTAssertEqual(c.configJSON["architectures"], .array([.string(family.causalLMClass)]), name)
        }
    }

    func testUnknownModelTypeListsTheSupportedOnes() throws {
        let supported = ["deepseek_v3", "mixtral", "olmoe", "qwen2_moe", "qwen3_moe"]
        XCTAssertThrowsError(try HuggingFaceFamilies.family(modelType: "gpt_oss")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("model_type") && text.contains("'gpt_oss'"), text)
            XCTAssertTrue(text.contains("supported: " + supported.joined(separator: ", ")), text)
        }
        let data = Data(#"{"model_type": "llama4", "vocab_size": 10}"#.utf8)
        XCTAssertThrowsError(try HuggingFaceFamilies.decode(data, path: "/m/config.json")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("/m/config.json") && text.contains("'llama4'"), text)
            for t in supported { XCTAssertTrue(text.contains(t), "\(t) not in: \(text)") }
        }
        XCTAssertThrowsError(try HuggingFaceFamilies.decode(Data(#"{"vocab_size": 10}"#.utf8), path: "/m/config.json")) {
            XCTAssertTrue("\($0)".contains("model_type") && "\($0)".contains("missing"), "\($0)")
        }
    }

    /// A family's own decoder refuses another family's config.json, naming what it expected.
    func testFamilyRefusesOtherModelType() throws {
        let qwen = ownHFFixture("qwen2-moe-step2-mlponly").appendingPathComponent("config.json")
        XCTAssertThrowsError(try MixtralConfig.load(from: qwen)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(qwen.path) && text.contains("model_type") && text.contains("'qwen2_moe'") && text.contains("mixtral"), text)
        }
    }
}
