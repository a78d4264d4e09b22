import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels

/// Library models written in Hugging Face layout: round trips, refusals, and folders for
/// `scripts/make_hf_fixtures.py --check-saved` (which loads them with transformers).
final class HuggingFaceExportTests: XCTestCase {
    /// Replaces every parameter by U(−s, s) with s = 1/√fan-in (norm weights 1 ± 0.2, router
    /// correction biases around −0.3) so that logits and routing decisions are not all near ties.
    static func randomise(_ model: TransformerLM, seed: UInt64) throws {
        for (i, (name, p)) in model.namedParameters().enumerated() {
            let s = seed &* 1000 &+ UInt64(i)
            if name.hasSuffix("e_score_correction_bias") {
                p.assign(add(randomTensor(p.shape, seed: s, scale: 0.2), Tensor(repeating: -0.3, shape: p.shape)))
            } else if name.contains("norm") {
                p.assign(add(randomTensor(p.shape, seed: s, scale: 0.2), Tensor(repeating: 1, shape: p.shape)))
            } else if name.hasSuffix(".bias") {
                p.assign(randomTensor(p.shape, seed: s, scale: 0.1))
            } else {
                let fanIn = p.shape.last!
                let scale = (name.hasSuffix("mlp.gate.weight") ? 3 : 1.7) / Float(fanIn).squareRoot()
                p.assign(randomTensor(p.shape, seed: s, scale: scale))
            }
        }
    }

    /// Library configurations, one per Hugging Face architecture they export to.
    static func libraryConfigs() -> [(String, TransformerConfig, any HuggingFaceFamily.Type)] {
        var out: [(String, TransformerConfig, any HuggingFaceFamily.Type)] = []
        var mixtral = TransformerConfig(vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 4, numKVHeads: 2,
                                        maxSequenceLength: 32, intermediateSize: 20,
                                        moe: MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 20))
        mixtral.tiedEmbeddings = true
        out.append(("library-mixtral-tied", mixtral, MixtralConfig.self))

        var qwen2 = TransformerConfig(vocabSize: 50, hiddenSize: 16, numLayers: 4, numHeads: 2, numKVHeads: 1,
                                      maxSequenceLength: 32, intermediateSize: 24,
                                      moe: MoEConfig(numExperts: 5, topK: 2, expertIntermediateSize: 8))
        qwen2.attentionBias = true
        qwen2.normEps = 1e-6
        qwen2.moe!.normalizeTopK = false
        qwen2.moe!.sharedExperts = 1
        qwen2.moe!.sharedExpertIntermediateSize = 12
        qwen2.moe!.sharedGating = .sigmoid
        qwen2.moe!.every = 1
        qwen2.moe!.firstDense = 1
        qwen2.moe!.denseLayers = [2]
        out.append(("library-qwen2-moe", qwen2, Qwen2MoEConfig.self))

        var qwen3 = TransformerConfig(vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 10,
                                      maxSequenceLength: 32, intermediateSize: 24,
                                      moe: MoEConfig(numExperts: 6, topK: 3, expertIntermediateSize: 6))
        qwen3.qkNorm = .perHead
        qwen3.ropeTheta = 1_000_000
        qwen3.moe!.every = 2
        out.append(("library-qwen3-moe", qwen3, Qwen3MoEConfig.self))

        var olmoe = TransformerConfig(vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 4, numKVHeads: 4,
                                      maxSequenceLength: 32, intermediateSize: 8,
                                      moe: MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 8))
        olmoe.qkNorm = .full
        olmoe.moe!.normalizeTopK = false
        out.append(("library-olmoe", olmoe, OLMoEConfig.self))

        var ds = TransformerConfig(vocabSize: 50, hiddenSize: 16, numLayers: 3, numHeads: 2, maxSequenceLength: 32,
                                   intermediateSize: 24, moe: MoEConfig(numExperts: 8, topK: 2, expertIntermediateSize: 6))
        ds.latentAttention = LatentAttentionConfig(qLoraRank: 10, kvLoraRank: 8, qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 6)
        ds.ropeStyle = .interleaved
        ds.normEps = 1e-6
        ds.moe!.router = .sigmoidBias
        ds.moe!.nGroup = 4
        ds.moe!.topkGroup = 2
        ds.moe!.routedScalingFactor = 2.5
        ds.moe!.sharedExperts = 2
        ds.moe!.sharedExpertIntermediateSize = 12
        ds.moe!.firstDense = 1
        out.append(("library-deepseek-v3", ds, DeepSeekV3Config.self))
        return out
    }

    func testClosestArchitecture() {
        for (name, config, family) in Self.libraryConfigs() {
            XCTAssertTrue(HFConfigExport.closestArchitecture(config) == family, name)
        }
    }

    /// save → load gives the same tensors and the same logits, for every architecture.
    func testLibraryModelsRoundTrip() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("hf-export-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let tokens = Tensor(indices: (0..<12).map { Int32(($0 * 7 + 3) % 50) }, shape: [1, 12])
        for (i, (name, config, family)) in Self.libraryConfigs().enumerated() {
            let model = try TransformerLM(config: config, seed: UInt64(i))
            try Self.randomise(model, seed: UInt64(i))
            let dir = tmp.appendingPathComponent(name)
            try HuggingFaceModel.save(model, to: dir)
            let back = try HuggingFaceModel.load(directory: dir)
            XCTAssertTrue(type(of: back.hfConfig) == family, name)
            XCTAssertEqual(back.hfConfig.modelType, family.modelTypes[0], name)
            for (x, y) in zip(model.namedParameters(), back.model.namedParameters()) {
                XCTAssertEqual(x.name, y.name)
                XCTAssertEqual(x.tensor.scalars, y.tensor.scalars, "\(name): \(x.name)")
            }
            XCTAssertEqual(model.namedParameters().count, back.model.namedParameters().count)
            let a = try model.forward(tokens).logits.scalars, b = try back.model.forward(tokens).logits.scalars
            XCTAssertEqual(a, b, name)
            XCTAssertEqual(back.model.config.moe?.normalizeTopK, config.moe?.normalizeTopK)
            XCTAssertEqual((0..<config.numLayers).map { back.model.config.isMoELayer($0) },
                           (0..<config.numLayers).map { config.isMoELayer($0) }, name)
        }
    }

    /// With SPARSEMOE_HF_EXPORT_DIR set, writes library models (and the committed fixtures,
    /// loaded and re-saved) with tokens.json + expected.json for
    /// `python scripts/make_hf_fixtures.py --check-saved $SPARSEMOE_HF_EXPORT_DIR`.
    func testWriteFoldersForTransformers() throws {
        guard let root = ProcessInfo.processInfo.environment["SPARSEMOE_HF_EXPORT_DIR"] else {
            throw XCTSkip("set SPARSEMOE_HF_EXPORT_DIR to write folders for the transformers check")
        }
        let tokens: [Int32] = (0..<16).map { Int32(($0 * 11 + 5) % 50) }
        func writeExpected(_ model: TransformerLM, _ tokens: [Int32], _ dir: URL) throws {
            let logits = try model.forward(Tensor(indices: tokens, shape: [1, tokens.count])).logits
            let v = model.config.vocabSize
            let rows = (0..<tokens.count).map { t in (0..<v).map { Double(logits.scalars[t * v + $0]) } }
            try JSONSerialization.data(withJSONObject: ["tokens": tokens.map(Int.init)]).write(to: dir.appendingPathComponent("tokens.json"))
            try JSONSerialization.data(withJSONObject: ["logits": rows]).write(to: dir.appendingPathComponent("expected.json"))
        }
        for (i, (name, config, _)) in Self.libraryConfigs().enumerated() {
            let model = try TransformerLM(config: config, seed: UInt64(i))
            try Self.randomise(model, seed: UInt64(i))
            let dir = URL(fileURLWithPath: root).appendingPathComponent(name)
            try HuggingFaceModel.save(model, to: dir)
            try writeExpected(model, tokens, dir)
        }
        for name in HuggingFaceOwnFixtureTests.names {
            let loaded = try HuggingFaceModel.load(directory: ownHFFixture(name))
            let dir = URL(fileURLWithPath: root).appendingPathComponent("resaved-" + name)
            try loaded.save(to: dir)
            struct Tokens: Decodable { let tokens: [Int32] }
            let t = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: ownHFFixture(name).appendingPathComponent("tokens.json"))).tokens
            try writeExpected(loaded.model, t, dir)
        }
    }

    func testRefusesWhatHuggingFaceCannotRepresent() throws {
        func refused(_ config: TransformerConfig, as family: (any HuggingFaceFamily.Type)? = nil, mentions: String,
                     file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try HFConfigExport.json(for: config, as: family), file: file, line: line) {
                XCTAssertTrue("\($0)".contains(mentions), "\($0)", file: file, line: line)
                XCTAssertTrue("\($0)".contains("cannot represent"), "\($0)", file: file, line: line)
            }
        }
        let base = Self.libraryConfigs()[0].1
        var dense = base; dense.moe = nil
        refused(dense, mentions: "dense model")
        var layer = base; layer.norm = .layer
        refused(layer, mentions: "LayerNorm")
        var learned = base; learned.positionEncoding = .learned
        refused(learned, mentions: "position_encoding")
        var capacity = base; capacity.moe!.capacityFactor = 1.25
        refused(capacity, mentions: "capacity")
        var unnormalised = base; unnormalised.moe!.normalizeTopK = false
        refused(unnormalised, mentions: "norm_topk_prob")
        var gelu = base; gelu.moe!.expertKind = .gelu
        refused(gelu, mentions: "SwiGLU")
        var expertChoice = base; expertChoice.moe!.router = .expertChoice
        refused(expertChoice, mentions: "expert_choice")
        var sparseStep = base; sparseStep.moe!.every = 2
        refused(sparseStep, as: MixtralConfig.self, mentions: "dense layers")
        refused(base, as: Qwen3MoEConfig.self, mentions: "q/k norm")
        refused(base, as: DeepSeekV3Config.self, mentions: "router")
        var interleaved = base; interleaved.ropeStyle = .interleaved
        refused(interleaved, mentions: "RoPE")
        var gated = Self.libraryConfigs()[4].1; gated.moe!.sharedGating = .sigmoid
        refused(gated, mentions: "gated shared experts")
    }

    /// An ungated shared expert (DeepSeek-style) is written as Qwen2-MoE's gated one with a zero gate
    /// and twice the down projection; read back, it computes the same logits bit for bit.
    func testUngatedSharedExpertIsWrittenWithANeutralGate() throws {
        var config = try TransformerConfig.preset(named: "tiny-moe")
        config.moe!.firstDense = 0  // every layer routed, as the test needs
        config.numLayers = 2
        config.moe!.sharedExperts = 1
        config.moe!.sharedExpertIntermediateSize = 256
        XCTAssertEqual(config.moe?.sharedGating, SharedExpertGating.none)
        let model = try TransformerLM(config: config, seed: 9)
        try Self.randomise(model, seed: 9)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hf-ungated-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try HuggingFaceModel.save(model, to: dir)
        let back = try HuggingFaceModel.load(directory: dir)
        XCTAssertTrue(type(of: back.hfConfig) == Qwen2MoEConfig.self)
        XCTAssertEqual(back.model.config.moe?.sharedGating, .sigmoid)
        let read = Dictionary(uniqueKeysWithValues: back.model.namedParameters().map { ($0.name, $0.tensor.scalars) })
        var doubled = 0
        for (name, t) in model.namedParameters() {
            let expected = name.contains("shared_expert.down_proj") ? t.scalars.map { 2 * $0 } : t.scalars
            doubled += name.contains("shared_expert.down_proj") ? 1 : 0
            XCTAssertEqual(read[name], expected, name)
        }
        XCTAssertEqual(doubled, 2)
        let gates = read.filter { $0.key.contains("shared_expert_gate") }
        XCTAssertEqual(gates.count, 2)
        XCTAssertTrue(gates.values.allSatisfy { $0.count == 128 && $0.allSatisfy { $0 == 0 } })
        let tokens = Tensor(indices: (0..<20).map { Int32(($0 * 13 + 1) % 260) }, shape: [1, 20])
        XCTAssertEqual(try model.forward(tokens).logits.scalars, try back.model.forward(tokens).logits.scalars)
    }

    /// The Float fields print as their shortest decimal (1e-06, not 9.99999997e-07).
    func testConfigNumbersAreClean() throws {
        let (_, config, _) = Self.libraryConfigs()[1]
        let json = try HFConfigExport.json(for: config)
        XCTAssertEqual(json["rms_norm_eps"], .double(1e-6))
        XCTAssertEqual(json["mlp_only_layers"], .array([.int(0), .int(2)]))
        XCTAssertEqual(json["decoder_sparse_step"], .int(1))
        XCTAssertEqual(json["architectures"], .array([.string("Qwen2MoeForCausalLM")]))
    }
}
