import Foundation
import SparseMoECore
import SparseMoENN

/// Mixtral (`model_type: mixtral`, transformers `MixtralConfig`): grouped-query attention with
/// RoPE, softmax top-k routing always renormalised, SwiGLU experts of width `intermediate_size`,
/// every layer sparse, an optional `sliding_window`. Checkpoint names:
/// `block_sparse_moe.gate`, `block_sparse_moe.experts.{e}.w1/w3/w2` (gate/up/down).
public struct MixtralConfig: HuggingFaceFamily {
    public static let modelTypes = ["mixtral"]
    public static let causalLMClass = "MixtralForCausalLM"
    public static let weightNames = HFWeightNames(moeBlock: "block_sparse_moe", expertGate: "w1", expertUp: "w3", expertDown: "w2")
    static let defaults = HFCommonConfig.Defaults(ropeTheta: 1_000_000, rmsNormEps: 1e-5, maxPositionEmbeddings: 4096 * 32)

    public var common: HFCommonConfig
    /// Attention window applied whenever set (`sliding_window`; null or 0: none).
    public var slidingWindow: Int?
    /// Router logit noise in training (`router_jitter_noise`).
    public var routerJitterNoise: Double

    enum CodingKeys: String, CodingKey {
        case slidingWindow = "sliding_window", routerJitterNoise = "router_jitter_noise"
        case numLocalExperts = "num_local_experts", headDim = "head_dim", attentionBias = "attention_bias"
    }

    public init(from decoder: Decoder) throws {
        common = try HFCommonConfig(from: decoder, family: Self.self, defaults: Self.defaults)
        let f = try ConfigFields(decoder, CodingKeys.self)
        slidingWindow = try f.optional(.slidingWindow, Int.self).flatMap { $0 == 0 ? nil : $0 }
        routerJitterNoise = try f.optional(.routerJitterNoise) ?? 0
    }

    public var ownJSON: [String: JSONValue] {
        var w = ConfigWriter<CodingKeys>()
        w.put(.numLocalExperts, common.numExperts)
        w.put(.headDim, common.headDim)
        w.put(.attentionBias, false)  // transformers builds Mixtral without attention biases
        w.put(.slidingWindow, slidingWindow)
        w.put(.routerJitterNoise, routerJitterNoise)
        return w.json
    }

    public var expertIntermediateSize: Int { common.intermediateSize }
    public func isSparseLayer(_ i: Int) -> Bool { true }

    public var layout: HFLayout {
        HFLayout(attention: .grouped(headDim: common.headDim, qkvBias: false, outputBias: false, qkNorm: .none, slidingWindow: slidingWindow))
    }

    public func transformerConfig() throws -> TransformerConfig {
        var c = try common.transformerConfig(expertWidth: expertIntermediateSize, normTopK: true, window: slidingWindow)
        c.moe!.jitter = Float(routerJitterNoise)
        return try finishing(c)
    }

    /// Mixtral is the plainest family: it takes whatever no other family claims.
    public static func claims(_ config: TransformerConfig) -> Bool { true }

    public init(exporting config: TransformerConfig) throws {
        let x = try HFExportCheck(config, as: Self.self)
        try x.require(router: .softmaxTopK)
        try x.require(qkNorm: .none)
        try x.requireNoAttentionBias()
        try x.requireGroupedAttention()
        try x.requireNoSharedExperts()
        guard x.moe.normalizeTopK else { throw x.refuse("moe.norm_topk_prob", "false (Mixtral always renormalises)") }
        try x.requireEveryLayerSparse()
        common = HFCommonConfig(exporting: config, moe: x.moe, as: Self.self)
        common.intermediateSize = x.moe.expertIntermediateSize
        slidingWindow = nil
        routerJitterNoise = HFCommonConfig.decimal(x.moe.jitter)
    }
}
