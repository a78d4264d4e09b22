import Foundation
import SparseMoECore
import SparseMoENN

/// OLMoE (`model_type: olmoe`, transformers `OlmoeConfig`): as Mixtral, plus RMSNorm over the
/// full q and k projections (`[H·D]`, `[KV·D]`) and `norm_topk_prob` (default false).
/// Checkpoint names: the library's (`mlp.gate`, `mlp.experts.{e}.gate_proj/up_proj/down_proj`).
public struct OLMoEConfig: HuggingFaceFamily {
    public static let modelTypes = ["olmoe"]
    public static let causalLMClass = "OlmoeForCausalLM"
    public static let weightNames = HFWeightNames()
    static let defaults = HFCommonConfig.Defaults(rmsNormEps: 1e-5, maxPositionEmbeddings: 4096, routerAuxLossCoef: 0.01)

    public var common: HFCommonConfig
    /// Renormalise the top-k routing weights to sum to 1.
    public var normTopKProb: Bool
    /// Bias on q/k/v/o (refused by the library).
    public var attentionBias: Bool
    /// Clamp q/k/v to ±`clip_qkv` (null: off; the library refuses any other value).
    public var clipQKV: Double?

    enum CodingKeys: String, CodingKey {
        case normTopKProb = "norm_topk_prob", attentionBias = "attention_bias", clipQKV = "clip_qkv"
        case numExperts = "num_experts", headDim = "head_dim"
    }

    public init(from decoder: Decoder) throws {
        common = try HFCommonConfig(from: decoder, family: Self.self, defaults: Self.defaults)
        let f = try ConfigFields(decoder, CodingKeys.self)
        normTopKProb = try f.optional(.normTopKProb) ?? false
        attentionBias = try f.optional(.attentionBias) ?? false
        clipQKV = try f.optional(.clipQKV)
    }

    public var ownJSON: [String: JSONValue] {
        var w = ConfigWriter<CodingKeys>()
        w.put(.numExperts, common.numExperts)
        w.put(.headDim, common.headDim)
        w.put(.normTopKProb, normTopKProb)
        w.put(.attentionBias, attentionBias)
        w.put(.clipQKV, clipQKV)
        return w.json
    }

    public var expertIntermediateSize: Int { common.intermediateSize }
    public func isSparseLayer(_ i: Int) -> Bool { true }

    public var layout: HFLayout {
        HFLayout(attention: .grouped(headDim: common.headDim, qkvBias: attentionBias, outputBias: attentionBias, qkNorm: .full, slidingWindow: nil))
    }

    public func transformerConfig() throws -> TransformerConfig {
        var c = try common.transformerConfig(expertWidth: expertIntermediateSize, normTopK: normTopKProb)
        if attentionBias { throw common.refuse("attention_bias", "true: biases on o_proj are not implemented") }
        if let clip = clipQKV { throw common.refuse("clip_qkv", "\(clip): clipping q/k/v is not implemented") }
        c.qkNorm = .full
        return try finishing(c)
    }

    public static func claims(_ config: TransformerConfig) -> Bool { config.qkNorm == .full }

    public init(exporting config: TransformerConfig) throws {
        let x = try HFExportCheck(config, as: Self.self)
        try x.require(router: .softmaxTopK)
        try x.require(qkNorm: .full)
        try x.requireNoAttentionBias()
        try x.requireGroupedAttention()
        try x.requireNoSharedExperts()
        try x.requireEveryLayerSparse()
        common = HFCommonConfig(exporting: config, moe: x.moe, as: Self.self)
        common.intermediateSize = x.moe.expertIntermediateSize
        normTopKProb = x.moe.normalizeTopK
        attentionBias = false
        clipQKV = nil
    }
}
