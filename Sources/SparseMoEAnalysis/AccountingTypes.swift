import SparseMoECore
import SparseMoENN

/// Parameter counts by component. Components follow the modules of the model:
/// `attention` is everything inside the attention block (projections, biases, q/k
/// norms, MLA's latent norms); `norms` are the per-layer block norms and the final norm.
public struct ParameterCounts: Sendable, Equatable, Codable {
    public var embedding = 0
    public var attention = 0
    public var router = 0
    public var routedExperts = 0
    /// Shared experts, including Qwen2-MoE's shared-expert gate.
    public var sharedExperts = 0
    /// Dense MLPs of dense layers.
    public var denseFeedForward = 0
    public var norms = 0
    /// Output head (0 when tied to the embedding).
    public var head = 0

    public init() {}

    public var total: Int { embedding + attention + router + routedExperts + sharedExperts + denseFeedForward + norms + head }

    public static func + (a: ParameterCounts, b: ParameterCounts) -> ParameterCounts {
        var r = ParameterCounts()
        r.embedding = a.embedding + b.embedding
        r.attention = a.attention + b.attention
        r.router = a.router + b.router
        r.routedExperts = a.routedExperts + b.routedExperts
        r.sharedExperts = a.sharedExperts + b.sharedExperts
        r.denseFeedForward = a.denseFeedForward + b.denseFeedForward
        r.norms = a.norms + b.norms
        r.head = a.head + b.head
        return r
    }

    enum CodingKeys: String, CodingKey {
        case embedding, attention, router, routedExperts, sharedExperts, denseFeedForward, norms, head, total
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        embedding = try c.decode(Int.self, forKey: .embedding)
        attention = try c.decode(Int.self, forKey: .attention)
        router = try c.decode(Int.self, forKey: .router)
        routedExperts = try c.decode(Int.self, forKey: .routedExperts)
        sharedExperts = try c.decode(Int.self, forKey: .sharedExperts)
        denseFeedForward = try c.decode(Int.self, forKey: .denseFeedForward)
        norms = try c.decode(Int.self, forKey: .norms)
        head = try c.decode(Int.self, forKey: .head)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(embedding, forKey: .embedding)
        try c.encode(attention, forKey: .attention)
        try c.encode(router, forKey: .router)
        try c.encode(routedExperts, forKey: .routedExperts)
        try c.encode(sharedExperts, forKey: .sharedExperts)
        try c.encode(denseFeedForward, forKey: .denseFeedForward)
        try c.encode(norms, forKey: .norms)
        try c.encode(head, forKey: .head)
        try c.encode(total, forKey: .total)
    }
}

/// Forward FLOPs per token by component. Every matrix product counts 2·m·n·k.
///
/// Attention scores and values (q·kᵀ and p·v) depend on the sequence length T and are
/// given twice, averaged over the T positions of a sequence: `attentionScoresFull`
/// (every position against all T keys) and `attentionScoresCausal` (position i
/// against its i+1 keys, on average (T+1)/2; with a sliding window W, min(i+1, W)).
/// Element-wise work — norms, activations,
/// gating products, softmax, RoPE, biases, residual adds, the expert combine — is
/// `nonMatmul` (causal), counted with `NonMatmulCosts`.
public struct FLOPCounts: Sendable, Equatable, Codable {
    public var attentionProjections = 0.0
    public var attentionScoresFull = 0.0
    public var attentionScoresCausal = 0.0
    public var router = 0.0
    public var routedExperts = 0.0
    public var sharedExperts = 0.0
    public var denseFeedForward = 0.0
    public var head = 0.0
    public var nonMatmul = 0.0

    public init() {}

    /// Matrix products that do not depend on T.
    public var weightMatmuls: Double { attentionProjections + router + routedExperts + sharedExperts + denseFeedForward + head }
    /// All matrix products, causal attention.
    public var forward: Double { weightMatmuls + attentionScoresCausal }
    /// All matrix products, full (unmasked) attention.
    public var forwardFullAttention: Double { weightMatmuls + attentionScoresFull }

    public static func + (a: FLOPCounts, b: FLOPCounts) -> FLOPCounts {
        var r = FLOPCounts()
        r.attentionProjections = a.attentionProjections + b.attentionProjections
        r.attentionScoresFull = a.attentionScoresFull + b.attentionScoresFull
        r.attentionScoresCausal = a.attentionScoresCausal + b.attentionScoresCausal
        r.router = a.router + b.router
        r.routedExperts = a.routedExperts + b.routedExperts
        r.sharedExperts = a.sharedExperts + b.sharedExperts
        r.denseFeedForward = a.denseFeedForward + b.denseFeedForward
        r.head = a.head + b.head
        r.nonMatmul = a.nonMatmul + b.nonMatmul
        return r
    }
}

/// FLOPs charged per element for element-wise work. Conventions, not measurements;
/// change them to match a kernel's actual instruction counts.
public struct NonMatmulCosts: Sendable, Equatable, Codable {
    /// RMSNorm per element: square, accumulate, scale, weight (LayerNorm adds centring and bias: +3).
    public var rmsNorm = 4.0
    public var layerNormExtra = 3.0
    /// SiLU x·σ(x): exp, add, divide, multiply.
    public var silu = 4.0
    /// GELU (tanh form).
    public var gelu = 8.0
    public var relu = 1.0
    /// Softmax per element: subtract max, exp, accumulate, divide, plus the 1/√d scale.
    public var softmax = 5.0
    /// Sigmoid per element: exp, add, divide.
    public var sigmoid = 3.0
    /// RoPE per rotated element: two multiplies and an add.
    public var rope = 3.0

    public init() {}

    func norm(_ kind: NormKind) -> Double { kind == .rms ? rmsNorm : rmsNorm + layerNormExtra }

    func activation(_ a: Activation) -> Double {
        switch a {
        case .silu: return silu
        case .gelu: return gelu
        case .relu: return relu
        }
    }
}

/// One decoder layer's accounting.
public struct LayerAccounting: Sendable, Equatable, Codable {
    public var index: Int
    /// "dense" or "moe".
    public var feedForward: String
    public var params: ParameterCounts
    /// Parameters a token uses: all but the routed experts, plus K routed experts.
    public var activeParamsBreakdown: ParameterCounts
    public var flops: FLOPCounts

    public var totalParams: Int { params.total }
    public var activeParams: Int { activeParamsBreakdown.total }

    enum CodingKeys: String, CodingKey { case index, feedForward, params, activeParamsBreakdown, flops, totalParams, activeParams }

    public init(index: Int, feedForward: String, params: ParameterCounts, activeParamsBreakdown: ParameterCounts, flops: FLOPCounts) {
        self.index = index
        self.feedForward = feedForward
        self.params = params
        self.activeParamsBreakdown = activeParamsBreakdown
        self.flops = flops
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        feedForward = try c.decode(String.self, forKey: .feedForward)
        params = try c.decode(ParameterCounts.self, forKey: .params)
        activeParamsBreakdown = try c.decode(ParameterCounts.self, forKey: .activeParamsBreakdown)
        flops = try c.decode(FLOPCounts.self, forKey: .flops)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(feedForward, forKey: .feedForward)
        try c.encode(totalParams, forKey: .totalParams)
        try c.encode(activeParams, forKey: .activeParams)
        try c.encode(params, forKey: .params)
        try c.encode(activeParamsBreakdown, forKey: .activeParamsBreakdown)
        try c.encode(flops, forKey: .flops)
    }
}

/// A dense model compared against a sparse one: the same architecture with every
/// mixture-of-experts block replaced by one dense MLP (same gating, bias and
/// activation as the experts) of intermediate size `intermediateSize`, chosen so the dense model's
/// parameter count comes as close as an integer width allows to a target (the sparse
/// model's active or total parameters).
public struct DenseEquivalent: Sendable, Equatable, Codable {
    /// The parameter count aimed at.
    public var targetParams: Int
    /// Intermediate size F of the MLP that replaces each MoE block.
    public var intermediateSize: Int
    public var totalParams: Int
    public var forwardFlopsPerToken: Double
    public var trainingFlopsPerToken: Double
    /// Sparse forward FLOPs / dense forward FLOPs.
    public var sparseToDenseFlopRatio: Double
    /// Sparse total parameters / dense total parameters.
    public var sparseToDenseParamRatio: Double
}
