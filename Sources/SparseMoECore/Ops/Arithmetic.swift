internal import CMoEKernels

/// How the right operand of a binary op lines up with the left one: the same
/// shape (`rows` = element count, `cols` = 1), or a row vector `[D]` broadcast to
/// every row of a `[..., D]` left operand.
package struct BinaryLayout {
    var rows: Int
    var cols: Int
    var broadcast: Bool
}

extension Check {
    /// The layout of binary op `op` on `a` and `b` (same shape, or `b` a row vector `[D]`
    /// matching `a [..., D]`); throws naming both shapes otherwise.
    package static func binary(_ a: Tensor, _ b: Tensor, _ op: String) throws -> BinaryLayout {
        try Check.float32(a, op, "a"); try Check.float32(b, op, "b")
        if a.shape == b.shape { return BinaryLayout(rows: a.count, cols: 1, broadcast: false) }
        if b.rank == 1, a.rank >= 1, b.shape[0] == a.shape[a.rank - 1] {
            return BinaryLayout(rows: a.shape.dropLast().reduce(1, *), cols: b.shape[0], broadcast: true)
        }
        throw SparseMoEError.shapeMismatch(
            op: op, message: "a \(a.shape) and b \(b.shape) must have the same shape, or b must be a row vector [D] matching a's last dimension")
    }
}

/// `a + β·b` with `b` of `a`'s shape or a row vector `[D]` broadcast over the rows of
/// `a [..., D]`. The broadcast gradient is summed over rows in row order (deterministic).
private func addScaled(_ a: Tensor, _ b: Tensor, beta: Float, _ op: String) -> Tensor {
    let l = Check.trapping { try Check.binary(a, b, op) }
    let out = Tensor(uninitialized: a.shape)
    moe_add_forward(out.floats, a.floats, b.floats, beta, Int64(l.rows), Int64(l.cols), l.broadcast ? 1 : 0)
    return out.recording(op, inputs: [a, b]) { g in
        let da = a.requiresGrad ? a.gradForWriting() : nil
        let db = b.requiresGrad ? b.gradForWriting() : nil
        moe_add_backward(da?.floats, db?.floats, g.floats, beta, Int64(l.rows), Int64(l.cols), l.broadcast ? 1 : 0,
                         da?.fresh == true ? 1 : 0, db?.fresh == true ? 1 : 0)
    }
}

/// Elementwise sum `a + b`. Shapes: equal, or one operand a row vector `[D]` and the
/// other `[..., D]` (the vector is added to every row). Result has the larger shape.
/// Backward: each operand receives the output gradient (summed over rows when broadcast).
public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    if a.shape != b.shape && a.rank == 1 && b.rank > 1 { return addScaled(b, a, beta: 1, "add") }
    return addScaled(a, b, beta: 1, "add")
}

/// Elementwise difference `a − b`; `b` has `a`'s shape or is a row vector `[D]`
/// broadcast over `a [..., D]`.
public func subtract(_ a: Tensor, _ b: Tensor) -> Tensor {
    addScaled(a, b, beta: -1, "subtract")
}

/// Elementwise (Hadamard) product `a ⊙ b`. Shapes as for `add`: equal, or one operand a
/// row vector `[D]` scaling every row of the other `[..., D]`.
/// Backward: dA = dOut ⊙ b, dB = dOut ⊙ a (summed over rows when broadcast).
public func multiply(_ a: Tensor, _ b: Tensor) -> Tensor {
    let op = "multiply"
    if a.shape != b.shape && a.rank == 1 && b.rank > 1 { return multiply(b, a) }
    let l = Check.trapping { try Check.binary(a, b, op) }
    let out = Tensor(uninitialized: a.shape)
    moe_mul_forward(out.floats, a.floats, b.floats, Int64(l.rows), Int64(l.cols), l.broadcast ? 1 : 0)
    return out.recording(op, inputs: [a, b]) { g in
        let da = a.requiresGrad ? a.gradBuffer().floats : nil
        let db = b.requiresGrad ? b.gradBuffer().floats : nil
        moe_mul_backward(da, db, g.floats, a.floats, b.floats, Int64(l.rows), Int64(l.cols), l.broadcast ? 1 : 0)
    }
}

extension Check {
    /// `x` float32 and `s` finite.
    package static func scale(_ x: Tensor, by s: Float) throws {
        try Check.float32(x, "scale", "x")
        try Check.argument(s.isFinite, "scale", "scale factor must be finite, got \(s)")
    }
}

/// `s · x` for a scalar `s`. Backward: dX = s · dOut.
public func scale(_ x: Tensor, by s: Float) -> Tensor {
    let op = "scale"
    Check.trapping { try Check.scale(x, by: s) }
    let out = Tensor(uninitialized: x.shape)
    let n = x.count
    moe_scale_forward(out.floats, x.floats, s, Int64(n))
    return out.recording(op, inputs: [x]) { g in
        moe_scale_backward(x.gradBuffer().floats, g.floats, s, Int64(n))
    }
}

extension Tensor {
    /// `add(lhs, rhs)`.
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor { add(lhs, rhs) }
    /// `subtract(lhs, rhs)`.
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor { subtract(lhs, rhs) }
    /// `multiply(lhs, rhs)` (elementwise).
    public static func * (lhs: Tensor, rhs: Tensor) -> Tensor { multiply(lhs, rhs) }
    /// `scale(lhs, by: rhs)`.
    public static func * (lhs: Tensor, rhs: Float) -> Tensor { scale(lhs, by: rhs) }
    /// `scale(rhs, by: lhs)`.
    public static func * (lhs: Float, rhs: Tensor) -> Tensor { scale(rhs, by: lhs) }
    /// `scale(x, by: -1)`.
    public static prefix func - (x: Tensor) -> Tensor { scale(x, by: -1) }
}
