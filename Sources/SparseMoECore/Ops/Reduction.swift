internal import CMoEKernels

/// Σ of all elements times `factor` → a scalar (shape `[]`). Accumulated in double
/// over fixed blocks, so the value does not depend on the thread count.
private func reduceAll(_ x: Tensor, factor: Float, _ op: String) -> Tensor {
    Check.trapping { try Check.float32(x, op, "x") }
    let n = x.count
    let out = Tensor(zeros: [])
    moe_sum_forward(out.floats, x.floats, factor, Int64(n))
    return out.recording(op, inputs: [x]) { g in
        moe_sum_backward(x.gradBuffer().floats, g.floats, factor, Int64(n))
    }
}

/// Sum of all elements of `x` → scalar `[]` (0 for an empty tensor). Backward: dX = dOut everywhere.
public func sum(_ x: Tensor) -> Tensor { x.sum() }

/// Mean of all elements of `x` → scalar `[]`; `x` must not be empty.
/// Backward: dX = dOut / count everywhere.
public func mean(_ x: Tensor) -> Tensor { x.mean() }

extension Check {
    /// `x` not empty (its mean is defined).
    package static func mean(_ x: Tensor) throws {
        guard x.count > 0 else {
            throw SparseMoEError.invalidArgument(op: "mean", message: "mean of an empty tensor (shape \(x.shape)) is undefined")
        }
    }
}

extension Tensor {
    /// Sum of all elements → scalar `[]` (0 for an empty tensor).
    public func sum() -> Tensor { reduceAll(self, factor: 1, "sum") }

    /// Mean of all elements → scalar `[]`; the tensor must not be empty.
    public func mean() -> Tensor {
        Check.trapping { try Check.mean(self) }
        return reduceAll(self, factor: Float(1.0 / Double(count)), "mean")
    }

    /// Sum over the last axis: `[..., D]` → `[...]` (double accumulation per row).
    /// Backward: dX[..., j] = dOut[...] for every j.
    public func sumLastAxis() -> Tensor {
        let op = "sumLastAxis"
        Check.trapping {
            try Check.float32(self, op, "x")
            try Check.rank(self, atLeast: 1, op, "x")
        }
        let d = shape[rank - 1], n = shape.dropLast().reduce(1, *)
        let out = Tensor(zeros: Array(shape.dropLast()))
        moe_sum_last_forward(out.floats, floats, Int64(n), Int64(d))
        let x = self
        return out.recording(op, inputs: [x]) { g in
            moe_sum_last_backward(x.gradBuffer().floats, g.floats, Int64(n), Int64(d))
        }
    }
}
