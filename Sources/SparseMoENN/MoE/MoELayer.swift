import SparseMoECore

/// Shared experts that every token passes through.
public enum SharedExpertGating: String, Codable, Sendable {
    /// Added unconditionally (DeepSeek-MoE / V2 / V3).
    case none
    /// Scaled by σ(x · w_gate) per token (Qwen2-MoE `shared_expert_gate`).
    case sigmoid
}

/// Coefficients and form of the auxiliary router losses.
public struct MoELossConfig: Codable, Sendable, Equatable {
    /// Weight of the load-balancing loss E·Σ f_e·P_e (0 = off).
    public var balanceCoefficient: Float
    /// Compute the balancing loss per sequence and average (DeepSeek-V2/V3), else per batch.
    public var sequenceLevel: Bool
    /// Weight of the router z-loss mean(logsumexp(logits)²) (0 = off).
    public var zLossCoefficient: Float

    public init(balanceCoefficient: Float = 0.01, sequenceLevel: Bool = false, zLossCoefficient: Float = 0) throws {
        guard balanceCoefficient >= 0, balanceCoefficient.isFinite else {
            throw SparseMoEError.invalidConfig(field: "router_aux_loss_coef", message: "must be ≥ 0, got \(balanceCoefficient)")
        }
        guard zLossCoefficient >= 0, zLossCoefficient.isFinite else {
            throw SparseMoEError.invalidConfig(field: "router_z_loss_coef", message: "must be ≥ 0, got \(zLossCoefficient)")
        }
        self.balanceCoefficient = balanceCoefficient
        self.sequenceLevel = sequenceLevel
        self.zLossCoefficient = zLossCoefficient
    }
}

/// What one MoE layer forward returns: the output and the decision behind it. Statistics
/// and FLOP counts are computed from it afterwards: `RoutingStatistics(routing:router:)`,
/// `ExecutedFLOPs` (SparseMoEAnalysis).
public struct MoEOutput {
    /// Combined expert output, the shape of the input.
    public var output: Tensor
    /// Weighted auxiliary losses (balance + z), a differentiable scalar; nil when all are off.
    public var auxLoss: Tensor?
    /// The router's decision for the T flattened tokens (experts, gates, probabilities, drops).
    public var routing: Routing
    /// What the routed experts executed: rows per expert, assignments A, schedule.
    public var dispatch: RoutedExpertsStats
}

/// A sparse mixture-of-experts feed-forward layer.
///
/// y = Σ_{e ∈ route(x)} g_e(x) · FFN_e(x)  [+ shared(x), optionally gated by σ(x·w)].
/// x `[..., C]` is flattened to T tokens. The router decides experts and gates, the
/// `Experts` run on their tokens only, the auxiliary losses are weighted by `losses`.
public final class MoELayer: Module {
    public let router: any Router
    public let experts: Experts
    public let shared: FeedForward?
    public let sharedGate: Linear?
    public var losses: MoELossConfig
    /// Experts chosen in the last forward, int32 `[T, K]` (-1 = empty/dropped), for
    /// per-token analyses such as expert specialisation by task (a checkpointing
    /// recomputation leaves it as the forward set it).
    public private(set) var lastExperts: Tensor?
    /// Expert parallelism: this rank's expert group, whose ranks compute E/M experts each for
    /// the tokens of all of them (`setExpertParallel`); nil: every expert runs here.
    public private(set) var expertParallel: ExpertParallelGroup?

    public init(router: any Router, experts: Experts, shared: FeedForward? = nil,
                sharedGating: SharedExpertGating = .none, losses: MoELossConfig, rng: inout RandomGenerator) throws {
        guard router.numExperts == experts.numExperts else {
            throw SparseMoEError.invalidConfig(field: "num_experts", message: "router has \(router.numExperts) experts but the expert bank has \(experts.numExperts)")
        }
        if let s = shared, s.hiddenSize != experts.hiddenSize {
            throw SparseMoEError.invalidConfig(field: "hidden_size", message: "shared expert hidden_size \(s.hiddenSize) differs from the experts' hidden_size \(experts.hiddenSize)")
        }
        self.router = router
        self.experts = experts
        self.shared = shared
        self.sharedGate = shared != nil && sharedGating == .sigmoid
            ? Linear(inFeatures: experts.hiddenSize, outFeatures: 1, rng: &rng) : nil
        self.losses = losses
    }

    /// Runs the experts expert-parallel over `group` (nil: locally). The stacked expert weights
    /// stay allocated whole on every rank, but a rank computes with (and gets gradients for) only
    /// its slice [g·E/M, (g+1)·E/M); the router, shared experts and losses run on every rank for
    /// its own tokens. Throws when E is not divisible by the group's size M.
    public func setExpertParallel(_ group: ExpertParallelGroup?) throws {
        if let g = group, experts.numExperts % g.size != 0 {
            throw SparseMoEError.invalidConfig(field: "num_experts", message: "\(experts.numExperts) experts cannot be split over \(g.size) expert-parallel ranks: the number of experts must be a multiple of the expert group size \(g.size)")
        }
        expertParallel = group
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var p = prefixed("gate", router.namedParameters()) + prefixed("experts", experts.namedParameters())
        if let s = shared { p += prefixed("shared_expert", s.namedParameters()) }
        if let g = sharedGate { p += prefixed("shared_expert_gate", g.namedParameters()) }
        return p
    }

    public func callAsFunction(_ x: Tensor, context: inout RoutingContext) throws -> MoEOutput {
        let c = experts.hiddenSize
        guard x.rank >= 1, x.shape[x.rank - 1] == c else {
            throw SparseMoEError.shapeMismatch(op: "MoELayer", message: "input \(x.shape) must end in hidden_size = \(c)")
        }
        let flat = x.reshaped([-1, c])
        let t = flat.shape[0]
        let routing = try router.route(flat, context: &context)
        if !context.recomputing { lastExperts = routing.experts }
        var (y, dispatch) = if let group = expertParallel {
            try experts(flat, routing: routing, group: group)
        } else {
            try experts(flat, routing: routing)
        }
        if let s = shared {
            let sy = s(flat)
            if let g = sharedGate {
                y = gatedSharedCombine(routed: y, shared: sy, gate: g(flat))
            } else {
                y = add(y, sy)
            }
        }
        var aux: Tensor?
        if losses.balanceCoefficient > 0, let probs = routing.probs {
            let seq = context.sequenceLength ?? t
            let perSequence = losses.sequenceLevel && seq > 0 && t % seq == 0
            let groups = perSequence ? t / seq : 1
            // Whole sequences stay on one replica, so only the batch-level loss needs global counts.
            let balance = if let mean = context.replicaMean, !perSequence {
                try loadBalancingLoss(probs: probs, selected: routing.selected, averageCounts: mean)
            } else {
                loadBalancingLoss(probs: probs, selected: routing.selected, groups: groups)
            }
            aux = scale(balance, by: losses.balanceCoefficient)
        }
        if losses.zLossCoefficient > 0, let logits = routing.logits {
            let z = scale(routerZLoss(logits), by: losses.zLossCoefficient)
            aux = aux.map { add($0, z) } ?? z
        }
        return MoEOutput(output: y.reshaped(x.shape), auxLoss: aux, routing: routing, dispatch: dispatch)
    }
}
