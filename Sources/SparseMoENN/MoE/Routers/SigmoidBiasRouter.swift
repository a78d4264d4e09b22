import SparseMoECore

/// Sigmoid routing with aux-loss-free load balancing (DeepSeek-V3).
///
/// scores = σ(x·Wᵀ); selection uses scores + b (b a per-expert bias that is not
/// trained by gradients), limited to the `topkGroup` best of `nGroup` expert groups;
/// weights = the unbiased scores of the chosen experts, normalised to sum 1 (when
/// `normalize`), times `routedScalingFactor`.
///
/// Balancing: after each optimiser step call `updateBias(rate:)`:
/// b_e += u · sign(mean_load − load_e), with loads counted over the forwards since
/// the previous update. Overloaded experts become less likely to be chosen.
public final class SigmoidBiasRouter: Router {
    public let numExperts: Int
    public let topK: Int
    public let nGroup: Int
    public let topkGroup: Int
    public let normalize: Bool
    public let routedScalingFactor: Float
    /// `[E, C]`, checkpoint name `weight`.
    public let weight: Tensor
    /// `[E]`, checkpoint name `e_score_correction_bias`; not a gradient parameter.
    public let bias: Tensor
    /// Assignments per expert since the last bias update.
    public private(set) var pendingLoad: [Int]

    /// σ scores are independent per expert, not a distribution.
    public var probabilitiesAreDistribution: Bool { false }

    public init(hiddenSize: Int, numExperts: Int, topK: Int, nGroup: Int = 1, topkGroup: Int = 1, normalize: Bool = true,
                routedScalingFactor: Float = 1, rng: inout RandomGenerator) throws {
        try RouterConfigCheck.numExperts(numExperts)
        try RouterConfigCheck.topK(topK, numExperts: numExperts)
        try RouterConfigCheck.hiddenSize(hiddenSize)
        guard nGroup >= 1, numExperts % nGroup == 0 else {
            throw SparseMoEError.invalidConfig(field: "n_group", message: "must divide num_experts (\(numExperts)), got \(nGroup)")
        }
        guard topkGroup >= 1, topkGroup <= nGroup else {
            throw SparseMoEError.invalidConfig(field: "topk_group", message: "must be in 1...n_group (\(nGroup)), got \(topkGroup)")
        }
        guard topK <= topkGroup * (numExperts / nGroup) else {
            throw SparseMoEError.invalidConfig(field: "top_k", message: "must be ≤ topk_group × experts per group (\(topkGroup * (numExperts / nGroup))), got \(topK)")
        }
        guard routedScalingFactor > 0 else {
            throw SparseMoEError.invalidConfig(field: "routed_scaling_factor", message: "must be > 0, got \(routedScalingFactor)")
        }
        self.numExperts = numExperts
        self.topK = topK
        self.nGroup = nGroup
        self.topkGroup = topkGroup
        self.normalize = normalize
        self.routedScalingFactor = routedScalingFactor
        self.weight = initRouterWeight(numExperts: numExperts, hiddenSize: hiddenSize, std: nil, rng: &rng)
        self.bias = Tensor(zeros: [numExperts])
        self.pendingLoad = [Int](repeating: 0, count: numExperts)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        [("weight", weight), ("e_score_correction_bias", bias)]
    }

    public func route(_ x: Tensor, context: inout RoutingContext) throws -> Routing {
        try RouterConfigCheck.input(x, hiddenSize: weight.shape[1], router: "SigmoidBiasRouter")
        let logits = matmul(x, weight, transposeB: true, precision: .float32)
        let sel = sigmoidTopK(logits, bias: bias, topK: topK, nGroup: nGroup, topkGroup: topkGroup,
                                  normalize: normalize, scaling: routedScalingFactor)
        if context.training && !context.recomputing {
            let idx = sel.indices.int32s
            for i in 0..<sel.indices.count { pendingLoad[Int(idx[i])] += 1 }
        }
        return Routing(experts: sel.indices, gates: sel.weights, probs: sel.probs, logits: logits)
    }

    /// The aux-loss-free update: b_e += rate · sign(mean_load − load_e) over the loads
    /// counted since the last call (training forwards only); then resets the counts.
    /// Call once per optimiser step, outside the gradient.
    public func updateBias(rate: Float) {
        let total = pendingLoad.reduce(0, +)
        guard total > 0 else { return }
        let mean = Double(total) / Double(numExperts)
        let b = bias.floats
        for e in 0..<numExperts {
            let diff = mean - Double(pendingLoad[e])
            b[e] += diff > 0 ? rate : (diff < 0 ? -rate : 0)
        }
        pendingLoad = [Int](repeating: 0, count: numExperts)
    }

    /// Sums the pending loads over data-parallel replicas (exact: counts below 2²⁴).
    public func sumPendingLoad(_ sum: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws {
        var loads = pendingLoad.map(Float.init)
        try loads.withUnsafeMutableBufferPointer { try sum($0) }
        pendingLoad = loads.map { Int($0) }
    }

    /// Forgets the loads counted since the last update (a skipped optimiser step).
    public func discardPendingLoad() { pendingLoad = [Int](repeating: 0, count: numExperts) }
}
