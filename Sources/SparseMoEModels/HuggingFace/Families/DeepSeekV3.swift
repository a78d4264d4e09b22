import Foundation
import SparseMoECore
import SparseMoENN

/// DeepSeek-V3 (`model_type: deepseek_v3`, transformers `DeepseekV3Config`): multi-head latent
/// attention (`q_lora_rank` or null, `kv_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim`,
/// `v_head_dim`; `rope_interleave` → interleaved RoPE), sigmoid routing with
/// `e_score_correction_bias` and group-limited top-k (`n_group`, `topk_group`),
/// `routed_scaling_factor`, `n_shared_experts` ungated shared experts of total width
/// `moe_intermediate_size × n_shared_experts`, the first `first_k_dense_replace` layers dense.
/// Checkpoint names: `mlp.shared_experts.*` for the shared experts; layers from
/// `num_hidden_layers` on (`num_nextn_predict_layers`, multi-token prediction) are skipped.
public struct DeepSeekV3Config: HuggingFaceFamily {
    public static let modelTypes = ["deepseek_v3"]
    public static let causalLMClass = "DeepseekV3ForCausalLM"
    public static let weightNames = HFWeightNames(sharedExpert: "shared_experts")
    static let defaults = HFCommonConfig.Defaults(maxPositionEmbeddings: 4096, readsHeadDim: false)

    public var common: HFCommonConfig
    /// Width of one routed expert.
    public var moeIntermediateSize: Int
    public var numSharedExperts: Int
    /// Renormalise the top-k routing weights (default true).
    public var normTopKProb: Bool
    /// The first k layers are dense.
    public var firstKDenseReplace: Int
    /// DeepSeek's own code: layer i ≥ first_k_dense_replace is sparse when i % freq == 0
    /// (transformers ignores it; the library refuses any value but 1).
    public var moeLayerFreq: Int
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var qkRopeHeadDim: Int
    public var qkNopeHeadDim: Int
    public var vHeadDim: Int
    public var nGroup: Int
    public var topKGroup: Int
    public var routedScalingFactor: Double
    /// Router scoring: "sigmoid" (the library's only one for this family) or "softmax".
    public var scoringFunc: String
    public var topKMethod: String
    /// Bias on q_a, kv_a and o (refused by the library).
    public var attentionBias: Bool
    /// Multi-token-prediction layers stored after the model's (transformers does not load them).
    public var numNextNPredictLayers: Int
    /// Interleaved (true, transformers' default) or half-split RoPE.
    public var ropeInterleave: Bool

    enum CodingKeys: String, CodingKey {
        case moeIntermediateSize = "moe_intermediate_size", numSharedExperts = "n_shared_experts"
        case normTopKProb = "norm_topk_prob", firstKDenseReplace = "first_k_dense_replace", moeLayerFreq = "moe_layer_freq"
        case qLoraRank = "q_lora_rank", kvLoraRank = "kv_lora_rank", qkRopeHeadDim = "qk_rope_head_dim"
        case qkNopeHeadDim = "qk_nope_head_dim", qkHeadDim = "qk_head_dim", vHeadDim = "v_head_dim", headDim = "head_dim"
        case nGroup = "n_group", topKGroup = "topk_group", routedScalingFactor = "routed_scaling_factor"
        case scoringFunc = "scoring_func", topKMethod = "topk_method", attentionBias = "attention_bias"
        case numNextNPredictLayers = "num_nextn_predict_layers", ropeInterleave = "rope_interleave"
        case nRoutedExperts = "n_routed_experts"
    }

    public init(from decoder: Decoder) throws {
        common = try HFCommonConfig(from: decoder, family: Self.self, defaults: Self.defaults)
        let f = try ConfigFields(decoder, CodingKeys.self)
        moeIntermediateSize = try f.positive(.moeIntermediateSize, f.required(.moeIntermediateSize))
        numSharedExperts = try f.nonNegative(.numSharedExperts, f.optional(.numSharedExperts) ?? 1)
        normTopKProb = try f.optional(.normTopKProb) ?? true
        firstKDenseReplace = try f.nonNegative(.firstKDenseReplace, f.optional(.firstKDenseReplace) ?? 3)
        moeLayerFreq = try f.positive(.moeLayerFreq, f.optional(.moeLayerFreq) ?? 1)
        guard f.has(.qLoraRank) else {
            throw SparseMoEError.invalidConfig(field: "q_lora_rank", message: "missing required field (an integer, or null for an uncompressed query)")
        }
        qLoraRank = try f.optional(.qLoraRank, Int.self).map { try f.positive(.qLoraRank, $0) }
        kvLoraRank = try f.positive(.kvLoraRank, f.required(.kvLoraRank))
        qkRopeHeadDim = try f.positive(.qkRopeHeadDim, f.required(.qkRopeHeadDim))
        qkNopeHeadDim = try f.required(.qkNopeHeadDim)
        vHeadDim = try f.positive(.vHeadDim, f.required(.vHeadDim))
        nGroup = try f.positive(.nGroup, f.optional(.nGroup) ?? 8)
        topKGroup = try f.positive(.topKGroup, f.optional(.topKGroup) ?? 4)
        guard common.numExperts % nGroup == 0 else {
            throw SparseMoEError.invalidConfig(field: "n_group", message: "\(nGroup) does not divide the \(common.numExperts) routed experts")
        }
        guard topKGroup <= nGroup else {
            throw SparseMoEError.invalidConfig(field: "topk_group", message: "\(topKGroup) exceeds n_group = \(nGroup)")
        }
        if let qk: Int = try f.optional(.qkHeadDim), qk != qkNopeHeadDim + qkRopeHeadDim {
            throw SparseMoEError.invalidConfig(field: "qk_head_dim", message: "\(qk) ≠ qk_nope_head_dim + qk_rope_head_dim = \(qkNopeHeadDim + qkRopeHeadDim)")
        }
        common.headDim = qkRopeHeadDim  // transformers' DeepseekV3Config sets head_dim = qk_rope_head_dim
        routedScalingFactor = try f.optional(.routedScalingFactor) ?? 2.5
        scoringFunc = try f.optional(.scoringFunc) ?? "sigmoid"
        guard scoringFunc == "softmax" || scoringFunc == "sigmoid" else {
            throw SparseMoEError.invalidConfig(field: "scoring_func", message: "'\(scoringFunc)' (expected softmax or sigmoid)")
        }
        topKMethod = try f.optional(.topKMethod) ?? "noaux_tc"
        attentionBias = try f.optional(.attentionBias) ?? false
        numNextNPredictLayers = try f.optional(.numNextNPredictLayers) ?? 0
        ropeInterleave = try f.optional(.ropeInterleave) ?? true
    }

    public var ownJSON: [String: JSONValue] {
        var w = ConfigWriter<CodingKeys>()
        w.put(.nRoutedExperts, common.numExperts)
        w.put(.moeIntermediateSize, moeIntermediateSize)
        w.put(.numSharedExperts, numSharedExperts)
        w.put(.normTopKProb, normTopKProb)
        w.put(.firstKDenseReplace, firstKDenseReplace)
        if moeLayerFreq != 1 { w.put(.moeLayerFreq, moeLayerFreq) }
        w.put(.qLoraRank, qLoraRank)
        w.put(.kvLoraRank, kvLoraRank)
        w.put(.qkRopeHeadDim, qkRopeHeadDim)
        w.put(.qkNopeHeadDim, qkNopeHeadDim)
        w.put(.qkHeadDim, qkNopeHeadDim + qkRopeHeadDim)
        w.put(.headDim, qkRopeHeadDim)
        w.put(.vHeadDim, vHeadDim)
        w.put(.nGroup, nGroup)
        w.put(.topKGroup, topKGroup)
        w.put(.routedScalingFactor, routedScalingFactor)
        w.put(.scoringFunc, scoringFunc)
        w.put(.topKMethod, topKMethod)
        w.put(.attentionBias, attentionBias)
        w.put(.numNextNPredictLayers, numNextNPredictLayers)
        w.put(.ropeInterleave, ropeInterleave)
        return w.json
    }

    public var expertIntermediateSize: Int { moeIntermediateSize }
    public func isSparseLayer(_ i: Int) -> Bool { i >= firstKDenseReplace && i % moeLayerFreq == 0 }

    var latentAttention: LatentAttentionConfig {
        LatentAttentionConfig(qLoraRank: qLoraRank, kvLoraRank: kvLoraRank, qkNopeHeadDim: qkNopeHeadDim,
                              qkRopeHeadDim: qkRopeHeadDim, vHeadDim: vHeadDim)
    }

    public var layout: HFLayout {
        HFLayout(attention: .latent(latentAttention, bias: attentionBias), sigmoidScoring: scoringFunc == "sigmoid",
                 routerCorrectionBias: true,  // transformers always stores e_score_correction_bias
                 sharedExperts: numSharedExperts, sharedExpertWidth: numSharedExperts * moeIntermediateSize)
    }

    public var skippedCheckpointLayers: Range<Int> {
        common.numHiddenLayers..<(common.numHiddenLayers + numNextNPredictLayers)
    }

    public func transformerConfig() throws -> TransformerConfig {
        var c = try common.transformerConfig(expertWidth: expertIntermediateSize, normTopK: normTopKProb)
        if attentionBias {
            throw common.refuse("attention_bias", "true: biases on o_proj, q_a_proj and kv_a_proj_with_mqa are not implemented")
        }
        if moeLayerFreq != 1 {
            throw common.refuse("moe_layer_freq", "\(moeLayerFreq): transformers ignores it (every layer from first_k_dense_replace on is sparse) while DeepSeek's code honours it; only 1 is unambiguous")
        }
        guard scoringFunc == "sigmoid" else { throw common.refuse("scoring_func", "'\(scoringFunc)', expected 'sigmoid'") }
        c.headDim = nil
        c.latentAttention = latentAttention
        c.ropeStyle = ropeInterleave ? .interleaved : .halfSplit
        c.numKVHeads = common.numAttentionHeads
        c.moe!.router = .sigmoidBias
        c.moe!.nGroup = nGroup
        c.moe!.topkGroup = topKGroup
        c.moe!.routedScalingFactor = Float(routedScalingFactor)
        c.moe!.sharedExperts = numSharedExperts
        c.moe!.sharedExpertIntermediateSize = numSharedExperts * moeIntermediateSize
        c.moe!.sharedGating = .none
        c.moe!.firstDense = firstKDenseReplace
        c.moe!.sequenceLevelAuxLoss = true
        c.moe!.auxLossCoefficient = 0  // DeepSeek-V3 balances with the bias (aux-loss-free)
        return try finishing(c)
    }

    public static func claims(_ config: TransformerConfig) -> Bool {
        config.latentAttention != nil || config.moe?.router == .sigmoidBias
    }

    public init(exporting config: TransformerConfig) throws {
        let x = try HFExportCheck(config, as: Self.self)
        let m = x.moe
        try x.require(router: .sigmoidBias)
        try x.require(qkNorm: .none)
        try x.requireNoAttentionBias()
        guard let l = config.latentAttention else { throw x.refuse("latent_attention", "grouped-query attention (DeepSeek-V3 uses MLA)") }
        guard m.sharedGating == .none else { throw x.refuse("moe.shared_expert_gating", "gated shared experts") }
        if m.sharedExperts > 0 {
            guard m.sharedExpertIntermediateSize == m.sharedExperts * m.expertIntermediateSize else {
                throw x.refuse("moe.shared_expert_intermediate_size", "\(m.sharedExpertIntermediateSize) ≠ shared_experts × expert width = \(m.sharedExperts * m.expertIntermediateSize)")
            }
        }
        let sparse = x.sparseLayers
        let firstK = sparse.firstIndex(of: true) ?? config.numLayers
        guard !sparse[firstK...].contains(false) else {
            throw x.refuse("moe.dense_layers", "dense layers after the first sparse one (DeepSeek-V3 has only first_k_dense_replace)")
        }
        if m.sharedExperts == 0 { throw x.refuse("moe.shared_experts", "0 shared experts (transformers' DeepSeek-V3 always builds n_shared_experts ≥ 1)") }
        common = HFCommonConfig(exporting: config, moe: m, as: Self.self)
        common.numKeyValueHeads = config.numHeads
        common.headDim = l.qkRopeHeadDim
        moeIntermediateSize = m.expertIntermediateSize
        numSharedExperts = m.sharedExperts
        normTopKProb = m.normalizeTopK
        firstKDenseReplace = firstK
        moeLayerFreq = 1
        qLoraRank = l.qLoraRank
        kvLoraRank = l.kvLoraRank
        qkRopeHeadDim = l.qkRopeHeadDim
        qkNopeHeadDim = l.qkNopeHeadDim
        vHeadDim = l.vHeadDim
        nGroup = m.nGroup
        topKGroup = m.topkGroup
        routedScalingFactor = HFCommonConfig.decimal(m.routedScalingFactor)
        scoringFunc = "sigmoid"
        topKMethod = "noaux_tc"
        attentionBias = false
        numNextNPredictLayers = 0
        ropeInterleave = config.ropeStyle == .interleaved
    }
}
