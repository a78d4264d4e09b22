import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels

/// Loads a model folder and compares its logits for tokens.json with expected.json.
func hfLogitsMaxDiff(_ dir: URL) throws -> (maxDiff: Float, model: HuggingFaceModel) {
    let loaded = try HuggingFaceModel.load(directory: dir)
    struct Tokens: Decodable { let tokens: [Int32] }
    struct Expected: Decodable { let logits: [[Float]] }
    let tokens = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: dir.appendingPathComponent("tokens.json"))).tokens
    let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json"))).logits
    let out = try loaded.model.forward(Tensor(indices: tokens, shape: [1, tokens.count]))
    let v = loaded.model.config.vocabSize
    XCTAssertEqual(out.logits.shape, [1, tokens.count, v])
    XCTAssertEqual(expected.count, tokens.count)
    let got = out.logits.scalars
    var worst: Float = 0
    for (t, row) in expected.enumerated() {
        XCTAssertEqual(row.count, v)
        for (j, x) in row.enumerated() { worst = max(worst, abs(got[t * v + j] - x)) }
    }
    return (worst, loaded)
}

final class HuggingFaceSharedFixtureTests: XCTestCase {
    func check(_ arch: String) throws {
        let dir = try sharedHFTinyFixtures().appendingPathComponent(arch)
        let (d, _) = try hfLogitsMaxDiff(dir)
        print("hf-tiny \(arch): max |diff| = \(d)")
        XCTAssertLessThanOrEqual(d, 1e-4, arch)
    }
    func testMixtral() throws { try check("mixtral") }
    func testQwen2MoE() throws { try check("qwen2_moe") }
    func testQwen3MoE() throws { try check("qwen3_moe") }
    func testOLMoE() throws { try check("olmoe") }
    func testDeepSeekV3() throws { try check("deepseek_v3") }
}

/// The committed fixtures under Tests/Fixtures/hf (made by scripts/make_hf_fixtures.py).
func ownHFFixture(_ name: String) -> URL {
    packageRoot().appendingPathComponent("Tests/Fixtures/hf/\(name)")
}

final class HuggingFaceOwnFixtureTests: XCTestCase {
    static let names = ["mixtral-e3-top1-tied-sharded", "qwen2-moe-step2-mlponly", "qwen3-moe-e5-k3-bf16",
                        "olmoe-e6-k1-fused", "deepseek-v3-noqlora-groups"]

    func check(_ name: String) throws -> HuggingFaceModel {
        let (d, loaded) = try hfLogitsMaxDiff(ownHFFixture(name))
        print("own fixture \(name): max |diff| = \(d)")
        XCTAssertLessThanOrEqual(d, 1e-4, name)
        return loaded
    }

    func testMixtralThreeExpertsTop1TiedSharded() throws {
        let m = try check("mixtral-e3-top1-tied-sharded")
        XCTAssertTrue(m.model.config.tiedEmbeddings)
        XCTAssertNil(m.model.lmHead)
        XCTAssertEqual(m.model.config.moe?.topK, 1)
    }

    func testQwen2SparseStepAndMLPOnlyLayers() throws {
        let m = try check("qwen2-moe-step2-mlponly")
        XCTAssertEqual((0..<4).map { m.model.config.isMoELayer($0) }, [false, true, false, false])
        XCTAssertEqual(m.model.moeLayers.count, 1)
        XCTAssertNotNil(m.model.moeLayers[0].sharedGate)
    }

    func testQwen3FiveExpertsTop3BF16() throws {
        let m = try check("qwen3-moe-e5-k3-bf16")
        XCTAssertEqual(m.model.config.resolvedHeadDim, 12)
        XCTAssertEqual(m.model.config.moe?.normalizeTopK, false)
    }

    func testOLMoEFusedExpertTensors() throws {
        _ = try check("olmoe-e6-k1-fused")
    }

    func testDeepSeekWithoutQCompressionNegativeBias() throws {
        let m = try check("deepseek-v3-noqlora-groups")
        XCTAssertEqual(m.model.config.ropeStyle, .halfSplit)
        XCTAssertNil(m.model.config.latentAttention?.qLoraRank)
        let bias = (m.model.moeLayers[0].router as! SigmoidBiasRouter).bias.scalars
        XCTAssertTrue(bias.contains { $0 < 0 }, "fixture should carry negative correction biases")
    }

    /// load → save → load gives identical tensors, for every committed fixture (and the
    /// folder written has the Hub layout: per-expert names, config.json in HF spelling).
    func testRoundTripIdenticalTensors() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("hf-roundtrip-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        for name in Self.names {
            let a = try HuggingFaceModel.load(directory: ownHFFixture(name))
            let out = tmp.appendingPathComponent(name)
            try a.save(to: out)
            let b = try HuggingFaceModel.load(directory: out)
            XCTAssertEqual(b.hfConfig.modelType, a.hfConfig.modelType)
            XCTAssertEqual(b.model.config, a.model.config, name)
            let pa = a.model.namedParameters(), pb = b.model.namedParameters()
            XCTAssertEqual(pa.map(\.name), pb.map(\.name))
            for (x, y) in zip(pa, pb) {
                XCTAssertEqual(x.tensor.shape, y.tensor.shape, x.name)
                XCTAssertEqual(x.tensor.scalars, y.tensor.scalars, "\(name): \(x.name)")
            }
            // The written file uses the architecture's per-expert names.
            let file = try SafetensorsFile(url: out.appendingPathComponent("model.safetensors"))
            if a.hfConfig.modelType == "mixtral" {
                XCTAssertNotNil(file.info("model.layers.0.block_sparse_moe.experts.0.w1.weight"))
            } else {
                let layer = (0..<a.model.config.numLayers).first { a.model.config.isMoELayer($0) }!
                XCTAssertNotNil(file.info("model.layers.\(layer).mlp.experts.0.gate_proj.weight"), name)
            }
            // And the saved folder still reproduces transformers' logits.
            try FileManager.default.copyItem(at: ownHFFixture(name).appendingPathComponent("tokens.json"), to: out.appendingPathComponent("tokens.json"))
            try FileManager.default.copyItem(at: ownHFFixture(name).appendingPathComponent("expected.json"), to: out.appendingPathComponent("expected.json"))
            XCTAssertLessThanOrEqual(try hfLogitsMaxDiff(out).maxDiff, 1e-4, name)
        }
    }
}

final class HFWeightMapTests: XCTestCase {
    func testMixtralNamesBothWays() {
        let m = HFWeightMap(family: MixtralConfig.self, numExperts: 3)
        XCTAssertEqual(m.location(of: "model.layers.4.mlp.gate.weight"), .tensor("model.layers.4.block_sparse_moe.gate.weight"))
        guard case let .experts(matrix, per, fused, stacked) = m.location(of: "model.layers.4.mlp.experts.up_proj") else {
            return XCTFail("expected an expert location")
        }
        XCTAssertEqual(matrix, .up)
        XCTAssertEqual(per, (0..<3).map { "model.layers.4.block_sparse_moe.experts.\($0).w3.weight" })
        XCTAssertEqual(Set(fused), ["model.layers.4.mlp.experts.gate_up_proj", "model.layers.4.block_sparse_moe.experts.gate_up_proj"])
        XCTAssertEqual(stacked, "model.layers.4.mlp.experts.up_proj")
        XCTAssertEqual(m.libraryName(of: "model.layers.4.block_sparse_moe.experts.2.w2.weight")?.name, "model.layers.4.mlp.experts.down_proj")
        XCTAssertEqual(m.libraryName(of: "model.layers.4.block_sparse_moe.experts.2.w2.weight")?.expert, 2)
        XCTAssertNil(m.libraryName(of: "model.layers.4.block_sparse_moe.experts.3.w2.weight"), "expert 3 of 3")
        XCTAssertEqual(m.location(of: "model.layers.0.self_attn.q_proj.weight"), .tensor("model.layers.0.self_attn.q_proj.weight"))
        XCTAssertEqual(m.location(of: "lm_head.weight"), .tensor("lm_head.weight"))
    }

    func testDeepSeekSharedExperts() {
        let m = HFWeightMap(family: DeepSeekV3Config.self, numExperts: 8)
        XCTAssertEqual(m.location(of: "model.layers.1.mlp.shared_expert.down_proj.weight"),
                       .tensor("model.layers.1.mlp.shared_experts.down_proj.weight"))
        XCTAssertEqual(m.libraryName(of: "model.layers.1.mlp.shared_experts.down_proj.weight")?.name,
                       "model.layers.1.mlp.shared_expert.down_proj.weight")
        XCTAssertEqual(m.location(of: "model.layers.1.mlp.gate.e_score_correction_bias"),
                       .tensor("model.layers.1.mlp.gate.e_score_correction_bias"))
        let q = HFWeightMap(family: Qwen2MoEConfig.self, numExperts: 4)
        XCTAssertEqual(q.location(of: "model.layers.1.mlp.shared_expert.down_proj.weight"),
                       .tensor("model.layers.1.mlp.shared_expert.down_proj.weight"))
    }

    /// Export views: expert e's slice of the stacked tensor, no copy.
    func testCheckpointTensorsAreExpertSlices() throws {
        let stacked = Tensor((0..<24).map(Float.init), shape: [3, 2, 4])
        let m = HFWeightMap(family: Qwen3MoEConfig.self, numExperts: 3)
        let out = m.checkpointTensors(of: [("model.layers.0.mlp.experts.gate_proj", stacked)])
        XCTAssertEqual(out.count, 3)
        XCTAssertEqual(out["model.layers.0.mlp.experts.2.gate_proj.weight"]?.shape, [2, 4])
        XCTAssertEqual(out["model.layers.0.mlp.experts.2.gate_proj.weight"]?.scalars, (16..<24).map(Float.init))
    }
}

/// transformers 5 masks the groups a DeepSeek-V3 token may not use with −inf: with negative
/// biased scores, a 0 mask would let an excluded expert win.
final class GroupMaskingTests: XCTestCase {
    func testExcludedGroupNeverWinsWithNegativeScores() throws {
        // 2 groups of 2. Biased scores: group 0 = (−0.3, −0.35), group 1 = (−0.9, −0.95): group 0 kept.
        let logits = Tensor([0, 0, 0, 0], shape: [1, 4])  // σ = 0.5 everywhere
        let bias = Tensor([-0.8, -0.85, -1.4, -1.45], shape: [4])
        let sel = sigmoidTopK(logits, bias: bias, topK: 2, nGroup: 2, topkGroup: 1, normalize: true)
        XCTAssertEqual(Set(sel.indices.indexScalars), [0, 1])
    }
}
