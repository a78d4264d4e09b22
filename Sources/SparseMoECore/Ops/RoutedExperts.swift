internal import CMoEKernels

/// The feed-forward form of every expert in `routedExperts`.
public enum ExpertActivation: Sendable, Equatable, CaseIterable {
    /// `w2 · (silu(w1·x) ⊙ (w3·x))` (Mixtral, Qwen-MoE, DeepSeek-MoE).
    case swiglu
    /// `w2 · gelu(w1·x + b1) + b2`, exact GELU `0.5·h·(1 + erf(h/√2))`.
    case gelu
    /// `w2 · gelu(w1·x + b1) + b2`, tanh approximation of GELU (GPT-2, Switch).
    case geluTanh
    /// `w2 · relu(w1·x + b1) + b2`.
    case relu

    package var kernelValue: Int32 {
        switch self {
        case .swiglu: return Int32(MOE_EXPERT_SWIGLU.rawValue)
        case .gelu: return Int32(MOE_EXPERT_GELU.rawValue)
        case .geluTanh: return Int32(MOE_EXPERT_GELU_TANH.rawValue)
        case .relu: return Int32(MOE_EXPERT_RELU.rawValue)
        }
    }
}

/// How the per-expert GEMMs share the threads (`Threads.count`).
public enum ExpertSchedule: Sendable, Equatable, CaseIterable {
    /// `.parallel` when the longest-first assignment of experts to threads is balanced
    /// within 25 % (experts weighted by rows + 32), else `.sequential`; `.sequential` on one thread.
    case auto
    /// Experts one after another, each GEMM on all BLAS threads.
    case sequential
    /// Experts in parallel (OpenMP), single-threaded BLAS inside; the largest remaining
    /// expert goes to the next free thread (results do not depend on which thread).
    case parallel

    package var kernelValue: Int32 {
        switch self {
        case .auto: return Int32(MOE_SCHEDULE_AUTO.rawValue)
        case .sequential: return Int32(MOE_SCHEDULE_SEQUENTIAL.rawValue)
        case .parallel: return Int32(MOE_SCHEDULE_PARALLEL.rawValue)
        }
    }

    init(kernelValue: Int32) {
        self = kernelValue == Int32(MOE_SCHEDULE_PARALLEL.rawValue) ? .parallel : .sequential
    }
}

/// What one `routedExperts` call executed (FLOPs: `ExecutedFLOPs` in SparseMoEAnalysis).
public struct RoutedExpertsStats: Sendable, Equatable {
    /// Rows routed to each expert `[E]`.
    public var tokensPerExpert: [Int]
    /// A: (token, slot) pairs with an expert (dropped slots excluded).
    public var assignments: Int
    /// The schedule that ran (`.sequential` or `.parallel`, never `.auto`).
    public var schedule: ExpertSchedule

    package init(tokensPerExpert: [Int], assignments: Int, schedule: ExpertSchedule) {
        self.tokensPerExpert = tokensPerExpert
        self.assignments = assignments
        self.schedule = schedule
    }
}

/// Sparse MoE expert computation (C kernels `moe_dispatch_plan`, `moe_routed_experts_*`):
///
///     y[t] = Σ_{s : experts[t,s] ≥ 0} gates[t,s] · FFN_{experts[t,s]}(x[t])
///
/// - x `[T, C]`, experts int32 `[T, K]` (values in `0..<E`, -1 = dropped slot), gates `[T, K]`.
/// - Weights stacked per expert, PyTorch Linear layout (`[out, in]`), HF Mixtral names:
///   w1 (gate) `[E, F, C]`, w3 (up) `[E, F, C]` (SwiGLU only), w2 (down) `[E, C, F]`,
///   b1 `[E, F]` (not with SwiGLU), b2 `[E, C]`.
/// - Output `[T, C]`; tokens whose slots are all dropped get 0.
/// - Weights stored in bf16, f16, int8 or int4 (any mix) run `routedExpertsInference`:
///   dequantized on the fly, nothing saved, no gradients (asking for them throws).
///
/// Validates, builds the `DispatchPlan`, runs `routedExpertsForward` and records
/// `routedExpertsBackward` (the pair in RoutedExpertsPair.swift). Tokens are counting-sorted by
/// expert, gathered into one contiguous matrix, and each expert runs one GEMM per weight matrix
/// on its block of rows (no per-token BLAS calls); the weighted combine sums each token's slots
/// in slot order, so results are deterministic for a fixed thread count. Differentiable in x,
/// gates, w1, w3, w2, b1, b2. Memory saved for backward: A·(2C + 2F) floats (+ A·F for SwiGLU),
/// plus A·(C + F) (+ A·F) while backward runs, both `Workspace`s from `StoragePool`.
public func routedExperts(
    _ x: Tensor, experts: Tensor, gates: Tensor,
    w1: Tensor, w3: Tensor?, w2: Tensor, b1: Tensor? = nil, b2: Tensor? = nil,
    activation: ExpertActivation, schedule: ExpertSchedule = .auto
) throws -> (output: Tensor, stats: RoutedExpertsStats) {
    let op = "routedExperts"
    try Check.float32(x, op, "x"); try Check.rank(x, 2, op, "x")
    try Check.int32(experts, op, "experts"); try Check.rank(experts, 2, op, "experts")
    try Check.float32(gates, op, "gates")
    let (t, c) = (x.shape[0], x.shape[1])
    guard experts.shape[0] == t else {
        throw SparseMoEError.shapeMismatch(op: op, message: "experts \(experts.shape) must be [T, K] with T = \(t) rows of x \(x.shape)")
    }
    try Check.sameShape(experts, gates, op, ("experts", "gates"))
    let stored = [w1, w3, w2].compactMap { $0 }.contains { $0.dtype != .float32 }
    func weight(_ w: Tensor, _ name: String) throws {
        if stored {
            try Check.argument(w.dtype.isWeightFormat, op, "\(name) must hold weights (float32, bf16, f16, int8, int4), got \(w.dtype)")
        } else {
            try Check.float32(w, op, name)
        }
    }
    try weight(w1, "w1"); try Check.rank(w1, 3, op, "w1")
    let (e, f) = (w1.shape[0], w1.shape[1])
    guard w1.shape[2] == c else {
        throw SparseMoEError.shapeMismatch(op: op, message: "w1 \(w1.shape) must be [E, F, C] with C = \(c) from x \(x.shape)")
    }
    try Check.argument(e >= 1, op, "w1 \(w1.shape) must hold at least one expert (E ≥ 1)")
    func expect(_ w: Tensor, _ name: String, _ shape: [Int], _ letters: String) throws {
        if name.hasPrefix("b") { try Check.float32(w, op, name) } else { try weight(w, name) }
        guard w.shape == shape else {
            throw SparseMoEError.shapeMismatch(op: op, message: "\(name) \(w.shape) must be \(letters) = \(shape) (E = \(e), F = \(f), C = \(c) from w1 \(w1.shape) and x \(x.shape))")
        }
    }
    if activation == .swiglu {
        guard let w3 else {
            throw SparseMoEError.invalidArgument(op: op, message: "activation .swiglu needs w3 (up projection) [E, F, C] = \([e, f, c])")
        }
        try expect(w3, "w3", [e, f, c], "[E, F, C]")
        try Check.argument(b1 == nil, op, "b1 is not supported with .swiglu (its gate and up projections have no bias)")
    } else {
        try Check.argument(w3 == nil, op, "w3 is only used by .swiglu; activation \(activation) takes w1, w2 (and biases)")
    }
    try expect(w2, "w2", [e, c, f], "[E, C, F]")
    if let b1 { try expect(b1, "b1", [e, f], "[E, F]") }
    if let b2 { try expect(b2, "b2", [e, c], "[E, C]") }

    let plan = try DispatchPlan(expertIndices: experts, numExperts: e, op: op)
    // float32 experts in inference (`GradMode.inferenceKernels`) with only a few rows each
    // (decoding) take the inference kernel too: its GEMV reads each expert's weights once for all its rows.
    let fewRows = GradMode.inferenceKernels
        && plan.tokensPerExpert.allSatisfy { $0 <= Int(moe_weight_decode_max_m(DType.float32.kernelFormat)) }
    if stored || fewRows {
        try Check.argument(!Tensor.needsGrad([x, gates]), op,
                           "expert weights stored as \([w1, w3, w2].compactMap { $0?.dtype.rawValue }.joined(separator: "/")) are for inference: run under withNoGrad, or convert them to float32 to train")
        let y = routedExpertsInference(x, gates: gates, plan: plan, w1: w1, w3: w3, w2: w2, b1: b1, b2: b2, activation: activation)
        return (y, RoutedExpertsStats(tokensPerExpert: plan.tokensPerExpert, assignments: plan.assignments, schedule: .parallel))
    }
    let call = RoutedExpertsCall(x: x, expertIndices: experts, gates: gates, w1: w1, w3: w3, w2: w2, b1: b1, b2: b2,
                                 plan: plan,
                                 activation: activation, schedule: schedule)
    let (y, saved, ran) = routedExpertsForward(call)
    let output = y.recording(op, inputs: [x, gates, w1, w2] + [w3, b1, b2].compactMap { $0 }) { dy in
        // `saved` lives as long as this closure (the recorded graph), then returns to the pool.
        routedExpertsBackward(call, dy: dy, saved: saved)
    }
    let stats = RoutedExpertsStats(tokensPerExpert: call.plan.tokensPerExpert, assignments: call.plan.assignments,
                                   schedule: ran)
    return (output, stats)
}
