internal import CMoEKernels

extension Check {
    /// Validates a normalisation over the last axis; returns (rows N, width C).
    package static func norm(_ x: Tensor, weight: Tensor, bias: Tensor?, eps: Float, _ op: String) throws -> (Int, Int) {
        try Check.float32(x, op, "x"); try Check.float32(weight, op, "weight")
        try Check.rank(x, atLeast: 1, op, "x")
        let c = x.shape[x.rank - 1]
        guard c > 0 else {
            throw SparseMoEError.shapeMismatch(op: op, message: "x \(x.shape) has an empty last axis; nothing to normalise")
        }
        guard weight.shape == [c] else {
            throw SparseMoEError.shapeMismatch(op: op, message: "weight \(weight.shape) must be [\(c)] to match the last axis of x \(x.shape)")
        }
        if let bias {
            try Check.float32(bias, op, "bias")
            guard bias.shape == [c] else {
                throw SparseMoEError.shapeMismatch(op: op, message: "bias \(bias.shape) must be [\(c)] to match the last axis of x \(x.shape)")
            }
        }
        try Check.argument(eps.isFinite && eps >= 0, op, "eps must be finite and ≥ 0, got \(eps)")
        return (x.shape.dropLast().reduce(1, *), c)
    }
}

/// RMSNorm over the last axis of `x [..., C]`:
/// `y = x / sqrt(mean(x²) + eps) ⊙ weight`, with `weight [C]`. Per-row statistics are
/// accumulated in double; the reciprocal RMS of each row is saved for the backward pass.
public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float = 1e-6) -> Tensor {
    let op = "rmsNorm"
    let (n, c) = Check.trapping { try Check.norm(x, weight: weight, bias: nil, eps: eps, op) }
    let out = Tensor(uninitialized: x.shape)
    let rstd = Tensor.needsGrad([x, weight]) ? Tensor(zeros: [n]) : nil
    moe_rmsnorm_forward(out.floats, rstd?.floats, x.floats, weight.floats, Int64(n), Int64(c), eps)
    return out.recording(op, inputs: [x, weight]) { g in
        guard let rstd else { return }
        let dx = x.requiresGrad ? x.gradForWriting() : nil
        let dw = weight.requiresGrad ? weight.gradBuffer().floats : nil
        moe_rmsnorm_backward(dx?.floats, dw, g.floats, x.floats, weight.floats, rstd.floats, Int64(n), Int64(c),
                             dx?.fresh == true ? 1 : 0)
    }
}

/// LayerNorm over the last axis of `x [..., C]`:
/// `y = (x − mean) / sqrt(var + eps) ⊙ weight + bias` (biased variance), `weight [C]`,
/// optional `bias [C]`. Per-row mean and reciprocal standard deviation (double
/// accumulation) are saved for the backward pass.
public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    let op = "layerNorm"
    let (n, c) = Check.trapping { try Check.norm(x, weight: weight, bias: bias, eps: eps, op) }
    let out = Tensor(uninitialized: x.shape)
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    let saved = Tensor.needsGrad(inputs) ? (mean: Tensor(zeros: [n]), rstd: Tensor(zeros: [n])) : nil
    moe_layernorm_forward(out.floats, saved?.mean.floats, saved?.rstd.floats, x.floats, weight.floats,
                          bias?.floats, Int64(n), Int64(c), eps)
    return out.recording(op, inputs: inputs) { g in
        guard let saved else { return }
        let dx = x.requiresGrad ? x.gradBuffer().floats : nil
        let dw = weight.requiresGrad ? weight.gradBuffer().floats : nil
        let db = (bias?.requiresGrad ?? false) ? bias!.gradBuffer().floats : nil
        moe_layernorm_backward(dx, dw, db, g.floats, x.floats, weight.floats, saved.mean.floats, saved.rstd.floats,
                               Int64(n), Int64(c))
    }
}
