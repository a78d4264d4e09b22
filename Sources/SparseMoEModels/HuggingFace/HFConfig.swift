import Foundation
import SparseMoECore

/// A Hugging Face `config.json` of a supported mixture-of-experts architecture,
/// decoded into one resolved, validated description.
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
/// `num_experts_per_tok`; plus `moe_intermediate_size` (Qwen2/3-MoE, DeepSeek-V3),
/// `shared_expert_intermediate_size` (Qwen2-MoE) and `kv_lora_rank`, `qk_rope_head_dim`,
/// `qk_nope_head_dim`, `v_head_dim`, `q_lora_rank` (DeepSeek-V3; `q_lora_rank` may be null).
/// Every other field takes the default of the architecture's transformers configuration class.
public struct HFConfig: Sendable, Equatable {
    /// The supported `model_type` values.
    public enum ModelType: String, Sendable, CaseIterable, Codable {
        case mixtral
        case qwen2MoE = "qwen2_moe"
        case qwen3MoE = "qwen3_moe"
        case olmoe
        case deepseekV3 = "deepseek_v3"
    }

    public var modelType: ModelType
    public var vocabSize: Int
    public var hiddenSize: Int
    /// Width of the dense MLP (Qwen/DeepSeek dense layers); for Mixtral and OLMoE the expert width.
    public var intermediateSize: Int
    /// Width of one routed expert (Qwen2/3-MoE, DeepSeek-V3); nil where `intermediateSize` is used.
    public var moeIntermediateSize: Int?
    /// Width of the Qwen2-MoE shared expert.
    public var sharedExpertIntermediateSize: Int?
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    /// Per-head dimension of q/k/v for standard attention (`head_dim`, else hidden/heads).
    public var headDim: Int
    /// Number of routed experts (any of the three spellings).
    public var numExperts: Int
    public var numExpertsPerToken: Int
    /// DeepSeek-V3 shared experts (0 elsewhere; Qwen2-MoE's shared expert is described by its width).
    public var numSharedExperts: Int
    /// Renormalise the top-k routing weights to sum to 1 (always true for Mixtral).
    public var normTopKProb: Bool
    /// Qwen2/3-MoE: layer i is sparse when (i+1) % step == 0 and i ∉ `mlpOnlyLayers`.
    public var decoderSparseStep: Int
    public var mlpOnlyLayers: [Int]
    /// DeepSeek-V3: the first k layers are dense.
    public var firstKDenseReplace: Int
    /// DeepSeek-V3 (original repository): layer i ≥ first_k_dense_replace is sparse when i % freq == 0.
    public var moeLayerFreq: Int
    // DeepSeek-V3 multi-head latent attention.
    public var qLoraRank: Int?
    public var kvLoraRank: Int?
    public var qkRopeHeadDim: Int?
    public var qkNopeHeadDim: Int?
    public var vHeadDim: Int?
    public var nGroup: Int?
    public var topKGroup: Int?
    public var routedScalingFactor: Double
    /// Router scoring: "softmax" or "sigmoid" (DeepSeek-V3).
    public var scoringFunc: String
    public var topKMethod: String?
    public var ropeTheta: Double
    /// RoPE scaling entries other than the base (`rope_type`, `factor`, ...), empty for plain RoPE.
    public var ropeScaling: [String: JSONValue]
    public var rmsNormEps: Double
    public var tieWordEmbeddings: Bool
    /// Bias on the attention projections (OLMoE, Qwen3-MoE: q/k/v/o; DeepSeek-V3: q_a, kv_a, o).
    public var attentionBias: Bool
    /// Qwen2-MoE: bias on q/k/v (not o).
    public var qkvBias: Bool
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var routerAuxLossCoef: Double
    public var outputRouterLogits: Bool
    /// DeepSeek-V3 multi-token-prediction layers (not part of the main model; transformers does not load them).
    public var numNextNPredictLayers: Int
    /// Sliding attention window in effect (Mixtral `sliding_window`; Qwen only with `use_sliding_window`).
    public var slidingWindow: Int?

    // MARK: derived facts

    /// Width of one routed expert.
    public var expertIntermediateSize: Int { moeIntermediateSize ?? intermediateSize }

    /// Whether decoder layer `i` (0-based) has a mixture-of-experts block (else a dense MLP),
    /// exactly as transformers builds the model.
    public func isSparseLayer(_ i: Int) -> Bool {
        switch modelType {
        case .mixtral, .olmoe:
            return true
        case .qwen2MoE, .qwen3MoE:
            return !mlpOnlyLayers.contains(i) && numExperts > 0 && (i + 1) % decoderSparseStep == 0
        case .deepseekV3:
            return i >= firstKDenseReplace && i % moeLayerFreq == 0
        }
    }

    /// Width of the shared-expert MLP of a sparse layer (0 when the architecture has none).
    public var sharedExpertWidth: Int {
        switch modelType {
        case .qwen2MoE: return sharedExpertIntermediateSize ?? 0
        case .deepseekV3: return numSharedExperts * expertIntermediateSize
        default: return 0
        }
    }

    // MARK: loading

    /// Reads and decodes `config.json` (or any file holding it); errors name the file and field.
    public static func load(from url: URL) throws -> HFConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SparseMoEError.file(path: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        return try decode(data, path: url.path)
    }

    /// Decodes config JSON; `path` is used in error messages.
    public static func decode(_ data: Data, path: String = "config.json") throws -> HFConfig {
        do {
            return try JSONDecoder().decode(HFConfig.self, from: data)
        } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: path, message: e.description)
        } catch {
            throw SparseMoEError.file(path: path, message: "malformed JSON: \(describeDecodingError(error))")
        }
    }
}

// MARK: - Decoding

struct ConfigKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Field access that turns every failure into `invalidConfig` naming the field.
struct ConfigFields {
    let c: KeyedDecodingContainer<ConfigKey>

    func has(_ key: String) -> Bool { c.contains(ConfigKey(key)) }

    /// The value, or nil when the key is absent or null.
    func optional<T: Decodable>(_ key: String, _ type: T.Type = T.self) throws -> T? {
        do {
            return try c.decodeIfPresent(T.self, forKey: ConfigKey(key))
        } catch {
            throw SparseMoEError.invalidConfig(field: key, message: "expected \(Self.typeName(T.self)): \(describeDecodingError(error))")
        }
    }

    func required<T: Decodable>(_ key: String, _ type: T.Type = T.self) throws -> T {
        guard let v: T = try optional(key) else {
            throw SparseMoEError.invalidConfig(field: key, message: "missing required field (expected \(Self.typeName(T.self)))")
        }
        return v
    }

    /// The first present spelling; two present spellings must agree.
    func oneOf<T: Decodable & Equatable>(_ keys: [String], _ type: T.Type = T.self) throws -> T? {
        var found: (String, T)?
        for k in keys {
            guard let v: T = try optional(k) else { continue }
            if let (k0, v0) = found, v0 != v {
                throw SparseMoEError.invalidConfig(field: k, message: "\(v) disagrees with '\(k0)' = \(v0)")
            }
            if found == nil { found = (k, v) }
        }
        return found?.1
    }

    func positive(_ key: String, _ value: Int) throws -> Int {
        guard value > 0 else { throw SparseMoEError.invalidConfig(field: key, message: "must be positive, found \(value)") }
        return value
    }

    static func typeName<T>(_ t: T.Type) -> String {
        switch t {
        case is Int.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        case is [Int].Type: return "a list of integers"
        default: return "\(t)"
        }
    }
}

extension HFConfig: Decodable {
    public init(from decoder: Decoder) throws {
        let f = ConfigFields(c: try decoder.container(keyedBy: ConfigKey.self))
        let typeName: String = try f.required("model_type")
        guard let type = ModelType(rawValue: typeName) else {
            throw SparseMoEError.invalidConfig(
                field: "model_type",
                message: "unsupported architecture '\(typeName)' (supported: \(ModelType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        modelType = type
        vocabSize = try f.positive("vocab_size", f.required("vocab_size"))
        hiddenSize = try f.positive("hidden_size", f.required("hidden_size"))
        intermediateSize = try f.positive("intermediate_size", f.required("intermediate_size"))
        numHiddenLayers = try f.positive("num_hidden_layers", f.required("num_hidden_layers"))
        numAttentionHeads = try f.positive("num_attention_heads", f.required("num_attention_heads"))
        numKeyValueHeads = try f.positive("num_key_value_heads", f.optional("num_key_value_heads") ?? numAttentionHeads)
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw SparseMoEError.invalidConfig(field: "num_key_value_heads",
                                               message: "\(numKeyValueHeads) does not divide num_attention_heads = \(numAttentionHeads)")
        }
        if let hd: Int = try f.optional("head_dim"), type != .deepseekV3 {
            headDim = try f.positive("head_dim", hd)
        } else {
            guard hiddenSize % numAttentionHeads == 0 || type == .deepseekV3 else {
                throw SparseMoEError.invalidConfig(field: "head_dim",
                                                   message: "absent, and hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
            }
            headDim = hiddenSize / numAttentionHeads
        }

        let expertKeys = ["num_local_experts", "num_experts", "n_routed_experts"]
        guard let e: Int = try f.oneOf(expertKeys) else {
            throw SparseMoEError.invalidConfig(field: expertKeys.joined(separator: "|"), message: "missing required field (the number of routed experts)")
        }
        numExperts = try f.positive(expertKeys.first { f.has($0) }!, e)
        numExpertsPerToken = try f.positive("num_experts_per_tok", f.required("num_experts_per_tok"))
        guard numExpertsPerToken <= numExperts else {
            throw SparseMoEError.invalidConfig(field: "num_experts_per_tok", message: "\(numExpertsPerToken) exceeds the \(numExperts) experts")
        }

        let usesMoeWidth = type == .qwen2MoE || type == .qwen3MoE || type == .deepseekV3
        moeIntermediateSize = usesMoeWidth ? try f.positive("moe_intermediate_size", f.required("moe_intermediate_size")) : try f.optional("moe_intermediate_size")
        sharedExpertIntermediateSize = type == .qwen2MoE
            ? try f.positive("shared_expert_intermediate_size", f.required("shared_expert_intermediate_size"))
            : try f.optional("shared_expert_intermediate_size")
        numSharedExperts = type == .deepseekV3 ? try f.optional("n_shared_experts") ?? 1 : 0
        guard numSharedExperts >= 0 else { throw SparseMoEError.invalidConfig(field: "n_shared_experts", message: "must be ≥ 0, found \(numSharedExperts)") }

        normTopKProb = type == .mixtral ? true : try f.optional("norm_topk_prob") ?? (type == .deepseekV3)
        decoderSparseStep = try f.positive("decoder_sparse_step", f.optional("decoder_sparse_step") ?? 1)
        mlpOnlyLayers = try f.optional("mlp_only_layers") ?? []
        if let bad = mlpOnlyLayers.first(where: { $0 < 0 }) {
            throw SparseMoEError.invalidConfig(field: "mlp_only_layers", message: "negative layer index \(bad)")
        }
        firstKDenseReplace = type == .deepseekV3 ? try f.optional("first_k_dense_replace") ?? 3 : 0
        guard firstKDenseReplace >= 0 else { throw SparseMoEError.invalidConfig(field: "first_k_dense_replace", message: "must be ≥ 0, found \(firstKDenseReplace)") }
        moeLayerFreq = try f.positive("moe_layer_freq", f.optional("moe_layer_freq") ?? 1)

        if type == .deepseekV3 {
            guard f.has("q_lora_rank") else {
                throw SparseMoEError.invalidConfig(field: "q_lora_rank", message: "missing required field (an integer, or null for an uncompressed query)")
            }
            qLoraRank = try f.optional("q_lora_rank").map { try f.positive("q_lora_rank", $0) }
            kvLoraRank = try f.positive("kv_lora_rank", f.required("kv_lora_rank"))
            qkRopeHeadDim = try f.positive("qk_rope_head_dim", f.required("qk_rope_head_dim"))
            qkNopeHeadDim = try f.required("qk_nope_head_dim")
            vHeadDim = try f.positive("v_head_dim", f.required("v_head_dim"))
            nGroup = try f.positive("n_group", f.optional("n_group") ?? 8)
            topKGroup = try f.positive("topk_group", f.optional("topk_group") ?? 4)
            guard numExperts % nGroup! == 0 else {
                throw SparseMoEError.invalidConfig(field: "n_group", message: "\(nGroup!) does not divide the \(numExperts) routed experts")
            }
            guard topKGroup! <= nGroup! else {
                throw SparseMoEError.invalidConfig(field: "topk_group", message: "\(topKGroup!) exceeds n_group = \(nGroup!)")
            }
            if let qk: Int = try f.optional("qk_head_dim"), qk != qkNopeHeadDim! + qkRopeHeadDim! {
                throw SparseMoEError.invalidConfig(field: "qk_head_dim", message: "\(qk) ≠ qk_nope_head_dim + qk_rope_head_dim = \(qkNopeHeadDim! + qkRopeHeadDim!)")
            }
            headDim = qkRopeHeadDim!  // transformers' DeepseekV3Config sets head_dim = qk_rope_head_dim
        } else {
            qLoraRank = nil; kvLoraRank = nil; qkRopeHeadDim = nil; qkNopeHeadDim = nil; vHeadDim = nil
            nGroup = nil; topKGroup = nil
        }
        routedScalingFactor = try f.optional("routed_scaling_factor") ?? (type == .deepseekV3 ? 2.5 : 1.0)
        scoringFunc = try f.optional("scoring_func") ?? (type == .deepseekV3 ? "sigmoid" : "softmax")
        guard scoringFunc == "softmax" || scoringFunc == "sigmoid" else {
            throw SparseMoEError.invalidConfig(field: "scoring_func", message: "'\(scoringFunc)' (expected softmax or sigmoid)")
        }
        topKMethod = try f.optional("topk_method") ?? (type == .deepseekV3 ? "noaux_tc" : nil)

        // RoPE: transformers 4 `rope_theta` + `rope_scaling`; transformers 5 `rope_parameters`.
        let defaultTheta: Double = type == .mixtral ? 1_000_000 : 10_000
        var params: [String: JSONValue] = try f.optional("rope_parameters") ?? [:]
        if params["rope_theta"] == nil, let nested = params["full_attention"] ?? params.values.first(where: {
            if case let .object(o) = $0 { return o["rope_theta"] != nil } else { return false }
        }), case let .object(o) = nested {
            params = o  // per-layer-type form: {"full_attention": {...}, ...}
        }
        let theta5 = params.removeValue(forKey: "rope_theta")
        if let t = theta5, t.number == nil {
            throw SparseMoEError.invalidConfig(field: "rope_parameters.rope_theta", message: "expected a number, found \(t)")
        }
        let theta4: Double? = try f.optional("rope_theta")
        if let a = theta4, let b = theta5?.number, a != b {
            throw SparseMoEError.invalidConfig(field: "rope_parameters.rope_theta", message: "\(b) disagrees with rope_theta = \(a)")
        }
        ropeTheta = theta4 ?? theta5?.number ?? defaultTheta
        guard ropeTheta > 0 else { throw SparseMoEError.invalidConfig(field: "rope_theta", message: "must be positive, found \(ropeTheta)") }
        if let scaling: [String: JSONValue] = try f.optional("rope_scaling") {
            params.merge(scaling) { current, _ in current }
        }
        if case let .string(kind)? = params["rope_type"] ?? params["type"], kind == "default" {
            params = params.filter { $0.key != "rope_type" && $0.key != "type" }
        }
        ropeScaling = params

        rmsNormEps = try f.optional("rms_norm_eps") ?? (type == .mixtral || type == .olmoe ? 1e-5 : 1e-6)
        tieWordEmbeddings = try f.optional("tie_word_embeddings") ?? false
        attentionBias = try f.optional("attention_bias") ?? false
        qkvBias = type == .qwen2MoE ? try f.optional("qkv_bias") ?? true : false
        hiddenAct = try f.optional("hidden_act") ?? "silu"
        let defaultPositions: Int
        switch type {
        case .mixtral: defaultPositions = 4096 * 32
        case .qwen2MoE, .qwen3MoE: defaultPositions = 32768
        case .olmoe, .deepseekV3: defaultPositions = 4096
        }
        maxPositionEmbeddings = try f.positive("max_position_embeddings", f.optional("max_position_embeddings") ?? defaultPositions)
        routerAuxLossCoef = try f.optional("router_aux_loss_coef") ?? f.optional("aux_loss_alpha") ?? (type == .olmoe ? 0.01 : 0.001)
        outputRouterLogits = try f.optional("output_router_logits") ?? false
        numNextNPredictLayers = try f.optional("num_nextn_predict_layers") ?? 0
        // Mixtral applies `sliding_window` whenever set; Qwen2/3-MoE only with `use_sliding_window`
        // (and then per `layer_types`/`max_window_layers`, not modelled here); 0 means none.
        let window: Int? = try f.optional("sliding_window")
        let useWindow: Bool = try f.optional("use_sliding_window") ?? false
        switch type {
        case .mixtral: slidingWindow = window
        case .qwen2MoE, .qwen3MoE: slidingWindow = useWindow ? window : nil
        default: slidingWindow = nil
        }
        if slidingWindow == 0 { slidingWindow = nil }
    }
}

// MARK: - Encoding (transformers 5 spelling)

extension HFConfig: Encodable {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: ConfigKey.self)
        func put<T: Encodable>(_ key: String, _ value: T?) throws {
            if let value { try c.encode(value, forKey: ConfigKey(key)) } else { try c.encodeNil(forKey: ConfigKey(key)) }
        }
        try put("model_type", modelType.rawValue)
        try put("vocab_size", vocabSize)
        try put("hidden_size", hiddenSize)
        try put("intermediate_size", intermediateSize)
        try put("num_hidden_layers", numHiddenLayers)
        try put("num_attention_heads", numAttentionHeads)
        try put("num_key_value_heads", numKeyValueHeads)
        try put("num_experts_per_tok", numExpertsPerToken)
        try put("rms_norm_eps", rmsNormEps)
        try put("tie_word_embeddings", tieWordEmbeddings)
        try put("hidden_act", hiddenAct)
        try put("max_position_embeddings", maxPositionEmbeddings)
        try put("router_aux_loss_coef", routerAuxLossCoef)
        try put("output_router_logits", outputRouterLogits)
        var rope = ropeScaling
        rope["rope_theta"] = .double(ropeTheta)
        if rope["rope_type"] == nil && rope["type"] == nil { rope["rope_type"] = .string("default") }
        try put("rope_parameters", rope)
        try put("attention_bias", attentionBias)
        try put("sliding_window", slidingWindow)
        if slidingWindow != nil && modelType != .mixtral { try put("use_sliding_window", true) }
        if modelType != .deepseekV3 { try put("head_dim", headDim) }
        switch modelType {
        case .mixtral:
            try put("num_local_experts", numExperts)
        case .olmoe:
            try put("num_experts", numExperts)
            try put("norm_topk_prob", normTopKProb)
        case .qwen2MoE, .qwen3MoE:
            try put("num_experts", numExperts)
            try put("moe_intermediate_size", moeIntermediateSize)
            try put("norm_topk_prob", normTopKProb)
            try put("decoder_sparse_step", decoderSparseStep)
            try put("mlp_only_layers", mlpOnlyLayers)
            if modelType == .qwen2MoE {
                try put("shared_expert_intermediate_size", sharedExpertIntermediateSize)
                try put("qkv_bias", qkvBias)
            }
        case .deepseekV3:
            try put("n_routed_experts", numExperts)
            try put("n_shared_experts", numSharedExperts)
            try put("moe_intermediate_size", moeIntermediateSize)
            try put("norm_topk_prob", normTopKProb)
            try put("first_k_dense_replace", firstKDenseReplace)
            if moeLayerFreq != 1 { try put("moe_layer_freq", moeLayerFreq) }
            try put("q_lora_rank", qLoraRank)
            try put("kv_lora_rank", kvLoraRank)
            try put("qk_rope_head_dim", qkRopeHeadDim)
            try put("qk_nope_head_dim", qkNopeHeadDim)
            try put("v_head_dim", vHeadDim)
            try put("n_group", nGroup)
            try put("topk_group", topKGroup)
            try put("routed_scaling_factor", routedScalingFactor)
            try put("scoring_func", scoringFunc)
            try put("topk_method", topKMethod)
            try put("num_nextn_predict_layers", numNextNPredictLayers)
        }
    }
}
