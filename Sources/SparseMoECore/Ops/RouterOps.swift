internal import CMoEKernels

/// The selection made by a token-choice router op.
public struct ExpertSelection {
    /// Selected experts, int32 `[T, K]`, in descending score order (ties: lower index).
    public var indices: Tensor
    /// Gate weights of the selected experts, `[T, K]`, differentiable.
    public var weights: Tensor
    /// Router probabilities (softmax) or scores (sigmoid) over all experts, `[T, E]`,
    /// differentiable; the balancing losses use them.
    public var probs: Tensor
}

/// Softmax top-k gating (Mixtral, Qwen-MoE, OLMoE, Switch), in fp32.
///
/// probs = softmax(logits) over E; indices = top-k of probs (descending, ties to the
/// lower index, as torch.topk); weights = probs[indices], divided by their sum when
/// `renormalize`. logits `[T, E]`; `1 ≤ k ≤ E`.
public func softmaxTopK(_ logits: Tensor, topK k: Int, renormalize: Bool) -> ExpertSelection {
    let op = "softmaxTopK"
    Check.trapping { try Check.softmaxTopK(logits, topK: k) }
    let (t, e) = (logits.shape[0], logits.shape[1])
    let probs = Tensor(zeros: [t, e]), indices = Tensor(zeros: [t, k], dtype: .int32), weights = Tensor(zeros: [t, k])
    moe_router_softmax_topk_forward(probs.floats, indices.int32s, weights.floats, logits.floats,
                                    Int64(t), Int64(e), Int64(k), renormalize ? 1 : 0)
    let zeroWeights = Tensor(zeros: [t, k])
    weights.recording(op, inputs: [logits]) { g in
        moe_router_softmax_topk_backward(logits.gradBuffer().floats, g.floats, nil, probs.floats, indices.int32s,
                                         Int64(t), Int64(e), Int64(k), renormalize ? 1 : 0)
    }
    let probsOut = probs.detached()
    probsOut.recording("softmax", inputs: [logits]) { g in
        moe_router_softmax_topk_backward(logits.gradBuffer().floats, zeroWeights.floats, g.floats, probs.floats,
                                         indices.int32s, Int64(t), Int64(e), Int64(k), 0)
    }
    return ExpertSelection(indices: indices, weights: weights, probs: probsOut)
}

/// Sigmoid gating with a selection bias and group-limited top-k (DeepSeek-V3).
///
/// scores = σ(logits); choice = scores + bias; the `topkGroup` best of `nGroup`
/// expert groups (group score = sum of its top-2 choice scores) stay eligible;
/// indices = top-k of eligible choice scores; weights = scores[indices], normalised
/// to sum 1 when `normalize`, times `scaling`. The bias steers selection only: no
/// gradient reaches it. `probs` of the result holds the sigmoid scores.
public func sigmoidTopK(_ logits: Tensor, bias: Tensor?, topK k: Int, nGroup: Int = 1, topkGroup: Int = 1,
                        normalize: Bool, scaling: Float = 1) -> ExpertSelection {
    let op = "sigmoidTopK"
    Check.trapping { try Check.sigmoidTopK(logits, bias: bias, topK: k, nGroup: nGroup, topkGroup: topkGroup) }
    let (t, e) = (logits.shape[0], logits.shape[1])
    let scores = Tensor(zeros: [t, e]), indices = Tensor(zeros: [t, k], dtype: .int32), weights = Tensor(zeros: [t, k])
    moe_router_sigmoid_topk_forward(scores.floats, indices.int32s, weights.floats, logits.floats, bias?.floats,
                                    Int64(t), Int64(e), Int64(k), Int64(nGroup), Int64(topkGroup), normalize ? 1 : 0, scaling)
    let zeroWeights = Tensor(zeros: [t, k])
    weights.recording(op, inputs: [logits]) { g in
        moe_router_sigmoid_topk_backward(logits.gradBuffer().floats, g.floats, nil, scores.floats, indices.int32s,
                                         Int64(t), Int64(e), Int64(k), normalize ? 1 : 0, scaling)
    }
    let scoresOut = scores.detached()
    scoresOut.recording("sigmoid", inputs: [logits]) { g in
        moe_router_sigmoid_topk_backward(logits.gradBuffer().floats, zeroWeights.floats, g.floats, scores.floats,
                                         indices.int32s, Int64(t), Int64(e), Int64(k), 0, 0)
    }
    return ExpertSelection(indices: indices, weights: weights, probs: scoresOut)
}

/// Row-wise top-k of `scores [N, E]`: values `[N, K]` (differentiable) and int32
/// indices `[N, K]`, descending, ties to the lower index. The building block for
/// routers written in Swift.
public func topK(_ scores: Tensor, topK k: Int) -> (values: Tensor, indices: Tensor) {
    let op = "topK"
    Check.trapping { try Check.topK(scores, topK: k) }
    let (n, e) = (scores.shape[0], scores.shape[1])
    let values = Tensor(zeros: [n, k]), indices = Tensor(zeros: [n, k], dtype: .int32)
    moe_topk_forward(values.floats, indices.int32s, scores.floats, Int64(n), Int64(e), Int64(k))
    values.recording(op, inputs: [scores]) { g in
        moe_topk_backward(scores.gradBuffer().floats, g.floats, indices.int32s, Int64(n), Int64(e), Int64(k))
    }
    return (values, indices)
}

/// Expert-choice selection (Zhou et al. 2022): each of E experts takes the
/// `capacity` tokens with the highest `scores[:, e]` (ties: lower token).
/// Returns the `[T, E]` slot layout: indices[t, e] = e if chosen else -1, and
/// weights[t, e] = scores[t, e] if chosen else 0 (differentiable). A token may be
/// chosen by 0...E experts.
public func expertChoice(_ scores: Tensor, capacity: Int) -> (indices: Tensor, weights: Tensor) {
    let op = "expertChoice"
    Check.trapping { try Check.expertChoice(scores, capacity: capacity) }
    let (t, e) = (scores.shape[0], scores.shape[1])
    let indices = Tensor(zeros: [t, e], dtype: .int32), weights = Tensor(zeros: [t, e])
    moe_expert_choice_forward(indices.int32s, weights.floats, scores.floats, Int64(t), Int64(e), Int64(capacity))
    weights.recording(op, inputs: [scores]) { g in
        let d = scores.gradBuffer().floats, gp = g.floats, ip = indices.int32s
        for i in 0..<(t * e) where ip[i] >= 0 { d[i] += gp[i] }
    }
    return (indices, weights)
}

/// Which assignments survive when an expert is over capacity.
public enum DropPolicy: String, Codable, Sendable, CaseIterable {
    /// Earlier slot first (every token's first choice before any second choice), then earlier token.
    case position
    /// Highest gate weight first (ties: earlier token, then earlier slot).
    case probability
}

/// Keeps at most `capacity` assignments per expert. Returns a copy of `indices`
/// (int32 `[T, K]`) with dropped slots set to -1, and the number dropped. Not
/// differentiable (selection); the gate weights of dropped slots then receive no gradient.
public func applyCapacity(indices: Tensor, weights: Tensor, numExperts: Int, capacity: Int,
                          policy: DropPolicy) -> (indices: Tensor, dropped: Int) {
    Check.trapping { try Check.applyCapacity(indices: indices, weights: weights, numExperts: numExperts, capacity: capacity) }
    let (t, k) = (indices.shape[0], indices.shape[1])
    let kept = indices.copy()
    let ws = Tensor(zeros: [Int(moe_capacity_workspace_size(Int64(t), Int64(k), Int64(numExperts)) + 3) / 4])
    let dropped = moe_apply_capacity(kept.int32s, weights.floats, Int64(t), Int64(k), Int64(numExperts),
                                     Int64(capacity), policy == .position ? 0 : 1, ws.storage.raw)
    return (kept, Int(dropped))
}

/// Load-balancing loss (Switch/GShard; transformers' Mixtral `load_balancing_loss_func`):
///
///     loss = E · Σ_e f_e · P_e,  f_e = count_e / T,  P_e = (1/T) Σ_t probs[t, e]
///
/// count_e counts (token, slot) assignments in `selected` (int32 `[T, K]`, the
/// router's choice before any dropping), so f sums over the K slots and a perfectly
/// balanced router gives loss = K. With `groups = B` the loss is computed per
/// sequence of T/B tokens and averaged (the sequence-level loss of DeepSeek-V2/V3).
/// The gradient flows into `probs` only, not through the counts.
public func loadBalancingLoss(probs: Tensor, selected: Tensor, groups: Int = 1) -> Tensor {
    let op = "loadBalancingLoss"
    Check.trapping { try Check.loadBalancingLoss(probs: probs, selected: selected, groups: groups) }
    let (t, e, k) = (probs.shape[0], probs.shape[1], selected.shape[1])
    let counts = Tensor(zeros: [groups, e])
    let value = moe_load_balance_loss_forward(counts.floats, probs.floats, selected.int32s, Int64(t), Int64(e), Int64(k), Int64(groups))
    let out = Tensor(scalar: value)
    return out.recording(op, inputs: [probs]) { g in
        moe_load_balance_loss_backward(probs.gradBuffer().floats, g.floats[0], counts.floats, Int64(t), Int64(e), Int64(groups))
    }
}

/// `loadBalancingLoss` with counts shared by data-parallel replicas: after counting,
/// `averageCounts` replaces each count_e (a `[groups, E]` buffer) by its mean over the N
/// replicas, and the loss and its gradient use the averaged counts with the local probs:
///
///     loss_r = E · Σ_e (C̄_e / T) · P_e^r,  C̄_e = (1/N) Σ_r count_e^r,  T local tokens
///
/// so that the mean of loss_r over the replicas, and of its gradient, equals the loss of
/// the whole batch of N·T tokens (f_e = Σ_r count_e^r / (N·T), P_e = mean_r P_e^r).
public func loadBalancingLoss(probs: Tensor, selected: Tensor, groups: Int = 1,
                              averageCounts: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> Tensor {
    let op = "loadBalancingLoss"
    try Check.loadBalancingLoss(probs: probs, selected: selected, groups: groups)
    let (t, e, k) = (probs.shape[0], probs.shape[1], selected.shape[1])
    let counts = Tensor(zeros: [groups, e])
    _ = moe_load_balance_loss_forward(counts.floats, probs.floats, selected.int32s, Int64(t), Int64(e), Int64(k), Int64(groups))
    try averageCounts(UnsafeMutableBufferPointer(start: counts.floats, count: groups * e))
    // The value with the averaged counts, in the order and precision of the kernel.
    let tg = t / groups
    var total = 0.0
    for g in 0..<groups {
        var loss = 0.0
        for j in 0..<e {
            var pe = 0.0
            for i in (g * tg)..<((g + 1) * tg) { pe += Double(probs.floats[i * e + j]) }
            loss += (Double(counts.floats[g * e + j]) / Double(tg)) * (pe / Double(tg))
        }
        total += loss * Double(e)
    }
    let out = Tensor(scalar: Float(total / Double(groups)))
    return out.recording(op, inputs: [probs]) { g in
        moe_load_balance_loss_backward(probs.gradBuffer().floats, g.floats[0], counts.floats, Int64(t), Int64(e), Int64(groups))
    }
}

/// Router z-loss (ST-MoE): (1/T) Σ_t logsumexp(logits[t])², logits `[T, E]`.
public func routerZLoss(_ logits: Tensor) -> Tensor {
    let op = "routerZLoss"
    Check.trapping { try Check.routerZLoss(logits) }
    let (t, e) = (logits.shape[0], logits.shape[1])
    let lse = Tensor(zeros: [t])
    let out = Tensor(scalar: moe_z_loss_forward(lse.floats, logits.floats, Int64(t), Int64(e)))
    return out.recording(op, inputs: [logits]) { g in
        moe_z_loss_backward(logits.gradBuffer().floats, g.floats[0], lse.floats, logits.floats, Int64(t), Int64(e))
    }
}

/// Noisy gating logits (Shazeer et al. 2017): clean + noise ⊙ softplus(rawStd),
/// with `noise` a constant N(0, 1) sample of the same shape. Differentiable in
/// `clean` and `rawStd`.
public func noisyLogits(clean: Tensor, rawStd: Tensor, noise: Tensor) -> Tensor {
    let op = "noisyLogits"
    Check.trapping { try Check.noisyLogits(clean: clean, rawStd: rawStd, noise: noise) }
    let out = Tensor(zeros: clean.shape)
    let n = Int64(clean.count)
    moe_noisy_logits_forward(out.floats, clean.floats, rawStd.floats, noise.floats, n)
    return out.recording(op, inputs: [clean, rawStd]) { g in
        moe_noisy_logits_backward(clean.requiresGrad ? clean.gradBuffer().floats : nil,
                                  rawStd.requiresGrad ? rawStd.gradBuffer().floats : nil, g.floats, rawStd.floats, noise.floats, n)
    }
}

/// Qwen2-MoE shared-expert combine: routed + σ(gate) · shared, routed/shared `[T, C]`,
/// gate `[T, 1]` or `[T]` (one logit per token).
public func gatedSharedCombine(routed: Tensor, shared: Tensor, gate: Tensor) -> Tensor {
    let op = "gatedSharedCombine"
    Check.trapping { try Check.gatedSharedCombine(routed: routed, shared: shared, gate: gate) }
    let (t, c) = (routed.shape[0], routed.shape[1])
    let out = Tensor(zeros: [t, c])
    moe_gated_shared_forward(out.floats, routed.floats, shared.floats, gate.floats, Int64(t), Int64(c))
    return out.recording(op, inputs: [routed, shared, gate]) { g in
        moe_gated_shared_backward(routed.requiresGrad ? routed.gradBuffer().floats : nil,
                                  shared.requiresGrad ? shared.gradBuffer().floats : nil,
                                  gate.requiresGrad ? gate.gradBuffer().floats : nil,
                                  g.floats, shared.floats, gate.floats, Int64(t), Int64(c))
    }
}

extension Check {
    /// The arguments of `softmaxTopK` (see there).
    package static func softmaxTopK(_ logits: Tensor, topK k: Int) throws {
        let op = "softmaxTopK"
        try Check.float32(logits, op, "logits")
        try Check.rank(logits, 2, op, "logits")
        let e = logits.shape[1]
        try Check.argument(k >= 1 && k <= e, op, "k must be in 1...E (E = \(e)), got \(k)")
    }

    /// The arguments of `sigmoidTopK` (see there).
    package static func sigmoidTopK(_ logits: Tensor, bias: Tensor?, topK k: Int, nGroup: Int, topkGroup: Int) throws {
        let op = "sigmoidTopK"
        try Check.float32(logits, op, "logits")
        try Check.rank(logits, 2, op, "logits")
        let e = logits.shape[1]
        try Check.argument(nGroup >= 1 && e % nGroup == 0, op, "n_group (\(nGroup)) must divide the number of experts (\(e))")
        try Check.argument(topkGroup >= 1 && topkGroup <= nGroup, op, "topk_group (\(topkGroup)) must be in 1...n_group (\(nGroup))")
        try Check.argument(k >= 1 && k <= (nGroup > 1 ? topkGroup * (e / nGroup) : e), op,
                           "k (\(k)) must be in 1...(experts in the kept groups = \(nGroup > 1 ? topkGroup * (e / nGroup) : e))")
        if let b = bias {
            try Check.float32(b, op, "bias")
            guard b.shape == [e] else { throw SparseMoEError.shapeMismatch(op: op, message: "bias must be [\(e)], got \(b.shape)") }
        }
    }

    /// The arguments of `topK` (see there).
    package static func topK(_ scores: Tensor, topK k: Int) throws {
        let op = "topK"
        try Check.float32(scores, op, "scores")
        try Check.rank(scores, 2, op, "scores")
        let e = scores.shape[1]
        try Check.argument(k >= 1 && k <= e, op, "k must be in 1...\(e), got \(k)")
    }

    /// The arguments of `expertChoice` (see there).
    package static func expertChoice(_ scores: Tensor, capacity: Int) throws {
        let op = "expertChoice"
        try Check.float32(scores, op, "scores")
        try Check.rank(scores, 2, op, "scores")
        let t = scores.shape[0]
        try Check.argument(capacity >= 1 && capacity <= t, op, "capacity must be in 1...T (T = \(t)), got \(capacity)")
    }

    /// The arguments of `applyCapacity` (see there).
    package static func applyCapacity(indices: Tensor, weights: Tensor, numExperts: Int, capacity: Int) throws {
        let op = "applyCapacity"
        try Check.int32(indices, op, "indices")
        try Check.rank(indices, 2, op, "indices")
        try Check.sameShape(indices, weights, op, ("indices", "weights"))
        try Check.argument(capacity >= 0, op, "capacity must be ≥ 0, got \(capacity)")
        let (t, k) = (indices.shape[0], indices.shape[1])
        for i in 0..<(t * k) where indices.int32s[i] >= Int32(numExperts) {
            throw SparseMoEError.invalidArgument(op: op, message: "expert index \(indices.int32s[i]) at row \(i / k), slot \(i % k) is ≥ E = \(numExperts)")
        }
    }

    /// The arguments of `loadBalancingLoss` (see there).
    package static func loadBalancingLoss(probs: Tensor, selected: Tensor, groups: Int) throws {
        let op = "loadBalancingLoss"
        try Check.float32(probs, op, "probs"); try Check.int32(selected, op, "selected")
        try Check.rank(probs, 2, op, "probs"); try Check.rank(selected, 2, op, "selected")
        let (t, e) = (probs.shape[0], probs.shape[1])
        guard selected.shape[0] == t else {
            throw SparseMoEError.shapeMismatch(op: op, message: "probs \(probs.shape) and selected \(selected.shape) must have the same number of rows")
        }
        try Check.argument(t >= 1 && e >= 1, op, "probs must be non-empty, got \(probs.shape)")
        try Check.argument(groups >= 1 && t % groups == 0, op, "groups (\(groups)) must divide the number of tokens (\(t))")
    }

    /// The arguments of `routerZLoss` (see there).
    package static func routerZLoss(_ logits: Tensor) throws {
        let op = "routerZLoss"
        try Check.float32(logits, op, "logits")
        try Check.rank(logits, 2, op, "logits")
        let (t, e) = (logits.shape[0], logits.shape[1])
        try Check.argument(t >= 1 && e >= 1, op, "logits must be non-empty, got \(logits.shape)")
    }

    /// The arguments of `noisyLogits` (see there).
    package static func noisyLogits(clean: Tensor, rawStd: Tensor, noise: Tensor) throws {
        let op = "noisyLogits"
        try Check.float32(clean, op, "clean"); try Check.float32(rawStd, op, "rawStd"); try Check.float32(noise, op, "noise")
        try Check.sameShape(clean, rawStd, op, ("clean", "rawStd")); try Check.sameShape(clean, noise, op, ("clean", "noise"))
    }

    /// The arguments of `gatedSharedCombine` (see there).
    package static func gatedSharedCombine(routed: Tensor, shared: Tensor, gate: Tensor) throws {
        let op = "gatedSharedCombine"
        try Check.float32(routed, op, "routed"); try Check.float32(shared, op, "shared"); try Check.float32(gate, op, "gate")
        try Check.rank(routed, 2, op, "routed")
        try Check.sameShape(routed, shared, op, ("routed", "shared"))
        let t = routed.shape[0]
        guard gate.count == t else {
            throw SparseMoEError.shapeMismatch(op: op, message: "gate \(gate.shape) must hold one logit per token (\(t))")
        }
    }
}
