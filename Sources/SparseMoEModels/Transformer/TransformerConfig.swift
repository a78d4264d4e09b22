import SparseMoECore
import SparseMoENN

/// How token positions enter the model.
public enum PositionEncoding: String, Codable, Sendable, CaseIterable {
    /// Rotary embeddings on q and k in every attention layer.
    case rope
    /// Fixed sinusoids added to the token embeddings (Vaswani et al.).
    case sinusoidal
    /// A learned table [max_position_embeddings, C] added to the token embeddings.
    case learned
}

/// The router families of the MoE layer.
public enum RouterKind: String, Codable, Sendable, CaseIterable {
    /// Softmax top-k (Mixtral, Qwen, OLMoE); with `capacity_factor` it drops tokens.
    case softmaxTopK = "softmax_topk"
    /// Switch Transformer: top-1 with a capacity.
    case switchTop1 = "switch_top1"
    /// Noisy top-k gating (Shazeer et al. 2017).
    case noisyTopK = "noisy_topk"
    /// Expert choice (Zhou et al. 2022).
    case expertChoice = "expert_choice"
    /// Sigmoid scores + selection bias, aux-loss-free (DeepSeek-V3).
    case sigmoidBias = "sigmoid_bias"
    /// Fixed hash of the token id (Roller et al. 2021).
    case hash
}

/// The MoE part of a `TransformerConfig`.
public struct MoEConfig: Codable, Sendable, Equatable {
    /// E
    public var numExperts: Int
    /// K
    public var topK: Int
    /// F of one routed expert.
    public var expertIntermediateSize: Int
    public var expertKind: FeedForwardKind = .swiglu
    public var router: RouterKind = .softmaxTopK
    /// Renormalise the top-k softmax weights (Mixtral: true; Qwen/OLMoE: norm_topk_prob).
    public var normalizeTopK: Bool = true
    /// Token-choice capacity factor; nil = dropless.
    public var capacityFactor: Double?
    public var minCapacity: Int = 1
    public var dropPolicy: DropPolicy = .probability
    /// Contiguous token groups the capacity applies to separately (GShard's groups,
    /// `CapacityLimit.groups`): one process with N groups drops exactly what N data- or
    /// expert-parallel ranks drop, each routing its own tokens. Default 1.
    public var capacityGroups: Int = 1
    /// Switch multiplicative jitter ε on the router input (training only).
    public var jitter: Float = 0
    /// DeepSeek-V3 group-limited routing.
    public var nGroup: Int = 1
    public var topkGroup: Int = 1
    /// Factor on the routed experts' gates (softmax_topk and sigmoid_bias routers; 1 = none).
    public var routedScalingFactor: Float = 1
    /// Aux-loss-free bias update rate u (sigmoid_bias router), applied once per optimiser step.
    public var biasUpdateRate: Float = 0.001
    /// Shared experts every token passes through (0 = none) and their total hidden width.
    public var sharedExperts: Int = 0
    public var sharedExpertIntermediateSize: Int = 0
    public var sharedGating: SharedExpertGating = .none
    public var auxLossCoefficient: Float = 0.01
    public var sequenceLevelAuxLoss: Bool = false
    public var zLossCoefficient: Float = 0.001
    /// MoE in every n-th layer (layer i is MoE when (i + 1) % every == 0), after the first `firstDense` layers.
    public var every: Int = 1
    public var firstDense: Int = 0
    /// Layers forced dense (Qwen `mlp_only_layers`).
    public var denseLayers: [Int] = []

    public init(numExperts: Int, topK: Int, expertIntermediateSize: Int) {
        self.numExperts = numExperts
        self.topK = topK
        self.expertIntermediateSize = expertIntermediateSize
    }

    enum CodingKeys: String, CodingKey {
        case numExperts = "num_experts", topK = "top_k", expertIntermediateSize = "expert_intermediate_size"
        case expertKind = "expert_kind", router, normalizeTopK = "norm_topk_prob"
        case capacityFactor = "capacity_factor", minCapacity = "min_capacity", dropPolicy = "drop_policy"
        case capacityGroups = "capacity_groups"
        case jitter = "router_jitter_noise", nGroup = "n_group", topkGroup = "topk_group"
        case routedScalingFactor = "routed_scaling_factor", biasUpdateRate = "bias_update_rate"
        case sharedExperts = "shared_experts", sharedExpertIntermediateSize = "shared_expert_intermediate_size"
        case sharedGating = "shared_expert_gating", auxLossCoefficient = "router_aux_loss_coef"
        case sequenceLevelAuxLoss = "sequence_level_aux_loss", zLossCoefficient = "router_z_loss_coef"
        case every = "moe_every", firstDense = "first_k_dense", denseLayers = "dense_layers"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        numExperts = try c.decode(Int.self, forKey: .numExperts)
        topK = try c.decode(Int.self, forKey: .topK)
        expertIntermediateSize = try c.decode(Int.self, forKey: .expertIntermediateSize)
        expertKind = try c.decodeIfPresent(FeedForwardKind.self, forKey: .expertKind) ?? .swiglu
        router = try c.decodeIfPresent(RouterKind.self, forKey: .router) ?? .softmaxTopK
        normalizeTopK = try c.decodeIfPresent(Bool.self, forKey: .normalizeTopK) ?? true
        capacityFactor = try c.decodeIfPresent(Double.self, forKey: .capacityFactor)
        minCapacity = try c.decodeIfPresent(Int.self, forKey: .minCapacity) ?? 1
        dropPolicy = try c.decodeIfPresent(DropPolicy.self, forKey: .dropPolicy) ?? .probability
        capacityGroups = try c.decodeIfPresent(Int.self, forKey: .capacityGroups) ?? 1
        jitter = try c.decodeIfPresent(Float.self, forKey: .jitter) ?? 0
        nGroup = try c.decodeIfPresent(Int.self, forKey: .nGroup) ?? 1
        topkGroup = try c.decodeIfPresent(Int.self, forKey: .topkGroup) ?? 1
        routedScalingFactor = try c.decodeIfPresent(Float.self, forKey: .routedScalingFactor) ?? 1
        biasUpdateRate = try c.decodeIfPresent(Float.self, forKey: .biasUpdateRate) ?? 0.001
        sharedExperts = try c.decodeIfPresent(Int.self, forKey: .sharedExperts) ?? 0
        sharedExpertIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .sharedExpertIntermediateSize) ?? 0
        sharedGating = try c.decodeIfPresent(SharedExpertGating.self, forKey: .sharedGating) ?? .none
        auxLossCoefficient = try c.decodeIfPresent(Float.self, forKey: .auxLossCoefficient) ?? 0.01
        sequenceLevelAuxLoss = try c.decodeIfPresent(Bool.self, forKey: .sequenceLevelAuxLoss) ?? false
        zLossCoefficient = try c.decodeIfPresent(Float.self, forKey: .zLossCoefficient) ?? 0.001
        every = try c.decodeIfPresent(Int.self, forKey: .every) ?? 1
        firstDense = try c.decodeIfPresent(Int.self, forKey: .firstDense) ?? 0
        denseLayers = try c.decodeIfPresent([Int].self, forKey: .denseLayers) ?? []
    }
}

/// Everything that defines a `TransformerLM`. JSON keys are snake_case, close to the
/// Hugging Face spellings (`hidden_size`, `num_attention_heads`, ...).
public struct TransformerConfig: Codable, Sendable, Equatable {
    /// V
    public var vocabSize: Int
    /// C
    public var hiddenSize: Int
    public var numLayers: Int
    /// H
    public var numHeads: Int
    /// KV heads (divides H; H = GQA off, 1 = multi-query).
    public var numKVHeads: Int
    /// D; nil = C / H.
    public var headDim: Int?
    /// Longest sequence (learned position table size; generation limit).
    public var maxSequenceLength: Int
    public var positionEncoding: PositionEncoding = .rope
    public var ropeTheta: Float = 10000
    public var ropeStyle: RotaryStyle = .halfSplit
    public var norm: NormKind = .rms
    public var normEps: Float = 1e-5
    /// Bias on the q, k, v projections (Qwen2).
    public var attentionBias: Bool = false
    /// Normalisation of q and k (Qwen3: per head; OLMoE: over the full projection).
    public var qkNorm: QKNorm = .none
    /// Multi-head latent attention instead of grouped-query attention (DeepSeek-V3).
    public var latentAttention: LatentAttentionConfig?
    /// Dense FFN kind and hidden width F (dense layers; and the whole model when `moe` is nil).
    public var ffnKind: FeedForwardKind = .swiglu
    public var intermediateSize: Int
    /// Mixture of experts; nil = a dense model.
    public var moe: MoEConfig?
    public var tiedEmbeddings: Bool = false
    /// Causal (autoregressive) attention; false for masked-LM (bidirectional) models.
    public var causal: Bool = true
    /// Standard deviation of the weight initialisation.
    public var initStd: Float = 0.02

    public init(vocabSize: Int, hiddenSize: Int, numLayers: Int, numHeads: Int, numKVHeads: Int? = nil,
                headDim: Int? = nil, maxSequenceLength: Int, intermediateSize: Int, moe: MoEConfig? = nil) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads ?? numHeads
        self.headDim = headDim
        self.maxSequenceLength = maxSequenceLength
        self.intermediateSize = intermediateSize
        self.moe = moe
    }

    /// The most layers a config may have (2²⁰, far beyond any model that fits in memory):
    /// code walks the layers one by one, so the count must be bounded before it does.
    public static let maxLayers = 1 << 20

    /// D, the per-head width.
    public var resolvedHeadDim: Int { headDim ?? hiddenSize / max(numHeads, 1) }

    /// Whether layer `i` uses the MoE FFN.
    public func isMoELayer(_ i: Int) -> Bool {
        guard let m = moe else { return false }
        return i >= m.firstDense && (i + 1) % m.every == 0 && !m.denseLayers.contains(i)
    }

    /// Checks every field; throws `SparseMoEError.invalidConfig` naming the first bad one.
    public func validate() throws {
        try requireConfig(vocabSize >= 1, "vocab_size", "must be ≥ 1, got \(vocabSize)")
        try requireConfig(hiddenSize >= 1, "hidden_size", "must be ≥ 1, got \(hiddenSize)")
        try requireConfig(numLayers >= 1 && numLayers <= Self.maxLayers, "num_hidden_layers",
                          "must be in 1...\(Self.maxLayers), got \(numLayers)")
        try requireConfig(numHeads >= 1, "num_attention_heads", "must be ≥ 1, got \(numHeads)")
        try requireConfig(numKVHeads >= 1 && numHeads % numKVHeads == 0, "num_key_value_heads",
                 "must divide num_attention_heads (\(numHeads)), got \(numKVHeads)")
        if headDim == nil && latentAttention == nil {
            try requireConfig(hiddenSize % numHeads == 0, "num_attention_heads",
                     "must divide hidden_size (\(hiddenSize)) when head_dim is not given, got \(numHeads)")
        }
        try requireConfig(resolvedHeadDim >= 1, "head_dim", "must be ≥ 1, got \(resolvedHeadDim)")
        if positionEncoding == .rope && latentAttention == nil {
            try requireConfig(resolvedHeadDim % 2 == 0, "head_dim", "must be even for rotary embeddings, got \(resolvedHeadDim)")
        }
        try requireConfig(maxSequenceLength >= 1, "max_position_embeddings", "must be ≥ 1, got \(maxSequenceLength)")
        try requireConfig(ropeTheta > 0 && ropeTheta.isFinite, "rope_theta", "must be > 0, got \(ropeTheta)")
        try requireConfig(normEps > 0 && normEps.isFinite, "rms_norm_eps", "must be finite and > 0, got \(normEps)")
        try requireConfig(intermediateSize >= 1, "intermediate_size", "must be ≥ 1, got \(intermediateSize)")
        try requireConfig(initStd > 0 && initStd.isFinite, "initializer_range", "must be finite and > 0, got \(initStd)")
        if let l = latentAttention {
            try requireConfig(l.kvLoraRank >= 1, "kv_lora_rank", "must be ≥ 1, got \(l.kvLoraRank)")
            try requireConfig(l.qkRopeHeadDim >= 2 && l.qkRopeHeadDim % 2 == 0, "qk_rope_head_dim", "must be even and ≥ 2, got \(l.qkRopeHeadDim)")
            try requireConfig(l.qkNopeHeadDim >= 0, "qk_nope_head_dim", "must be ≥ 0, got \(l.qkNopeHeadDim)")
            try requireConfig(l.vHeadDim >= 1, "v_head_dim", "must be ≥ 1, got \(l.vHeadDim)")
            if let q = l.qLoraRank { try requireConfig(q >= 1, "q_lora_rank", "must be ≥ 1 or null, got \(q)") }
        }
        if let m = moe {
            try requireConfig(m.numExperts >= 1, "moe.num_experts", "must be ≥ 1, got \(m.numExperts)")
            try requireConfig(m.topK >= 1 && m.topK <= m.numExperts, "moe.top_k", "must be in 1...num_experts (\(m.numExperts)), got \(m.topK)")
            try requireConfig(m.expertIntermediateSize >= 1, "moe.expert_intermediate_size", "must be ≥ 1, got \(m.expertIntermediateSize)")
            if let cf = m.capacityFactor { try requireConfig(cf > 0 && cf.isFinite, "moe.capacity_factor", "must be > 0, got \(cf)") }
            if m.router == .switchTop1 { try requireConfig(m.topK == 1, "moe.top_k", "switch_top1 routing needs top_k = 1, got \(m.topK)") }
            try requireConfig(m.minCapacity >= 0, "moe.min_capacity", "must be ≥ 0, got \(m.minCapacity)")
            try requireConfig(m.capacityGroups >= 1, "moe.capacity_groups", "must be ≥ 1, got \(m.capacityGroups)")
            try requireConfig(m.nGroup >= 1 && m.numExperts % m.nGroup == 0, "moe.n_group", "must divide num_experts (\(m.numExperts)), got \(m.nGroup)")
            try requireConfig(m.topkGroup >= 1 && m.topkGroup <= m.nGroup, "moe.topk_group", "must be in 1...n_group (\(m.nGroup)), got \(m.topkGroup)")
            try requireConfig(m.every >= 1, "moe.moe_every", "must be ≥ 1, got \(m.every)")
            try requireConfig(m.firstDense >= 0, "moe.first_k_dense", "must be ≥ 0, got \(m.firstDense)")
            try requireConfig(m.sharedExperts >= 0, "moe.shared_experts", "must be ≥ 0, got \(m.sharedExperts)")
            if m.sharedExperts > 0 {
                try requireConfig(m.sharedExpertIntermediateSize >= 1, "moe.shared_expert_intermediate_size", "must be ≥ 1 with shared experts, got \(m.sharedExpertIntermediateSize)")
            }
            try requireConfig(m.auxLossCoefficient >= 0 && m.auxLossCoefficient.isFinite, "moe.router_aux_loss_coef", "must be finite and ≥ 0, got \(m.auxLossCoefficient)")
            try requireConfig(m.zLossCoefficient >= 0 && m.zLossCoefficient.isFinite, "moe.router_z_loss_coef", "must be finite and ≥ 0, got \(m.zLossCoefficient)")
            try requireConfig(m.jitter >= 0 && m.jitter < 1, "moe.router_jitter_noise", "must be in [0, 1), got \(m.jitter)")
            try requireConfig(m.routedScalingFactor.isFinite && m.routedScalingFactor > 0, "moe.routed_scaling_factor", "must be finite and > 0, got \(m.routedScalingFactor)")
            try requireConfig(m.routedScalingFactor == 1 || m.router == .softmaxTopK || m.router == .sigmoidBias, "moe.routed_scaling_factor",
                              "scales the gates of softmax_topk and sigmoid_bias routing only; must be 1 with \(m.router.rawValue), got \(m.routedScalingFactor)")
            try requireConfig(m.biasUpdateRate.isFinite && m.biasUpdateRate >= 0, "moe.bias_update_rate", "must be finite and ≥ 0, got \(m.biasUpdateRate)")
        }
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numLayers = "num_hidden_layers"
        case numHeads = "num_attention_heads", numKVHeads = "num_key_value_heads", headDim = "head_dim"
        case maxSequenceLength = "max_position_embeddings", positionEncoding = "position_encoding"
        case ropeTheta = "rope_theta", ropeStyle = "rope_style", norm, normEps = "rms_norm_eps"
        case attentionBias = "attention_bias", qkNorm = "qk_norm", latentAttention = "latent_attention"
        case ffnKind = "ffn_kind", intermediateSize = "intermediate_size", moe
        case tiedEmbeddings = "tie_word_embeddings", causal, initStd = "initializer_range"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numLayers = try c.decode(Int.self, forKey: .numLayers)
        numHeads = try c.decode(Int.self, forKey: .numHeads)
        numKVHeads = try c.decodeIfPresent(Int.self, forKey: .numKVHeads) ?? numHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        maxSequenceLength = try c.decode(Int.self, forKey: .maxSequenceLength)
        positionEncoding = try c.decodeIfPresent(PositionEncoding.self, forKey: .positionEncoding) ?? .rope
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 10000
        ropeStyle = try c.decodeIfPresent(RotaryStyle.self, forKey: .ropeStyle) ?? .halfSplit
        norm = try c.decodeIfPresent(NormKind.self, forKey: .norm) ?? .rms
        normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-5
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        qkNorm = try c.decodeIfPresent(QKNorm.self, forKey: .qkNorm) ?? .none
        latentAttention = try c.decodeIfPresent(LatentAttentionConfig.self, forKey: .latentAttention)
        ffnKind = try c.decodeIfPresent(FeedForwardKind.self, forKey: .ffnKind) ?? .swiglu
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        moe = try c.decodeIfPresent(MoEConfig.self, forKey: .moe)
        tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? false
        causal = try c.decodeIfPresent(Bool.self, forKey: .causal) ?? true
        initStd = try c.decodeIfPresent(Float.self, forKey: .initStd) ?? 0.02
    }
}
