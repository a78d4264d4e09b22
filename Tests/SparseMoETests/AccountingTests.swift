import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels
@testable import SparseMoEAnalysis

final class AccountingTests: XCTestCase {
    /// Component of a Hugging Face tensor name, decided from the name alone (independent of the accounting code).
    private func component(_ name: String) -> WritableKeyPath<ParameterCounts, Int> {
        if name.hasPrefix("model.embed_tokens.") { return \.embedding }
        if name.hasPrefix("lm_head.") { return \.head }
        if name.contains(".self_attn.") { return \.attention }
        if name.contains("shared_expert") { return \.sharedExperts }
        if name.contains(".experts.") { return \.routedExperts }
        if name.contains(".mlp.gate.") || name.contains(".block_sparse_moe.gate.") { return \.router }
        if name.contains(".mlp.gate_proj.") || name.contains(".mlp.up_proj.") || name.contains(".mlp.down_proj.") { return \.denseFeedForward }
        if name.hasSuffix("layernorm.weight") || name == "model.norm.weight" { return \.norms }
        XCTFail("unclassified tensor \(name)")
        return \.norms
    }

    /// For every shared tiny checkpoint: total parameters equal the elements stored in
    /// model.safetensors, component by component and layer by layer.
    func testFixtureTotalsEqualSafetensorsElementCounts() throws {
        let root = try sharedHFTinyFixtures()
        for arch in ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3"] {
            let dir = root.appendingPathComponent(arch)
            let config = try HuggingFaceFamilies.load(from: dir.appendingPathComponent("config.json"))
            let accounting = try ModelAccounting(ModelArchitecture(huggingFace: config), sequenceLength: 24)
            let file = try SafetensorsFile(url: dir.appendingPathComponent("model.safetensors"))
            XCTAssertEqual(accounting.totalParams, file.totalElements, arch)

            var stored = ParameterCounts()
            var perLayer = [ParameterCounts](repeating: ParameterCounts(), count: config.common.numHiddenLayers)
            for t in file.header.tensors {
                stored[keyPath: component(t.name)] += t.elementCount
                let parts = t.name.split(separator: ".")
                if parts.count > 2, parts[1] == "layers", let i = Int(parts[2]) {
                    perLayer[i][keyPath: component(t.name)] += t.elementCount
                }
            }
            XCTAssertEqual(accounting.params, stored, arch)
            for (i, l) in accounting.layers.enumerated() {
                XCTAssertEqual(l.params, perLayer[i], "\(arch) layer \(i)")
                XCTAssertEqual(l.feedForward == "moe", config.isSparseLayer(i))
            }
        }
    }

    /// The project's own committed checkpoints (Tests/Fixtures/hf, written by transformers via
    /// scripts/make_hf_fixtures.py): total parameters equal the elements stored, shards summed.
    /// These run on a fresh clone without ../shared. Tensors transformers itself ignores
    /// (DeepSeek's next-token-prediction layers) are not part of the model and not counted.
    func testOwnFixtureTotalsEqualSafetensorsElementCounts() throws {
        let root = packageRoot().appendingPathComponent("Tests/Fixtures/hf")
        let names = try FileManager.default.contentsOfDirectory(atPath: root.path).sorted()
        var checked = 0
        for name in names {
            let dir = root.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path)
                || FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors.index.json").path) else { continue }
            let config = try HuggingFaceFamilies.load(from: dir.appendingPathComponent("config.json"))
            let accounting = try ModelAccounting(ModelArchitecture(huggingFace: config), sequenceLength: 16)
            let weights = try SafetensorsCheckpoint(directory: dir)
            let mtpFirst = config.common.numHiddenLayers
            let stored = weights.names.filter { !$0.hasPrefix("model.layers.\(mtpFirst).") }
                .reduce(0) { $0 + (weights.info($1)?.elementCount ?? 0) }
            XCTAssertEqual(accounting.totalParams, stored, name)
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 5, "expected the committed fixtures under \(root.path)")
    }

    /// Mixtral-8x7B from its public config: 46.7B total, 12.9B active, exactly as counted by hand.
    func testMixtral8x7B() throws {
        let config = try publicConfig("mixtral-8x7b")
        let a = try ModelAccounting(ModelArchitecture(huggingFace: config), sequenceLength: 4096)
        let v = 32000, c = 4096, f = 14336, layers = 32, h = 32, kv = 8, d = 128, e = 8, k = 2
        let attention = 2 * c * h * d + 2 * c * kv * d
        let expert = 3 * c * f
        let outside = 2 * v * c + c
        XCTAssertEqual(a.totalParams, outside + layers * (attention + e * expert + c * e + 2 * c))
        XCTAssertEqual(a.activeParams, outside + layers * (attention + k * expert + c * e + 2 * c))
        XCTAssertEqual(Double(a.totalParams) / 1e9, 46.7, accuracy: 0.05)
        XCTAssertEqual(Double(a.activeParams) / 1e9, 12.9, accuracy: 0.05)
        // No biases: every active weight except embedding rows and norms is one multiply-add per token.
        XCTAssertEqual(a.flops.weightMatmuls, 2 * Double(a.activeParams - v * c - (2 * layers + 1) * c))
        XCTAssertEqual(a.flops.attentionScoresFull, Double(layers) * 4 * Double(h * d) * 4096)
        XCTAssertEqual(a.flops.attentionScoresCausal, Double(layers) * 4 * Double(h * d) * Double(4096 + 1) / 2)
        XCTAssertEqual(a.trainingFlopsPerToken, 3 * a.forwardFlopsPerToken)
        XCTAssertEqual(a.moeLayers, 32)
    }

    /// Mixtral v0.1 shipped with a 4096-token sliding window: beyond it each position sees 4096 keys.
    func testSlidingWindowCausalKeys() throws {
        var o = try JSONSerialization.jsonObject(with: Data(contentsOf: packageRoot().appendingPathComponent("Tests/Fixtures/hf-configs/mixtral-8x7b.json"))) as! [String: Any]
        o["sliding_window"] = 4096
        let arch = try ModelArchitecture(huggingFace: HuggingFaceFamilies.decode(JSONSerialization.data(withJSONObject: o)))
        let perKey = 32.0 * 4 * 4096  // layers · (q·k + p·v) · H·D
        let long = try ModelAccounting(arch, sequenceLength: 8192)
        var keys = 0.0
        for i in 1...8192 { keys += Double(min(i, 4096)) }
        XCTAssertEqual(long.flops.attentionScoresCausal, perKey * keys / 8192, accuracy: 1e-6 * perKey)
        XCTAssertEqual(long.flops.attentionScoresFull, perKey * 8192)
        let short = try ModelAccounting(arch, sequenceLength: 1000)  // window not reached: plain causal
        XCTAssertEqual(short.flops.attentionScoresCausal, perKey * 1001 / 2)
    }

    /// The other public configs against their published totals (rounded figures from the model cards).
    func testPublishedTotals() throws {
        let cases: [(String, Double, Double)] = [
            ("deepseek-v3", 671e9, 37e9), ("qwen3-30b-a3b", 30.5e9, 3.3e9), ("olmoe-1b-7b-0924", 6.9e9, 1.3e9),
            ("qwen1.5-moe-a2.7b", 14.3e9, 2.7e9),
        ]
        for (name, total, active) in cases {
            let a = try ModelAccounting(ModelArchitecture(huggingFace: publicConfig(name)), sequenceLength: 2048)
            XCTAssertEqual(Double(a.totalParams), total, accuracy: total * 0.005, name)
            XCTAssertEqual(Double(a.activeParams), active, accuracy: active * 0.02, name)
        }
    }

    /// A small architecture with every optional part, counted against an explicit list
    /// of its weight matrices and vectors.
    func testHandCountedArchitectures() throws {
        let v = 50, c = 12, t = 7
        // Layer 0: GQA with q/k/v/o bias, full q/k norm, plain biased GELU MLP.
        // Layer 1: MLA without q compression, MoE with biased router, correction bias, gated shared MLP with gate.
        let gqa = GroupedQueryAttention(heads: 4, kvHeads: 2, headDim: 3, qkvBias: true, outputBias: true, qkNorm: .full, ropeDims: 2)
        let mla = LatentAttention(heads: 2, qLoraRank: nil, kvLoraRank: 5, qkNopeHeadDim: 3, qkRopeHeadDim: 2, vHeadDim: 4, bias: true)
        let mlp = DenseFeedForward(intermediateSize: 9, gated: false, bias: true, activation: .gelu)
        let moe = MixtureOfExperts(numExperts: 5, topK: 2, expert: DenseFeedForward(intermediateSize: 6), routerBias: true, routerCorrectionBias: true,
                                   scoring: .sigmoid, shared: DenseFeedForward(intermediateSize: 7), sharedGate: true)
        let arch = ModelArchitecture(name: "hand", vocabSize: v, hiddenSize: c, tiedEmbeddings: true, norm: .layer, learnedPositions: 16,
                                     layers: [LayerArchitecture(attention: .grouped(gqa), feedForward: .dense(mlp)),
                                              LayerArchitecture(attention: .latent(mla), feedForward: .mixture(moe))])
        let a = try ModelAccounting(arch, sequenceLength: t)

        // (out, in) of every matrix a token multiplies with, and vector parameters, per layer.
        let layer0Matrices = [(12, c), (6, c), (6, c), (c, 12), (9, c), (c, 9)]
        let layer0Vectors = [12, 6, 6, c, 2 * 12, 2 * 6, 9, c, 2 * c, 2 * c]  // biases, LayerNorm q/k norms, MLP biases, two block norms
        let mlaMatrices = [(2 * 5, c), (5 + 2, c), (2 * (3 + 4), 5), (c, 2 * 4)]
        let mlaVectors = [5 + 2, c, 2 * 5]  // kv_a bias, o bias, kv_a LayerNorm
        let expertMatrices = [(6, c), (6, c), (c, 6)]
        let sharedMatrices = [(7, c), (7, c), (c, 7), (1, c)]
        let routerParams = 5 * c + 5 + 5
        let size = { (m: [(Int, Int)]) in m.reduce(0) { $0 + $1.0 * $1.1 } }
        let layer1Params = size(mlaMatrices) + mlaVectors.reduce(0, +) + routerParams + 5 * size(expertMatrices) + size(sharedMatrices) + 2 * 2 * c
        let outside = v * c + 16 * c + 2 * c  // tied embedding, learned positions, final LayerNorm
        XCTAssertEqual(a.layers[0].totalParams, size(layer0Matrices) + layer0Vectors.reduce(0, +))
        XCTAssertEqual(a.layers[1].totalParams, layer1Params)
        XCTAssertEqual(a.totalParams, outside + size(layer0Matrices) + layer0Vectors.reduce(0, +) + layer1Params)
        XCTAssertEqual(a.layers[1].activeParams, layer1Params - 3 * size(expertMatrices))
        XCTAssertEqual(a.params.head, 0)

        let expectedMatmul = 2 * Double(size(layer0Matrices) + size(mlaMatrices) + 5 * c + 2 * size(expertMatrices) + size(sharedMatrices) + v * c)
        XCTAssertEqual(a.flops.weightMatmuls, expectedMatmul)
        let scoresPerKey = 2.0 * Double(4 * 3 + 4 * 3) + 2.0 * Double(2 * (5 + 4))  // GQA q·k + p·v; MLA q·k (Dn+Dr) + p·v (Dv)
        XCTAssertEqual(a.flops.attentionScoresFull, scoresPerKey * Double(t))
        XCTAssertEqual(a.flops.attentionScoresCausal, scoresPerKey * Double(t + 1) / 2)
        XCTAssertEqual(a.forwardFlopsPerToken, expectedMatmul + scoresPerKey * Double(t + 1) / 2)
        XCTAssertEqual(a.trainingFlopsPerTokenFullAttention, 3 * (expectedMatmul + scoresPerKey * Double(t)))
        XCTAssertGreaterThan(a.nonMatmulFlopsPerToken, 0)

        // Sequence length 1: causal and full attention coincide.
        let one = try ModelAccounting(arch, sequenceLength: 1)
        XCTAssertEqual(one.forwardFlopsPerToken, one.forwardFlopsPerTokenFullAttention)
        XCTAssertEqual(one.totalParams, a.totalParams)
    }

    func testDenseEquivalents() throws {
        let a = try ModelAccounting(ModelArchitecture(huggingFace: publicConfig("mixtral-8x7b")), sequenceLength: 4096)
        let step = 3 * 4096 * 32  // parameters added by one unit of FFN width across the 32 replaced blocks
        let active = try XCTUnwrap(a.denseSameActive), total = try XCTUnwrap(a.denseSameTotal)
        XCTAssertLessThanOrEqual(abs(active.totalParams - a.activeParams), step / 2)
        XCTAssertLessThanOrEqual(abs(total.totalParams - a.totalParams), step / 2)
        // Same active parameters: nearly the same FLOPs (the router is the difference); same total: ~3.6× the FLOPs.
        XCTAssertEqual(active.sparseToDenseFlopRatio, 1, accuracy: 0.001)
        XCTAssertEqual(total.sparseToDenseFlopRatio, a.forwardFlopsPerToken / total.forwardFlopsPerToken)
        XCTAssertLessThan(total.sparseToDenseFlopRatio, 0.35)
        XCTAssertEqual(total.trainingFlopsPerToken, 3 * total.forwardFlopsPerToken)
        // Width by hand: (target − non-FFN params) / (32 · 3 · 4096).
        let nonFFN = a.totalParams - a.params.routedExperts - a.params.router
        XCTAssertEqual(active.intermediateSize, Int((Double(a.activeParams - nonFFN) / Double(step)).rounded()))

        // A dense model has no MoE block to replace.
        let dense = ModelArchitecture(name: "d", vocabSize: 10, hiddenSize: 8, tiedEmbeddings: false, layers: [
            LayerArchitecture(attention: .grouped(GroupedQueryAttention(heads: 2, kvHeads: 2, headDim: 4)), feedForward: .dense(DenseFeedForward(intermediateSize: 16))),
        ])
        let d = try ModelAccounting(dense, sequenceLength: 5)
        XCTAssertNil(d.denseSameActive)
        XCTAssertEqual(d.activeParams, d.totalParams)
    }

    func testJSONHasTheDocumentedKeysAndRoundTrips() throws {
        let a = try ModelAccounting(ModelArchitecture(huggingFace: publicConfig("qwen1.5-moe-a2.7b")), sequenceLength: 512)
        let data = try a.jsonData()
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        for key in ["total_params", "active_params", "forward_flops_per_token", "training_flops_per_token", "dense_same_active",
                    "dense_same_total", "layers"] {
            XCTAssertNotNil(object[key], key)
        }
        XCTAssertEqual(object["total_params"] as? Int, a.totalParams)
        XCTAssertEqual((object["layers"] as? [Any])?.count, 24)
        let layer = try XCTUnwrap((object["layers"] as? [[String: Any]])?.first)
        XCTAssertEqual(layer["total_params"] as? Int, a.layers[0].totalParams)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        XCTAssertEqual(try decoder.decode(ModelAccounting.self, from: data), a)
    }

    func testInvalidArchitecturesThrow() throws {
        let good = LayerArchitecture(attention: .grouped(GroupedQueryAttention(heads: 2, kvHeads: 2, headDim: 4)),
                                     feedForward: .mixture(MixtureOfExperts(numExperts: 2, topK: 1, expert: DenseFeedForward(intermediateSize: 4))))
        let arch = ModelArchitecture(name: "x", vocabSize: 10, hiddenSize: 8, tiedEmbeddings: false, layers: [good])
        XCTAssertThrowsError(try ModelAccounting(arch, sequenceLength: 0)) { XCTAssertTrue("\($0)".contains("sequence_length")) }
        var bad = arch
        bad.layers[0].feedForward = .mixture(MixtureOfExperts(numExperts: 2, topK: 3, expert: DenseFeedForward(intermediateSize: 4)))
        XCTAssertThrowsError(try ModelAccounting(bad, sequenceLength: 4)) { XCTAssertTrue("\($0)".contains("layers[0].feed_forward")) }
        bad = arch
        bad.layers[0].attention = .grouped(GroupedQueryAttention(heads: 3, kvHeads: 2, headDim: 4))
        XCTAssertThrowsError(try ModelAccounting(bad, sequenceLength: 4)) { XCTAssertTrue("\($0)".contains("layers[0].attention")) }
    }
}
