internal import CMoEKernels

/// The forward of `routedExperts` for inference with weights in any weight dtype (C kernel
/// `moe_routed_experts_infer`): the same math and dispatch plan, but the expert matrices
/// are dequantized on the fly, only experts with rows read their weights, and nothing is
/// kept for backward. Few rows per expert (decode) run as one parallel pass over every
/// (expert, block of weight rows); many rows run per expert as dequantized panels × sgemm.
///
/// Shapes as in `routedExperts` (validated there): x `[T, C]`, gates `[T, K]`,
/// w1/w3 `[E, F, C]`, w2 `[E, C, F]`, b1 `[E, F]`, b2 `[E, C]` (biases float32) → `[T, C]`.
func routedExpertsInference(_ x: Tensor, gates: Tensor, plan: DispatchPlan, w1: Tensor, w3: Tensor?, w2: Tensor,
                            b1: Tensor?, b2: Tensor?, activation: ExpertActivation) -> Tensor {
    let (t, c) = (x.shape[0], x.shape[1])
    let (e, f) = (w1.shape[0], w1.shape[1])
    let k = gates.shape[1]
    let y = Tensor(zeros: [t, c])
    guard t > 0, c > 0 else { return y }
    let kw1 = w1.kernelWeight, kw2 = w2.kernelWeight
    let kw3 = w3?.kernelWeight ?? moe_weight(format: 0, data: nil, scales: nil, rows: 0, cols: 0)
    let size = Int(moe_routed_experts_infer_workspace_size(Int64(plan.assignments), Int64(c), Int64(f), Int64(e),
                                                           activation.kernelValue, kw1, kw2))
    let ws = Workspace(floats: max(size, 1))
    plan.offsets.withUnsafeBufferPointer { o in
        plan.sorted.withUnsafeBufferPointer { s in
            plan.position.withUnsafeBufferPointer { p in
                moe_routed_experts_infer(y.floats, ws.floats, x.floats, gates.floats, o.baseAddress, s.baseAddress, p.baseAddress,
                                         kw1, kw3, kw2, b1?.floats, b2?.floats,
                                         Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), activation.kernelValue)
            }
        }
    }
    return y
}
