internal import CMoEKernels

/// Which formula `gelu` uses.
public enum GELUApproximation: String, Sendable, Codable {
    /// Exact: ½x(1 + erf(x/√2)) (PyTorch's default, `gelu`).
    case none
    /// Tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (GPT-2's `gelu_new`).
    case tanh
}

private typealias ForwardKernel = (UnsafeMutablePointer<Float>?, UnsafePointer<Float>?, Int64) -> Void
private typealias BackwardKernel = (UnsafeMutablePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Float>?, Int64) -> Void

/// An elementwise activation: output of x's shape; backward dX += dOut ⊙ f′(x).
private func activation(_ x: Tensor, _ op: String, _ forward: ForwardKernel,
                        _ backward: @escaping BackwardKernel) -> Tensor {
    Check.trapping { try Check.float32(x, op, "x") }
    let n = x.count
    let out = Tensor(uninitialized: x.shape)
    forward(out.floats, x.floats, Int64(n))
    return out.recording(op, inputs: [x]) { g in
        backward(x.gradBuffer().floats, g.floats, x.floats, Int64(n))
    }
}

/// SiLU (swish): x·σ(x), elementwise. f′(x) = σ(x)(1 + x(1 − σ(x))).
public func silu(_ x: Tensor) -> Tensor {
    activation(x, "silu", moe_silu_forward, moe_silu_backward)
}

/// GELU, elementwise: exact (erf, the default) or the tanh approximation.
public func gelu(_ x: Tensor, approximation: GELUApproximation = .none) -> Tensor {
    switch approximation {
    case .none: return activation(x, "gelu", moe_gelu_erf_forward, moe_gelu_erf_backward)
    case .tanh: return activation(x, "gelu(tanh)", moe_gelu_tanh_forward, moe_gelu_tanh_backward)
    }
}

/// ReLU: max(x, 0), elementwise; gradient 0 where x ≤ 0.
public func relu(_ x: Tensor) -> Tensor {
    activation(x, "relu", moe_relu_forward, moe_relu_backward)
}

extension Check {
    /// `gate` and `up` float32 of the same shape.
    package static func swiglu(_ gate: Tensor, _ up: Tensor) throws {
        try Check.float32(gate, "swiglu", "gate"); try Check.float32(up, "swiglu", "up")
        try Check.sameShape(gate, up, "swiglu", ("gate", "up"))
    }
}

/// SwiGLU gate: silu(gate) ⊙ up, for `gate` and `up` of the same shape (the two halves
/// of a gated feed-forward block, e.g. `[N, F]` each).
/// Backward: dGate = dOut ⊙ up ⊙ silu′(gate), dUp = dOut ⊙ silu(gate).
public func swiglu(_ gate: Tensor, _ up: Tensor) -> Tensor {
    let op = "swiglu"
    Check.trapping { try Check.swiglu(gate, up) }
    let n = gate.count
    let out = Tensor(uninitialized: gate.shape)
    moe_swiglu_forward(out.floats, gate.floats, up.floats, Int64(n))
    return out.recording(op, inputs: [gate, up]) { g in
        let dg = gate.requiresGrad ? gate.gradBuffer().floats : nil
        let du = up.requiresGrad ? up.gradBuffer().floats : nil
        moe_swiglu_backward(dg, du, g.floats, gate.floats, up.floats, Int64(n))
    }
}
