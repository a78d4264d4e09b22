internal import CMoEKernels

extension Check {
    /// Rows N and width V of a last-axis op over `x [..., V]` (float32, rank ≥ 1).
    package static func lastAxis(_ x: Tensor, _ op: String, _ operand: String) throws -> (Int, Int) {
        try Check.float32(x, op, operand)
        try Check.rank(x, atLeast: 1, op, operand)
        return (x.shape.dropLast().reduce(1, *), x.shape[x.rank - 1])
    }

    /// `logits [..., V]` float32 and `targets [...]` int32, each target in `0..<V` or
    /// `ignoreIndex`; returns (N, V). Code that takes targets from users runs this check
    /// itself and throws instead of trapping.
    package static func crossEntropy(_ logits: Tensor, targets: Tensor, ignoreIndex: Int32) throws -> (Int, Int) {
        let op = "crossEntropy"
        let (n, v) = try lastAxis(logits, op, "logits")
        try Check.int32(targets, op, "targets")
        guard targets.shape == Array(logits.shape.dropLast()) else {
            throw SparseMoEError.shapeMismatch(
                op: op, message: "targets \(targets.shape) must have the shape of logits \(logits.shape) without its last axis, \(Array(logits.shape.dropLast()))")
        }
        let t = targets.int32s
        for i in 0..<n where t[i] != ignoreIndex && (t[i] < 0 || Int(t[i]) >= v) {
            throw SparseMoEError.invalidArgument(
                op: op, message: "target \(t[i]) at row \(i) is out of range for V = \(v) classes (expected 0..<\(v) or ignoreIndex \(ignoreIndex))")
        }
        return (n, v)
    }
}

/// Softmax over the last axis of `x [..., V]`: `y = exp(x − max) / Σ exp(x − max)`.
/// A row that is entirely −∞ gives zeros. Backward: dX = y ⊙ (dY − Σ dY·y).
public func softmax(_ x: Tensor) -> Tensor {
    let op = "softmax"
    let (n, v) = Check.trapping { try Check.lastAxis(x, op, "x") }
    let out = Tensor(uninitialized: x.shape)
    moe_softmax_forward(out.floats, x.floats, Int64(n), Int64(v))
    let y = out.detached()  // the saved output; a view, so the closure does not retain `out`
    return out.recording(op, inputs: [x]) { g in
        moe_softmax_backward(x.gradBuffer().floats, g.floats, y.floats, Int64(n), Int64(v))
    }
}

/// Log-softmax over the last axis of `x [..., V]`: `y = x − logsumexp(x)`.
/// Backward: dX = dY − exp(y)·Σ dY.
public func logSoftmax(_ x: Tensor) -> Tensor {
    let op = "logSoftmax"
    let (n, v) = Check.trapping { try Check.lastAxis(x, op, "x") }
    let out = Tensor(uninitialized: x.shape)
    moe_log_softmax_forward(out.floats, x.floats, Int64(n), Int64(v))
    let y = out.detached()
    return out.recording(op, inputs: [x]) { g in
        moe_log_softmax_backward(x.gradBuffer().floats, g.floats, y.floats, Int64(n), Int64(v))
    }
}

/// Mean softmax cross-entropy of `logits [..., V]` against integer `targets [...]`
/// (int32), skipping rows whose target is `ignoreIndex`:
/// `loss = (1/count) Σ_{rows not ignored} (logsumexp(logits[row]) − logits[row, target])`,
/// `count` = number of rows not ignored. When every row is ignored the loss is 0 and
/// the gradients are zero. Fused: no probability tensor is stored; the per-row
/// logsumexp is saved for the backward pass, dLogits = dLoss/count · (softmax − onehot).
/// Returns the scalar loss `[]` and `count`.
public func crossEntropyWithCount(_ logits: Tensor, targets: Tensor, ignoreIndex: Int32 = -100) -> (loss: Tensor, count: Int) {
    let op = "crossEntropy"
    let (n, v) = Check.trapping { try Check.crossEntropy(logits, targets: targets, ignoreIndex: ignoreIndex) }
    let t = targets.int32s
    let loss = Tensor(zeros: [])
    let lse = Tensor(zeros: [n])
    let count = Int(moe_cross_entropy_forward(loss.floats, lse.floats, logits.floats, t, Int64(n), Int64(v), ignoreIndex))
    let saved = Tensor.needsGrad([logits]) ? targets.copy() : targets  // immune to a reused target buffer
    let out = loss.recording(op, inputs: [logits]) { g in
        moe_cross_entropy_backward(logits.gradBuffer().floats, g.floats, lse.floats, logits.floats, saved.int32s,
                                   Int64(n), Int64(v), ignoreIndex, Int64(count))
    }
    return (out, count)
}

/// Mean softmax cross-entropy over the rows whose target is not `ignoreIndex`; see
/// `crossEntropyWithCount`. `logits [..., V]` float32, `targets [...]` int32 → scalar `[]`.
public func crossEntropy(_ logits: Tensor, targets: Tensor, ignoreIndex: Int32 = -100) -> Tensor {
    crossEntropyWithCount(logits, targets: targets, ignoreIndex: ignoreIndex).loss
}
