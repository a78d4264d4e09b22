import Foundation
import SparseMoECore
import SparseMoENN

/// Qwen2-MoE (`model_type: qwen2_moe`, transformers `Qwen2MoeConfig`, e.g. Qwen1.5-MoE):
/// q/k/v biases (`qkv_bias`), routed experts of width `moe_intermediate_size`, one shared
/// expert of width `shared_expert_intermediate_size` scaled by σ(x·w) (`shared_expert_gate`),
/// and the Qwen sparse-layer layout (`QwenMoEFields`). Checkpoint names: the library's.
public struct Qwen2MoEConfig: HuggingFaceFamily {
    public static let modelTypes = ["qwen2_moe"]
    public static let causalLMClass = "Qwen2MoeForCausalLM"
    public static let weightNames = HFWeightNames()

    public var common: HFCommonConfig
    public var qwen: QwenMoEFields
    /// Width of the shared expert.
    public var sharedExpertIntermediateSize: Int
    /// Bias on q/k/v (not o).
    public var qkvBias: Bool

    enum CodingKeys: String, CodingKey {
        case sharedExpertIntermediateSize = "shared_expert_intermediate_size", qkvBias = "qkv_bias", headDim = "head_dim"
    }

    public init(from decoder: Decoder) throws {
        common = try HFCommonConfig(from: decoder, family: Self.self, defaults: QwenMoEFields.defaults)
        qwen = try QwenMoEFields(from: decoder)
        let f = try ConfigFields(decoder, CodingKeys.self)
        sharedExpertIntermediateSize = try f.positive(.sharedExpertIntermediateSize, f.required(.sharedExpertIntermediateSize))
        qkvBias = try f.optional(.qkvBias) ?? true
    }

    public var ownJSON: [String: JSONValue] {
        var w = ConfigWriter<CodingKeys>()
        w.put(.sharedExpertIntermediateSize, sharedExpertIntermediateSize)
        w.put(.qkvBias, qkvBias)
        if common.headDim * common.numAttentionHeads != common.hiddenSize { w.put(.headDim, common.headDim) }
        return qwen.json(numExperts: common.numExperts).merging(w.json) { _, own in own }
    }

    public var expertIntermediateSize: Int { qwen.moeIntermediateSize }
    public func isSparseLayer(_ i: Int) -> Bool { qwen.isSparseLayer(i, numExperts: common.numExperts) }

    public var layout: HFLayout {
        // The window applies only to some layers (`max_window_layers`); the accounting counts full attention.
        HFLayout(attention: .grouped(headDim: common.headDim, qkvBias: qkvBias, outputBias: false, qkNorm: .none, slidingWindow: nil),
                 sharedExperts: 1, sharedExpertWidth: sharedExpertIntermediateSize, sharedExpertGate: true)
    }

    public func transformerConfig() throws -> TransformerConfig {
        var c = try common.transformerConfig(expertWidth: expertIntermediateSize, normTopK: qwen.normTopKProb, window: qwen.slidingWindow)
        c.attentionBias = qkvBias
        qwen.apply(to: &c.moe!, numLayers: common.numHiddenLayers)
        c.moe!.sharedExperts = 1
        c.moe!.sharedExpertIntermediateSize = sharedExpertIntermediateSize
        c.moe!.sharedGating = .sigmoid
        return try finishing(c)
    }

    public static func claims(_ config: TransformerConfig) -> Bool {
        config.attentionBias || (config.moe?.sharedExperts ?? 0) > 0
    }

    public init(exporting config: TransformerConfig) throws {
        let x = try HFExportCheck(config, as: Self.self)
        try x.require(router: .softmaxTopK)
        try x.require(qkNorm: .none)
        try x.requireGroupedAttention()
        guard x.moe.sharedExperts >= 1 else {
            throw x.refuse("moe.shared_experts", "no shared expert (Qwen2-MoE has one, sigmoid-gated)")
        }
        if config.headDim != nil && config.resolvedHeadDim * config.numHeads != config.hiddenSize {
            throw x.refuse("head_dim", "head_dim \(config.resolvedHeadDim) ≠ hidden_size / num_attention_heads")
        }
        common = HFCommonConfig(exporting: config, moe: x.moe, as: Self.self)
        qwen = QwenMoEFields(exporting: x)
        sharedExpertIntermediateSize = x.moe.sharedExpertIntermediateSize
        qkvBias = config.attentionBias
    }
}

extension Qwen2MoEConfig {
    /// An ungated shared expert (`shared_expert_gating: none`) is written as Qwen2-MoE's gated
    /// one with a zero gate and twice its down projection: σ(0) · 2·W_down·h = W_down·h, exact for
    /// float32/bf16/f16 weights (×2 and ×½ only change exponents); int8/int4 weights are
    /// requantized from the doubled values. Adds `…mlp.shared_expert_gate.weight` [1, C] (float32
    /// zeros) beside every `…mlp.shared_expert.down_proj.weight` and doubles the latter, keeping
    /// its storage dtype. Returns the number of parameters added.
    static func addNeutralSharedExpertGates(to tensors: inout [String: Tensor], hiddenSize: Int) -> Int {
        let down = "shared_expert.down_proj.weight"
        var added = 0
        for name in tensors.keys.sorted() where name.hasSuffix("mlp." + down) {
            let w = tensors[name]!
            let doubled = w.dequantized()
            doubled.withUnsafeMutableFloats { for i in $0.indices { $0[i] *= 2 } }
            tensors[name] = doubled.converted(to: w.dtype)
            tensors[String(name.dropLast(down.count)) + "shared_expert_gate.weight"] = Tensor(zeros: [1, hiddenSize])
            added += hiddenSize
        }
        return added
    }
}

/// What Qwen2-MoE and Qwen3-MoE share (transformers builds Qwen3-MoE from Qwen2-MoE): expert
/// width, `norm_topk_prob`, the sparse-layer layout and the sliding-window switch.
public struct QwenMoEFields: Sendable, Equatable {
    static let defaults = HFCommonConfig.Defaults(maxPositionEmbeddings: 32768)

    /// Width of one routed expert.
    public var moeIntermediateSize: Int
    /// Renormalise the top-k routing weights to sum to 1 (default false).
    public var normTopKProb: Bool
    /// Layer i is sparse when (i+1) % step == 0 and i ∉ `mlpOnlyLayers`.
    public var decoderSparseStep: Int
    public var mlpOnlyLayers: [Int]
    /// The window when `use_sliding_window` is set (then per `layer_types`/`max_window_layers`,
    /// not modelled here); nil otherwise or for 0.
    public var slidingWindow: Int?

    enum CodingKeys: String, CodingKey {
        case moeIntermediateSize = "moe_intermediate_size", normTopKProb = "norm_topk_prob"
        case decoderSparseStep = "decoder_sparse_step", mlpOnlyLayers = "mlp_only_layers"
        case slidingWindow = "sliding_window", useSlidingWindow = "use_sliding_window", numExperts = "num_experts"
    }

    init(from decoder: Decoder) throws {
        let f = try ConfigFields(decoder, CodingKeys.self)
        moeIntermediateSize = try f.positive(.moeIntermediateSize, f.required(.moeIntermediateSize))
        normTopKProb = try f.optional(.normTopKProb) ?? false
        decoderSparseStep = try f.positive(.decoderSparseStep, f.optional(.decoderSparseStep) ?? 1)
        mlpOnlyLayers = try f.optional(.mlpOnlyLayers) ?? []
        if let bad = mlpOnlyLayers.first(where: { $0 < 0 }) {
            throw SparseMoEError.invalidConfig(field: "mlp_only_layers", message: "negative layer index \(bad)")
        }
        let window: Int? = try f.optional(.slidingWindow)
        let useWindow: Bool = try f.optional(.useSlidingWindow) ?? false
        slidingWindow = useWindow && window != 0 ? window : nil
    }

    /// Qwen's layout for the sparse layers of `x`: the library's `every` as the step, and the
    /// other dense layers on the step as `mlp_only_layers`.
    init(exporting x: HFExportCheck) {
        let sparse = x.sparseLayers
        moeIntermediateSize = x.moe.expertIntermediateSize
        normTopKProb = x.moe.normalizeTopK
        decoderSparseStep = x.moe.every
        mlpOnlyLayers = (0..<x.config.numLayers).filter { !sparse[$0] && ($0 + 1) % x.moe.every == 0 }
        slidingWindow = nil
    }

    func isSparseLayer(_ i: Int, numExperts: Int) -> Bool {
        !mlpOnlyLayers.contains(i) && numExperts > 0 && (i + 1) % decoderSparseStep == 0
    }

    func apply(to m: inout MoEConfig, numLayers: Int) {
        m.every = decoderSparseStep
        m.denseLayers = mlpOnlyLayers.filter { $0 < numLayers }.sorted()
    }

    func json(numExperts: Int) -> [String: JSONValue] {
        var w = ConfigWriter<CodingKeys>()
        w.put(.numExperts, numExperts)
        w.put(.moeIntermediateSize, moeIntermediateSize)
        w.put(.normTopKProb, normTopKProb)
        w.put(.decoderSparseStep, decoderSparseStep)
        w.put(.mlpOnlyLayers, mlpOnlyLayers)
        w.put(.useSlidingWindow, slidingWindow != nil)
        w.put(.slidingWindow, slidingWindow)
        return w.json
    }
}
