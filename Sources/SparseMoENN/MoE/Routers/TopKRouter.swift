import SparseMoECore

/// Softmax top-k router (Mixtral, Qwen-MoE, OLMoE; Switch with k = 1 and a capacity).
///
/// logits = x · Wᵀ (W `[E, C]`, fp32); probs = softmax(logits); the k most probable
/// experts, weights = their probabilities (renormalised to sum 1 when `renormalize`),
/// times `routedScalingFactor` s (DeepSeek's name; 1 by default). A top-k of renormalised
/// gates adds the chosen experts' outputs at total weight 1, half the sum a dense FFN of the
/// same active width (k experts' units side by side) would give for k = 2; s = k restores it.
/// Optional: a capacity limit with token dropping, and Switch's multiplicative
/// jitter x ⊙ U(1−ε, 1+ε) on the router input during training.
public final class TopKRouter: Router {
    public let numExperts: Int
    public let topK: Int
    public let renormalize: Bool
    /// Factor s on every gate (> 0, finite).
    public let routedScalingFactor: Float
    public var capacity: CapacityLimit?
    /// Switch jitter ε (0 = off); applied in training only.
    public var jitter: Float
    /// `[E, C]`, checkpoint name `weight`.
    public let weight: Tensor

    public init(hiddenSize: Int, numExperts: Int, topK: Int, renormalize: Bool = true, routedScalingFactor: Float = 1,
                capacity: CapacityLimit? = nil, jitter: Float = 0, initStd: Float? = nil, rng: inout RandomGenerator) throws {
        try RouterConfigCheck.numExperts(numExperts)
        try RouterConfigCheck.topK(topK, numExperts: numExperts)
        try RouterConfigCheck.hiddenSize(hiddenSize)
        guard jitter >= 0 && jitter < 1 else {
            throw SparseMoEError.invalidConfig(field: "router_jitter_noise", message: "must be in [0, 1), got \(jitter)")
        }
        guard routedScalingFactor > 0 && routedScalingFactor.isFinite else {
            throw SparseMoEError.invalidConfig(field: "routed_scaling_factor", message: "must be finite and > 0, got \(routedScalingFactor)")
        }
        self.numExperts = numExperts
        self.topK = topK
        self.renormalize = renormalize
        self.routedScalingFactor = routedScalingFactor
        self.capacity = capacity
        self.jitter = jitter
        self.weight = initRouterWeight(numExperts: numExperts, hiddenSize: hiddenSize, std: initStd, rng: &rng)
    }

    /// Switch Transformer router: top-1 with a capacity factor and token dropping.
    public static func switchTop1(hiddenSize: Int, numExperts: Int, capacityFactor: Double = 1.25, minimumCapacity: Int = 1,
                                  policy: DropPolicy = .position, groups: Int = 1, jitter: Float = 0,
                                  rng: inout RandomGenerator) throws -> TopKRouter {
        try TopKRouter(hiddenSize: hiddenSize, numExperts: numExperts, topK: 1, renormalize: false,
                       capacity: CapacityLimit(factor: capacityFactor, minimum: minimumCapacity, policy: policy, groups: groups),
                       jitter: jitter, rng: &rng)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] { [("weight", weight)] }

    public func route(_ x: Tensor, context: inout RoutingContext) throws -> Routing {
        try RouterConfigCheck.input(x, hiddenSize: weight.shape[1], router: "TopKRouter")
        var input = x
        if context.training && jitter > 0 {
            input = try applyJitter(x, epsilon: jitter, rng: &context.rng)
        }
        let logits = matmul(input, weight, transposeB: true, precision: .float32)
        let sel = softmaxTopK(logits, topK: topK, renormalize: renormalize)
        var experts = sel.indices, dropped = 0
        if let cap = capacity {
            (experts, dropped) = cap.apply(indices: sel.indices, weights: sel.weights, numExperts: numExperts)
        }
        let gates = routedScalingFactor == 1 ? sel.weights : scale(sel.weights, by: routedScalingFactor)
        return Routing(experts: experts, gates: gates, selected: sel.indices, probs: sel.probs,
                       logits: logits, dropped: dropped)
    }
}
