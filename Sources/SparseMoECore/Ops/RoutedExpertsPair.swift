internal import CMoEKernels

/// One validated `routedExperts` call: inputs, weights and the dispatch plan.
/// Shapes: x `[T, C]`, expertIndices int32 and gates `[T, K]`, w1 `[E, F, C]`, w3 `[E, F, C]` (SwiGLU), w2 `[E, C, F]`,
/// b1 `[E, F]`, b2 `[E, C]`.
struct RoutedExpertsCall {
    let x, expertIndices, gates, w1: Tensor
    let w3: Tensor?
    let w2: Tensor
    let b1, b2: Tensor?
    let plan: DispatchPlan
    let activation: ExpertActivation
    let schedule: ExpertSchedule

    var tokens: Int { x.shape[0] }
    var hiddenSize: Int { x.shape[1] }
    var intermediateSize: Int { w1.shape[1] }
    var numExperts: Int { w1.shape[0] }
    var topK: Int { plan.topK }
    /// The C kernels run when something is routed and the widths are not empty; otherwise
    /// the Swift path below computes the only terms left, the b2 contributions.
    var runsKernels: Bool { plan.assignments > 0 && hiddenSize > 0 && intermediateSize > 0 }
}

/// What `routedExpertsForward` saves for `routedExpertsBackward` (the C forward's saved
/// activations) in one `Workspace`: xs `[A, C]`, h1 `[A, F]`, h3 `[A, F]` (SwiGLU),
/// act `[A, F]`, eo `[A, C]`, then the forward's expert→thread tables.
final class RoutedExpertsSaved: @unchecked Sendable {
    let workspace: Workspace
    let xs, h1, act, eo, tables: UnsafeMutablePointer<Float>
    let h3: UnsafeMutablePointer<Float>?

    init(_ call: RoutedExpertsCall) {
        let (a, c, f) = (call.plan.assignments, call.hiddenSize, call.intermediateSize)
        let swiglu = call.activation == .swiglu
        var layout = WorkspaceLayout()
        let xsAt = layout.take(a * c), h1At = layout.take(a * f), h3At = layout.take(swiglu ? a * f : 0)
        let actAt = layout.take(a * f), eoAt = layout.take(a * c)
        let tablesAt = layout.take(Int(moe_routed_experts_workspace_size(
            Int64(a), Int64(c), Int64(f), Int64(call.numExperts), call.activation.kernelValue, 0)))
        workspace = Workspace(floats: layout.count)
        let base = workspace.floats
        xs = base + xsAt; h1 = base + h1At; act = base + actAt; eo = base + eoAt; tables = base + tablesAt
        h3 = swiglu ? base + h3At : nil
    }
}

/// Forward of the pair (C `moe_routed_experts_forward`):
/// y[t] = Σ_{s: experts[t,s] ≥ 0} gates[t,s] · FFN_{experts[t,s]}(x[t]), y `[T, C]`.
/// Returns y (no graph), the saved activations (nil on the Swift path) and the schedule run.
func routedExpertsForward(_ call: RoutedExpertsCall) -> (y: Tensor, saved: RoutedExpertsSaved?, schedule: ExpertSchedule) {
    let (t, c, f, e, k) = (call.tokens, call.hiddenSize, call.intermediateSize, call.numExperts, call.topK)
    let y = Tensor(zeros: [t, c])
    let plan = call.plan
    guard call.runsKernels else {
        // Nothing routed, or empty widths: y[t] = Σ_s gates[t,s] · b2[experts[t,s]].
        guard plan.assignments > 0, let b2 = call.b2 else { return (y, nil, .sequential) }
        forEachAssignment(call) { ti, s, ex in
            let g = call.gates.floats[ti * k + s]
            for ci in 0..<c { y.floats[ti * c + ci] += g * b2.floats[ex * c + ci] }
        }
        return (y, nil, .sequential)
    }
    let saved = RoutedExpertsSaved(call)
    let ran = plan.offsets.withUnsafeBufferPointer { off in
        plan.sorted.withUnsafeBufferPointer { srt in
            plan.position.withUnsafeBufferPointer { pos in
                moe_routed_experts_forward(
                    y.floats, saved.xs, saved.h1, saved.h3, saved.act, saved.eo, saved.tables,
                    call.x.floats, call.gates.floats, off.baseAddress, srt.baseAddress, pos.baseAddress,
                    call.w1.floats, call.w3?.floats, call.w2.floats, call.b1?.floats, call.b2?.floats,
                    Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), call.activation.kernelValue,
                    call.schedule.kernelValue)
            }
        }
    }
    return (y, saved, ExpertSchedule(kernelValue: ran))
}

/// Backward of the pair (C `moe_routed_experts_backward`): accumulates into the gradient of
/// every input that requires one — dx `[T, C]`, dgates `[T, K]` (dropped slots get nothing),
/// dw1, dw3 `[E, F, C]`, dw2 `[E, C, F]`, db1 `[E, F]`, db2 `[E, C]` — from dy `[T, C]` and
/// the forward's `saved` (nil on the Swift path: only dgates = <dy, b2[e]> and db2 += gate·dy).
func routedExpertsBackward(_ call: RoutedExpertsCall, dy: Tensor, saved: RoutedExpertsSaved?) {
    let (t, c, f, e, k) = (call.tokens, call.hiddenSize, call.intermediateSize, call.numExperts, call.topK)
    let plan = call.plan
    guard let saved else {
        guard plan.assignments > 0, let b2 = call.b2 else { return }
        let gates = call.gates
        let dGates = gates.requiresGrad ? gates.gradBuffer().floats : nil
        let dB2 = b2.requiresGrad ? b2.gradBuffer().floats : nil
        forEachAssignment(call) { ti, s, ex in
            let gate = gates.floats[ti * k + s]
            var dot: Float = 0
            for ci in 0..<c { dot += dy.floats[ti * c + ci] * b2.floats[ex * c + ci] }
            dGates?[ti * k + s] += dot
            if let dB2 {
                for ci in 0..<c { dB2[ex * c + ci] += gate * dy.floats[ti * c + ci] }
            }
        }
        return
    }
    let kind = call.activation.kernelValue
    let workspace = Workspace(floats: Int(moe_routed_experts_workspace_size(
        Int64(plan.assignments), Int64(c), Int64(f), Int64(e), kind, 1)))
    // Weight gradients that do not exist yet are written by the kernel rather than zeroed here
    // and added to (one pass over [E, F, C] per weight saved), when all of them are fresh.
    let weights = [call.w1, call.w3, call.w2].compactMap { $0 }.filter(\.requiresGrad)
    let weightsFresh = !weights.isEmpty && weights.allSatisfy { $0.grad == nil }
    if weightsFresh { for w in weights { w.grad = Tensor(uninitialized: w.shape) } }
    // So is dx, the first gradient of x (the scatter writes its rows).
    let dx = call.x.requiresGrad ? call.x.gradForWriting() : nil
    func grad(_ w: Tensor?) -> UnsafeMutablePointer<Float>? {
        guard let w, w.requiresGrad else { return nil }
        return w.gradBuffer().floats
    }
    let fresh = (weightsFresh ? Int32(MOE_FRESH_WEIGHTS) : 0) | (dx?.fresh == true ? Int32(MOE_FRESH_DX) : 0)
    withExtendedLifetime((saved, workspace)) {
        plan.offsets.withUnsafeBufferPointer { off in
            plan.sorted.withUnsafeBufferPointer { srt in
                plan.position.withUnsafeBufferPointer { pos in
                    moe_routed_experts_backward(
                        dx?.floats, grad(call.gates), grad(call.w1), grad(call.w3), grad(call.w2),
                        grad(call.b1), grad(call.b2), workspace.floats,
                        dy.floats, saved.xs, saved.h1, saved.h3, saved.act, saved.eo, call.gates.floats,
                        off.baseAddress, srt.baseAddress, pos.baseAddress,
                        call.w1.floats, call.w3?.floats, call.w2.floats,
                        Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), kind, call.schedule.kernelValue, fresh)
                }
            }
        }
    }
}

/// Calls `body(token, slot, expert)` for every routed (token, slot) pair, in token then slot order.
private func forEachAssignment(_ call: RoutedExpertsCall, _ body: (Int, Int, Int) -> Void) {
    let k = call.topK
    for (pair, row) in call.plan.position.enumerated() where row >= 0 {
        body(pair / k, pair % k, Int(call.expertIndices.int32s[pair]))
    }
}

/// Offsets of the sub-buffers inside one workspace, each 64-byte aligned.
private struct WorkspaceLayout {
    private(set) var count = 0
    mutating func take(_ n: Int) -> Int {
        let at = count
        count += (n + 15) / 16 * 16
        return at
    }
}
