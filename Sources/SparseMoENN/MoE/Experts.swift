import SparseMoECore

/// E routed experts of one kind, weights stacked so that expert e is a contiguous slice.
///
/// SwiGLU: `gate_proj` `[E, F, C]`, `up_proj` `[E, F, C]`, `down_proj` `[E, C, F]`.
/// MLP kinds: `fc1.weight` `[E, F, C]`, `fc1.bias` `[E, F]`, `fc2.weight` `[E, C, F]`, `fc2.bias` `[E, C]`.
/// The computation is one `routedExperts` call: tokens sorted by expert, one GEMM per
/// expert and matrix, weighted combine.
public final class Experts: Module {
    public let kind: FeedForwardKind
    public let numExperts: Int
    public let hiddenSize: Int
    public let intermediateSize: Int
    public let w1: Tensor
    public let w3: Tensor?
    public let w2: Tensor
    public let b1: Tensor?
    public let b2: Tensor?
    /// Schedule of the expert GEMMs (benchmarks override it).
    public var schedule: ExpertSchedule = .auto

    public init(kind: FeedForwardKind, numExperts: Int, hiddenSize: Int, intermediateSize: Int, rng: inout RandomGenerator) throws {
        guard numExperts >= 1 else { throw SparseMoEError.invalidConfig(field: "num_experts", message: "must be ≥ 1, got \(numExperts)") }
        guard hiddenSize >= 1 else { throw SparseMoEError.invalidConfig(field: "hidden_size", message: "must be ≥ 1, got \(hiddenSize)") }
        guard intermediateSize >= 1 else { throw SparseMoEError.invalidConfig(field: "moe_intermediate_size", message: "must be ≥ 1, got \(intermediateSize)") }
        try MemoryBudget.check(MemoryBudget.product(numExperts, kind == .swiglu ? 3 : 2, hiddenSize, intermediateSize, 4),
                               for: "\(numExperts) experts of \(hiddenSize)×\(intermediateSize) (float32)", field: "num_experts")
        self.kind = kind
        self.numExperts = numExperts
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        let s1 = 1 / Float(hiddenSize).squareRoot(), s2 = 1 / Float(intermediateSize).squareRoot()
        w1 = Tensor.truncatedNormal([numExperts, intermediateSize, hiddenSize], std: s1, using: &rng, requiresGrad: true)
        w3 = kind == .swiglu ? Tensor.truncatedNormal([numExperts, intermediateSize, hiddenSize], std: s1, using: &rng, requiresGrad: true) : nil
        w2 = Tensor.truncatedNormal([numExperts, hiddenSize, intermediateSize], std: s2, using: &rng, requiresGrad: true)
        b1 = kind == .swiglu ? nil : Tensor(zeros: [numExperts, intermediateSize], requiresGrad: true)
        b2 = kind == .swiglu ? nil : Tensor(zeros: [numExperts, hiddenSize], requiresGrad: true)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        if kind == .swiglu { return [("gate_proj", w1), ("up_proj", w3!), ("down_proj", w2)] }
        return [("fc1.weight", w1), ("fc1.bias", b1!), ("fc2.weight", w2), ("fc2.bias", b2!)]
    }

    /// Parameters of one expert.
    public var parametersPerExpert: Int { hiddenSize * intermediateSize * (kind == .swiglu ? 3 : 2) + (kind == .swiglu ? 0 : intermediateSize + hiddenSize) }

    /// y[t] = Σ_s gates[t,s] · FFN_{experts[t,s]}(x[t]); x `[T, C]`.
    public func callAsFunction(_ x: Tensor, routing: Routing) throws -> (output: Tensor, stats: RoutedExpertsStats) {
        try routedExperts(x, experts: routing.experts, gates: routing.gates, w1: w1, w3: w3, w2: w2, b1: b1, b2: b2,
                          activation: kind.expertActivation, schedule: schedule)
    }
}
