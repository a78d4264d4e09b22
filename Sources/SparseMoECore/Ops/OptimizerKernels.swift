internal import CMoEKernels

/// Thin wrappers over the optimiser kernels (`moe_optim.h`) for `Training/`.
///
/// These are not autograd ops: they update parameters, moments and gradients in
/// place, outside the tape. They live in `Ops/` because this folder is the only
/// Swift code that calls the C kernels. Callers have validated shapes and dtypes.
package enum OptimizerKernels {
    /// One AdamW step over `param` in place (PyTorch `torch.optim.AdamW` order; see
    /// `moe_adamw_step`) on the gradient `grad · gradScale`. `step` is this step's 1-based
    /// number for bias correction.
    package static func adamwStep(param: Tensor, expAvg: Tensor, expAvgSq: Tensor, grad: Tensor, gradScale: Float = 1, lr: Double,
                          beta1: Double, beta2: Double, eps: Double, weightDecay: Double, step: Int) {
        precondition(param.dtype == .float32 && grad.dtype == .float32 && expAvg.dtype == .float32
                     && expAvgSq.dtype == .float32, "adamwStep: float32 tensors expected")
        precondition(param.count == grad.count && param.count == expAvg.count && param.count == expAvgSq.count,
                     "adamwStep: element counts differ")
        precondition(step >= 1, "adamwStep: step numbers start at 1")
        guard param.count > 0 else { return }
        param.withUnsafeMutableFloats { p in
            expAvg.withUnsafeMutableFloats { m in
                expAvgSq.withUnsafeMutableFloats { v in
                    moe_adamw_step(p.baseAddress, m.baseAddress, v.baseAddress, grad.floats, gradScale, Int64(param.count),
                                   lr, beta1, beta2, eps, weightDecay, Int64(step))
                }
            }
        }
    }

    /// Σ x² over a float32 tensor, accumulated in double, deterministic for any thread count.
    package static func sumOfSquares(_ x: Tensor) -> Double {
        precondition(x.dtype == .float32, "sumOfSquares: float32 tensor expected")
        guard x.count > 0 else { return 0 }
        return moe_grad_norm_sq(x.floats, Int64(x.count))
    }

    /// x *= scale in place.
    package static func scale(_ x: Tensor, by scale: Float) {
        precondition(x.dtype == .float32, "scale: float32 tensor expected")
        guard x.count > 0 else { return }
        x.withUnsafeMutableFloats { moe_grad_scale($0.baseAddress, Int64(x.count), scale) }
    }
}
