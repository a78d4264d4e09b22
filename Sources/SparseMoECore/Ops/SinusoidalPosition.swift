internal import CMoEKernels

/// The sinusoidal position table of Vaswani et al. (2017), `[count, width]`:
/// `PE[p, 2i] = sin(p / base^(2i/C))`, `PE[p, 2i+1] = cos(p / base^(2i/C))` for
/// positions `p = start ..< start + count`, C = `width`. For odd C the last column
/// is a sine. Computed in double, rounded to float32.
public func sinusoidalPositionTable(count: Int, width: Int, start: Int = 0, base: Double = 10000) -> Tensor {
    Check.trapping { try Check.sinusoidalTable(count: count, width: width, start: start, base: base) }
    let pe = Tensor(zeros: [count, width])
    if count * width > 0 { moe_sinusoidal_table(pe.floats, Int64(start), Int64(count), Int64(width), base) }
    return pe
}

/// `x + PE` for `x` `[B, T, C]`, token t at position `start + t` (see
/// `sinusoidalPositionTable`). The table is a constant: the gradient passes through.
public func addSinusoidalPositions(_ x: Tensor, start: Int = 0, base: Double = 10000) -> Tensor {
    let op = "addSinusoidalPositions"
    Check.trapping { try Check.addSinusoidalPositions(x, start: start, base: base) }
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    let pe = sinusoidalPositionTable(count: t, width: c, start: start, base: base)
    let out = Tensor(zeros: x.shape)
    if x.count > 0 { moe_sinusoidal_forward(out.floats, x.floats, pe.floats, Int64(b), Int64(t), Int64(c)) }
    return out.recording(op, inputs: [x]) { g in
        guard x.requiresGrad, x.count > 0 else { return }
        moe_sinusoidal_backward(x.gradBuffer().floats, g.floats, Int64(b), Int64(t), Int64(c))
    }
}

extension Check {
    /// count, width, start ≥ 0 and a positive finite base.
    package static func sinusoidalTable(count: Int, width: Int, start: Int, base: Double) throws {
        let op = "sinusoidalPositionTable"
        try Check.argument(count >= 0 && width >= 0 && start >= 0, op,
                           "count, width and start must be ≥ 0, got count \(count), width \(width), start \(start)")
        try Check.argument(base.isFinite && base > 0, op, "base must be positive and finite, got \(base)")
    }

    /// x float32 `[B, T, C]` and a valid table.
    package static func addSinusoidalPositions(_ x: Tensor, start: Int, base: Double) throws {
        let op = "addSinusoidalPositions"
        try Check.float32(x, op, "x")
        try Check.rank(x, 3, op, "x [B, T, C]")
        try sinusoidalTable(count: x.shape[1], width: x.shape[2], start: start, base: base)
    }
}
