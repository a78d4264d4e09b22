import Foundation
import SparseMoECore
import SparseMoENN

/// Qwen3-MoE (`model_type: qwen3_moe`, transformers `Qwen3MoeConfig`): per-head q/k RMSNorm,
/// explicit `head_dim`, no shared expert, and the Qwen sparse-layer layout (`QwenMoEFields`).
/// Checkpoint names: the library's.
public struct Qwen3MoEConfig: HuggingFaceFamily {
    public static let modelTypes = ["qwen3_moe"]
    public static let causalLMClass = "Qwen3MoeForCausalLM"
    public static let weightNames = HFWeightNames()

    public var common: HFCommonConfig
    public var qwen: QwenMoEFields
    /// Bias on q/k/v/o (refused by the library).
    public var attentionBias: Bool

    enum CodingKeys: String, CodingKey { case attentionBias = "attention_bias", headDim = "head_dim" }

    public init(from decoder: Decoder) throws {
        common = try HFCommonConfig(from: decoder, family: Self.self, defaults: QwenMoEFields.defaults)
        qwen = try QwenMoEFields(from: decoder)
        attentionBias = try ConfigFields(decoder, CodingKeys.self).optional(.attentionBias) ?? false
    }

    public var ownJSON: [String: JSONValue] {
        var w = ConfigWriter<CodingKeys>()
        w.put(.attentionBias, attentionBias)
        w.put(.headDim, common.headDim)
        return qwen.json(numExperts: common.numExperts).merging(w.json) { _, own in own }
    }

    public var expertIntermediateSize: Int { qwen.moeIntermediateSize }
    public func isSparseLayer(_ i: Int) -> Bool { qwen.isSparseLayer(i, numExperts: common.numExperts) }

    public var layout: HFLayout {
        // The window applies only to some layers (`max_window_layers`); the accounting counts full attention.
        HFLayout(attention: .grouped(headDim: common.headDim, qkvBias: attentionBias, outputBias: attentionBias, qkNorm: .perHead,
                                     slidingWindow: nil))
    }

    public func transformerConfig() throws -> TransformerConfig {
        var c = try common.transformerConfig(expertWidth: expertIntermediateSize, normTopK: qwen.normTopKProb, window: qwen.slidingWindow)
        if attentionBias { throw common.refuse("attention_bias", "true: biases on o_proj are not implemented") }
        c.qkNorm = .perHead
        qwen.apply(to: &c.moe!, numLayers: common.numHiddenLayers)
        return try finishing(c)
    }

    public static func claims(_ config: TransformerConfig) -> Bool { config.qkNorm == .perHead }

    public init(exporting config: TransformerConfig) throws {
        let x = try HFExportCheck(config, as: Self.self)
        try x.require(router: .softmaxTopK)
        try x.require(qkNorm: .perHead)
        try x.requireNoAttentionBias()
        try x.requireGroupedAttention()
        try x.requireNoSharedExperts()
        common = HFCommonConfig(exporting: config, moe: x.moe, as: Self.self)
        qwen = QwenMoEFields(exporting: x)
        attentionBias = false
    }
}
