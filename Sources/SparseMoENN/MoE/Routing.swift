import SparseMoECore

/// What a router decided for a batch of T tokens, in the slot layout the expert
/// kernels consume: each token has K slots, each naming an expert or -1.
public struct Routing {
    /// Experts that run, int32 `[T, K]`; -1 = empty or dropped slot.
    public var experts: Tensor
    /// Gate weights `[T, K]` (differentiable); ignored where `experts` is -1.
    public var gates: Tensor
    /// The router's selection before capacity dropping, int32 `[T, K]`; the
    /// load-balancing loss counts these.
    public var selected: Tensor
    /// Router probabilities over all experts `[T, E]` (differentiable), when the
    /// router has them: softmax for softmax routers, σ scores for sigmoid routers.
    public var probs: Tensor?
    /// Router logits `[T, E]` (differentiable, fp32), for the z-loss.
    public var logits: Tensor?
    /// Number of (token, slot) assignments removed by the capacity limit.
    public var dropped: Int

    public init(experts: Tensor, gates: Tensor, selected: Tensor? = nil, probs: Tensor? = nil,
                logits: Tensor? = nil, dropped: Int = 0) {
        self.experts = experts
        self.gates = gates
        self.selected = selected ?? experts
        self.probs = probs
        self.logits = logits
        self.dropped = dropped
    }
}

/// Per-call inputs a router may need besides the hidden states.
public struct RoutingContext {
    /// Training mode: noisy gating and jitter apply only when true.
    public var training: Bool
    /// Generator for noise and jitter (explicit, seeded).
    public var rng: RandomGenerator
    /// Token ids `[T]` (int32), for hash routing.
    public var tokenIds: Tensor?
    /// Tokens per sequence, for sequence-level statistics and losses (T when unknown).
    public var sequenceLength: Int?
    /// This forward recomputes one already run (activation checkpointing, with the
    /// generator state of that run): routers make the same decisions but count nothing
    /// twice (aux-free bias loads).
    public var recomputing: Bool = false

    /// Data-parallel training: replaces each value of a buffer by its mean over the replicas
    /// (an all-reduce the trainer supplies). When set, the batch-level load-balancing loss
    /// counts expert assignments over the global batch. Nil: this batch is the whole batch.
    public var replicaMean: ((UnsafeMutableBufferPointer<Float>) throws -> Void)?

    public init(training: Bool = false, rng: RandomGenerator = RandomGenerator(seed: 0), tokenIds: Tensor? = nil,
                sequenceLength: Int? = nil) {
        self.training = training
        self.rng = rng
        self.tokenIds = tokenIds
        self.sequenceLength = sequenceLength
    }
}

/// A router scores T tokens `[T, C]` against E experts and assigns each token to
/// experts with gate weights.
///
/// Write your own by conforming a class: compute logits with library ops
/// (`matmul`), pick experts with `topK` / `softmaxTopK` / `sigmoidTopK`, and return
/// a `Routing`. Gradients flow through whatever ops you used into your parameters.
///
/// Capabilities beyond `route` are requirements with default implementations, so callers
/// never ask for a concrete router type: override the ones your router has.
public protocol Router: Module {
    /// Number of experts E.
    var numExperts: Int { get }
    /// Slots per token K in the returned `Routing` (E for expert-choice routing).
    var topK: Int { get }
    func route(_ x: Tensor, context: inout RoutingContext) throws -> Routing
    /// Whether `Routing.probs` rows are distributions over the experts (softmax), so that
    /// their entropy means something; false for independent σ scores. Default true.
    var probabilitiesAreDistribution: Bool { get }
    /// Aux-loss-free balancing, once per optimiser step outside the gradient: adjust the
    /// selection bias from the loads counted since the last call, then forget them.
    /// Default: nothing (the router has no such bias).
    func updateBias(rate: Float)
    /// Forgets the loads counted since the last `updateBias` (a skipped optimiser step).
    /// Default: nothing.
    func discardPendingLoad()
    /// Data-parallel training, before `updateBias`: `sum` replaces a buffer by its sum over the
    /// replicas; the router makes its pending loads those of the global batch. Default: nothing.
    func sumPendingLoad(_ sum: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws
}

extension Router {
    public var probabilitiesAreDistribution: Bool { true }
    public func updateBias(rate: Float) {}
    public func discardPendingLoad() {}
    public func sumPendingLoad(_ sum: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws {}
}

/// Expert capacity for token-choice routers:
/// capacity = max(minimum, ceil(factor · T · K / E)) assignments per expert.
///
/// `groups` (GShard's groups): the T tokens of one call are split into `groups` contiguous
/// groups of T/groups tokens and the limit applies to each group on its own, with the capacity
/// of T/groups tokens. A data- or expert-parallel rank routes only its own T/N tokens, so N
/// ranks with `groups = 1` drop exactly like one process with `groups = N` on the same global
/// batch. Default 1: one group, the whole call. A T that `groups` does not divide is one group.
public struct CapacityLimit: Codable, Sendable, Equatable {
    public var factor: Double
    public var minimum: Int
    public var policy: DropPolicy
    /// Contiguous token groups the limit applies to separately (≥ 1).
    public var groups: Int

    public init(factor: Double, minimum: Int = 1, policy: DropPolicy = .probability, groups: Int = 1) throws {
        guard factor > 0, factor.isFinite else {
            throw SparseMoEError.invalidConfig(field: "capacity_factor", message: "must be > 0, got \(factor)")
        }
        guard minimum >= 0 else {
            throw SparseMoEError.invalidConfig(field: "min_capacity", message: "must be ≥ 0, got \(minimum)")
        }
        guard groups >= 1 else {
            throw SparseMoEError.invalidConfig(field: "capacity_groups", message: "must be ≥ 1, got \(groups)")
        }
        self.factor = factor
        self.minimum = minimum
        self.policy = policy
        self.groups = groups
    }

    enum CodingKeys: String, CodingKey { case factor, minimum, policy, groups }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(factor: c.decode(Double.self, forKey: .factor), minimum: c.decode(Int.self, forKey: .minimum),
                      policy: c.decode(DropPolicy.self, forKey: .policy),
                      groups: c.decodeIfPresent(Int.self, forKey: .groups) ?? 1)
    }

    /// Assignments each expert may take for `tokens` tokens with `topK` slots and `numExperts` experts.
    public func capacity(tokens: Int, topK: Int, numExperts: Int) -> Int {
        max(minimum, Int((factor * Double(tokens * topK) / Double(numExperts)).rounded(.up)))
    }

    /// Applies the limit to a selection (int32 `[T, K]` and its weights `[T, K]`), group by group:
    /// the kept selection (dropped slots -1) and the number dropped.
    public func apply(indices: Tensor, weights: Tensor, numExperts: Int) -> (indices: Tensor, dropped: Int) {
        let (t, k) = (indices.shape[0], indices.shape[1])
        let g = groups > 1 && t % groups == 0 ? groups : 1
        if g == 1 {
            return applyCapacity(indices: indices, weights: weights, numExperts: numExperts,
                                 capacity: capacity(tokens: t, topK: k, numExperts: numExperts), policy: policy)
        }
        let rows = t / g
        let cap = capacity(tokens: rows, topK: k, numExperts: numExperts)
        let kept = Tensor(zeros: [t, k], dtype: .int32)
        var dropped = 0
        withNoGrad {
            for i in 0..<g {
                let range = (i * rows)..<((i + 1) * rows)
                let part = applyCapacity(indices: indices.slice(rows: range), weights: weights.slice(rows: range),
                                         numExperts: numExperts, capacity: cap, policy: policy)
                kept.int32s.advanced(by: i * rows * k).update(from: part.indices.int32s, count: rows * k)
                dropped += part.dropped
            }
        }
        return (kept, dropped)
    }
}
