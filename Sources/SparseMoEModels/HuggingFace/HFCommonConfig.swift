import Foundation
import SparseMoECore
import SparseMoENN

/// The `config.json` fields every supported family has, decoded and validated once.
///
/// Both spellings transformers has written are accepted:
/// - expert count: `num_local_experts` (Mixtral, transformers 5 Qwen3-MoE), `num_experts`
///   (Qwen2/3-MoE, OLMoE), `n_routed_experts` (DeepSeek-V3); two spellings that disagree are an error;
/// - RoPE base: top-level `rope_theta` (transformers 4) or `rope_parameters.rope_theta`
///   (transformers 5, possibly nested per layer type); scaling from `rope_scaling` (4) or the
///   other `rope_parameters` entries (5).
///
/// Required (an error names the field when absent): `model_type`, `vocab_size`, `hidden_size`,
/// `intermediate_size`, `num_hidden_layers`, `num_attention_heads`, the expert count,
/// `num_experts_per_tok`. Every other field takes the default of the family's transformers
/// configuration class (`Defaults`).
public struct HFCommonConfig: Sendable, Equatable {
    /// The `model_type` as read.
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    /// Width of the dense MLP (Qwen/DeepSeek dense layers); for Mixtral and OLMoE the expert width.
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    /// Per-head dimension of q/k/v (`head_dim`, else hidden/heads; DeepSeek-V3: `qk_rope_head_dim`).
    public var headDim: Int
    /// Number of routed experts (any of the three spellings).
    public var numExperts: Int
    public var numExpertsPerToken: Int
    public var ropeTheta: Double
    /// RoPE scaling entries other than the base (`rope_type`, `factor`, ...), empty for plain RoPE.
    public var ropeScaling: [String: JSONValue]
    public var rmsNormEps: Double
    public var tieWordEmbeddings: Bool
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var routerAuxLossCoef: Double
    public var outputRouterLogits: Bool
    /// Standard deviation of a fresh model's initialisation.
    public var initializerRange: Double

    /// The defaults that differ between the families' transformers configuration classes.
    public struct Defaults: Sendable {
        public var ropeTheta: Double = 10_000
        public var rmsNormEps: Double = 1e-6
        public var maxPositionEmbeddings: Int
        public var routerAuxLossCoef: Double = 0.001
        /// Whether `head_dim` is read (DeepSeek-V3 derives it from `qk_rope_head_dim` instead).
        public var readsHeadDim = true

        public init(ropeTheta: Double = 10_000, rmsNormEps: Double = 1e-6, maxPositionEmbeddings: Int,
                    routerAuxLossCoef: Double = 0.001, readsHeadDim: Bool = true) {
            self.ropeTheta = ropeTheta
            self.rmsNormEps = rmsNormEps
            self.maxPositionEmbeddings = maxPositionEmbeddings
            self.routerAuxLossCoef = routerAuxLossCoef
            self.readsHeadDim = readsHeadDim
        }
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", architectures
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim"
        case numLocalExperts = "num_local_experts", numExperts = "num_experts", nRoutedExperts = "n_routed_experts"
        case numExpertsPerToken = "num_experts_per_tok"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case rmsNormEps = "rms_norm_eps", tieWordEmbeddings = "tie_word_embeddings", hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings"
        case routerAuxLossCoef = "router_aux_loss_coef", auxLossAlpha = "aux_loss_alpha"
        case outputRouterLogits = "output_router_logits", initializerRange = "initializer_range"
    }

    /// Decodes the shared fields of a config.json that must be of `family`.
    public init<F: HuggingFaceFamily>(from decoder: Decoder, family: F.Type, defaults: Defaults) throws {
        let f = try ConfigFields(decoder, CodingKeys.self)
        modelType = try f.required(.modelType)
        guard F.modelTypes.contains(modelType) else {
            throw SparseMoEError.invalidConfig(field: "model_type",
                                               message: "'\(modelType)' is not a \(F.self) (expected \(F.modelTypes.joined(separator: " or ")))")
        }
        vocabSize = try f.positive(.vocabSize, f.required(.vocabSize))
        hiddenSize = try f.positive(.hiddenSize, f.required(.hiddenSize))
        intermediateSize = try f.positive(.intermediateSize, f.required(.intermediateSize))
        numHiddenLayers = try f.positive(.numHiddenLayers, f.required(.numHiddenLayers))
        numAttentionHeads = try f.positive(.numAttentionHeads, f.required(.numAttentionHeads))
        numKeyValueHeads = try f.positive(.numKeyValueHeads, f.optional(.numKeyValueHeads) ?? numAttentionHeads)
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw SparseMoEError.invalidConfig(field: "num_key_value_heads",
                                               message: "\(numKeyValueHeads) does not divide num_attention_heads = \(numAttentionHeads)")
        }
        if defaults.readsHeadDim, let hd: Int = try f.optional(.headDim) {
            headDim = try f.positive(.headDim, hd)
        } else {
            guard hiddenSize % numAttentionHeads == 0 || !defaults.readsHeadDim else {
                throw SparseMoEError.invalidConfig(field: "head_dim",
                                                   message: "absent, and hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
            }
            headDim = hiddenSize / numAttentionHeads
        }

        let expertKeys: [CodingKeys] = [.numLocalExperts, .numExperts, .nRoutedExperts]
        guard let (key, e) = try f.oneOf(expertKeys, Int.self) else {
            throw SparseMoEError.invalidConfig(field: expertKeys.map(\.stringValue).joined(separator: "|"),
                                               message: "missing required field (the number of routed experts)")
        }
        numExperts = try f.positive(key, e)
        numExpertsPerToken = try f.positive(.numExpertsPerToken, f.required(.numExpertsPerToken))
        guard numExpertsPerToken <= numExperts else {
            throw SparseMoEError.invalidConfig(field: "num_experts_per_tok", message: "\(numExpertsPerToken) exceeds the \(numExperts) experts")
        }

        // RoPE: transformers 4 `rope_theta` + `rope_scaling`; transformers 5 `rope_parameters`.
        var params: [String: JSONValue] = try f.optional(.ropeParameters) ?? [:]
        if params["rope_theta"] == nil, let nested = params["full_attention"] ?? params.values.first(where: {
            if case let .object(o) = $0 { return o["rope_theta"] != nil } else { return false }
        }), case let .object(o) = nested {
            params = o  // per-layer-type form: {"full_attention": {...}, ...}
        }
        let theta5 = params.removeValue(forKey: "rope_theta")
        if let t = theta5, t.number == nil {
            throw SparseMoEError.invalidConfig(field: "rope_parameters.rope_theta", message: "expected a number, found \(t)")
        }
        let theta4: Double? = try f.optional(.ropeTheta)
        if let a = theta4, let b = theta5?.number, a != b {
            throw SparseMoEError.invalidConfig(field: "rope_parameters.rope_theta", message: "\(b) disagrees with rope_theta = \(a)")
        }
        ropeTheta = theta4 ?? theta5?.number ?? defaults.ropeTheta
        guard ropeTheta > 0 else { throw SparseMoEError.invalidConfig(field: "rope_theta", message: "must be positive, found \(ropeTheta)") }
        if let scaling: [String: JSONValue] = try f.optional(.ropeScaling) {
            params.merge(scaling) { current, _ in current }
        }
        if case let .string(kind)? = params["rope_type"] ?? params["type"], kind == "default" {
            params = params.filter { $0.key != "rope_type" && $0.key != "type" }
        }
        ropeScaling = params

        rmsNormEps = try f.optional(.rmsNormEps) ?? defaults.rmsNormEps
        tieWordEmbeddings = try f.optional(.tieWordEmbeddings) ?? false
        hiddenAct = try f.optional(.hiddenAct) ?? "silu"
        maxPositionEmbeddings = try f.positive(.maxPositionEmbeddings,
                                               f.optional(.maxPositionEmbeddings) ?? defaults.maxPositionEmbeddings)
        routerAuxLossCoef = try f.optional(.routerAuxLossCoef) ?? f.optional(.auxLossAlpha) ?? defaults.routerAuxLossCoef
        outputRouterLogits = try f.optional(.outputRouterLogits) ?? false
        initializerRange = try f.optional(.initializerRange) ?? 0.02
    }

    /// The shared fields of a library configuration with experts `moe`, as `F` writes them
    /// (floats printed like the Float: 1e-06, not 9.99999997e-07). Families adjust what they
    /// spell differently (Mixtral's `intermediate_size` is the expert width, ...).
    init<F: HuggingFaceFamily>(exporting config: TransformerConfig, moe m: MoEConfig, as family: F.Type) {
        modelType = F.modelTypes[0]
        vocabSize = config.vocabSize
        hiddenSize = config.hiddenSize
        intermediateSize = config.intermediateSize
        numHiddenLayers = config.numLayers
        numAttentionHeads = config.numHeads
        numKeyValueHeads = config.numKVHeads
        headDim = config.resolvedHeadDim
        numExperts = m.numExperts
        numExpertsPerToken = m.topK
        ropeTheta = Self.decimal(config.ropeTheta)
        ropeScaling = [:]
        rmsNormEps = Self.decimal(config.normEps)
        tieWordEmbeddings = config.tiedEmbeddings
        hiddenAct = "silu"
        maxPositionEmbeddings = config.maxSequenceLength
        routerAuxLossCoef = Self.decimal(m.auxLossCoefficient)
        outputRouterLogits = false
        initializerRange = Self.decimal(config.initStd)
    }

    /// A decimal that prints like the Float (1e-06, not 9.99999997e-07).
    static func decimal(_ x: Float) -> Double {
        if x.rounded() == x && abs(x) < 1e15 { return Double(Int(x)) }
        return Double("\(x)") ?? Double(x)
    }

    /// The shared fields in transformers 5 spelling (and `rope_theta` in transformers 4's too).
    /// The expert count and `head_dim` are the family's to write.
    var json: [String: JSONValue] {
        var w = ConfigWriter<CodingKeys>()
        w.put(.modelType, modelType)
        w.put(.vocabSize, vocabSize)
        w.put(.hiddenSize, hiddenSize)
        w.put(.intermediateSize, intermediateSize)
        w.put(.numHiddenLayers, numHiddenLayers)
        w.put(.numAttentionHeads, numAttentionHeads)
        w.put(.numKeyValueHeads, numKeyValueHeads)
        w.put(.numExpertsPerToken, numExpertsPerToken)
        var rope = ropeScaling
        rope["rope_theta"] = .double(ropeTheta)
        if rope["rope_type"] == nil && rope["type"] == nil { rope["rope_type"] = .string("default") }
        w.put(.ropeParameters, .object(rope))
        w.put(.ropeTheta, ropeTheta)
        w.put(.rmsNormEps, rmsNormEps)
        w.put(.tieWordEmbeddings, tieWordEmbeddings)
        w.put(.hiddenAct, hiddenAct)
        w.put(.maxPositionEmbeddings, maxPositionEmbeddings)
        w.put(.routerAuxLossCoef, routerAuxLossCoef)
        w.put(.outputRouterLogits, outputRouterLogits)
        w.put(.initializerRange, initializerRange)
        return w.json
    }

    // MARK: conversion to the library

    /// The error for a feature of a `modelType` checkpoint the library does not implement.
    func refuse(_ field: String, _ message: String) -> SparseMoEError {
        .invalidConfig(field: field, message: "\(message) (\(modelType) checkpoint; not supported by the library)")
    }

    /// The library configuration with the shared settings (RoPE, RMSNorm, SwiGLU, causal) and
    /// experts of width `expertWidth`; refuses activations other than SiLU and RoPE scaling.
    /// A sliding `window` caps `maxSequenceLength`, so every accepted sequence attends fully.
    func transformerConfig(expertWidth: Int, normTopK: Bool, window: Int? = nil) throws -> TransformerConfig {
        guard hiddenAct == "silu" else { throw refuse("hidden_act", "'\(hiddenAct)': only silu (SwiGLU experts) is supported") }
        guard ropeScaling.isEmpty else {
            throw refuse("rope_parameters", "RoPE scaling \(JSONValue.object(ropeScaling)) is not implemented, only the default rope_type")
        }
        var c = TransformerConfig(vocabSize: vocabSize, hiddenSize: hiddenSize, numLayers: numHiddenLayers,
                                  numHeads: numAttentionHeads, numKVHeads: numKeyValueHeads,
                                  headDim: headDim, maxSequenceLength: window.map { min(maxPositionEmbeddings, $0) } ?? maxPositionEmbeddings,
                                  intermediateSize: intermediateSize)
        c.positionEncoding = .rope
        c.ropeTheta = Float(ropeTheta)
        c.norm = .rms
        c.normEps = Float(rmsNormEps)
        c.ffnKind = .swiglu
        c.tiedEmbeddings = tieWordEmbeddings
        c.initStd = Float(initializerRange)
        c.causal = true
        var m = MoEConfig(numExperts: numExperts, topK: numExpertsPerToken, expertIntermediateSize: expertWidth)
        m.expertKind = .swiglu
        m.normalizeTopK = normTopK
        m.auxLossCoefficient = Float(routerAuxLossCoef)
        m.zLossCoefficient = 0
        m.router = .softmaxTopK
        c.moe = m
        return c
    }
}
