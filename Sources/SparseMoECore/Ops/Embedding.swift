internal import CMoEKernels

extension Check {
    /// `table [V, C]` in a weight dtype, `ids` int32 with every id in `0..<V`. Code that takes ids from
    /// users (a prompt, a token file) runs this check itself and throws instead of trapping.
    package static func embedding(_ table: Tensor, _ ids: Tensor) throws {
        let op = "embedding"
        try Check.argument(table.dtype.isWeightFormat, op, "table must hold weights (float32, bf16, f16, int8, int4), got \(table.dtype)")
        try Check.rank(table, 2, op, "table")
        try Check.int32(ids, op, "ids")
        let v = table.shape[0]
        let p = ids.int32s
        for i in 0..<ids.count where p[i] < 0 || Int(p[i]) >= v {
            throw SparseMoEError.invalidArgument(
                op: op, message: "id \(p[i]) at position \(i) of ids \(ids.shape) is out of range for table \(table.shape) (V = \(v))")
        }
    }
}

/// Embedding lookup: `out[..., :] = table[ids[...], :]` for `table [V, C]` (float32, or
/// any weight dtype: rows dequantized, no gradient) and integer `ids [...]` (int32, each
/// in `0..<V`) → `[..., C]` float32.
/// Backward: dTable[id] += dOut rows, summed in position order (no atomics; the
/// threads split the C columns), so repeated ids accumulate deterministically.
public func embedding(_ table: Tensor, _ ids: Tensor) -> Tensor {
    let op = "embedding"
    Check.trapping { try Check.embedding(table, ids) }
    let c = table.shape[1]
    let n = ids.count
    let p = ids.int32s
    let out = Tensor(zeros: ids.shape + [c])
    if table.dtype != .float32 {
        let w = table.kernelWeight
        for i in 0..<n { moe_weight_dequantize(out.floats + i * c, w, Int64(p[i]), 1) }
        return out
    }
    moe_embedding_forward(out.floats, table.floats, p, Int64(n), Int64(c))
    // Backward reads the ids later: keep a private copy so a reused id buffer cannot change it.
    let saved = Tensor.needsGrad([table]) ? ids.copy() : ids
    return out.recording(op, inputs: [table]) { g in
        moe_embedding_backward(table.gradBuffer().floats, g.floats, saved.int32s, Int64(n), Int64(c))
    }
}
