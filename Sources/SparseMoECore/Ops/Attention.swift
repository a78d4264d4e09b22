internal import CMoEKernels

extension Check {
    /// The shapes of `attention` (see there); returns the scale, `1/√D` by default.
    package static func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, scale: Float?) throws -> Float {
        let op = "attention"
        try Check.float32(q, op, "q"); try Check.float32(k, op, "k"); try Check.float32(v, op, "v")
        try Check.rank(q, 4, op, "q [B, T, H, D]")
        try Check.rank(k, 4, op, "k [B, S, Hkv, D]")
        try Check.rank(v, 4, op, "v [B, S, Hkv, Dv]")
        let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let (s, hkv, dv) = (k.shape[1], k.shape[2], v.shape[3])
        guard k.shape[0] == b, v.shape[0] == b else {
            throw SparseMoEError.shapeMismatch(op: op, message: "batch sizes differ: q \(q.shape), k \(k.shape), v \(v.shape)")
        }
        guard k.shape[3] == d else {
            throw SparseMoEError.shapeMismatch(op: op, message: "head size D differs: q \(q.shape) [B, T, H, D] and k \(k.shape) [B, S, Hkv, D]")
        }
        guard v.shape[1] == s, v.shape[2] == hkv else {
            throw SparseMoEError.shapeMismatch(op: op, message: "k \(k.shape) [B, S, Hkv, D] and v \(v.shape) [B, S, Hkv, Dv] must agree on S and Hkv")
        }
        guard hkv > 0, h % hkv == 0 else {
            throw SparseMoEError.shapeMismatch(op: op, message: "query heads H=\(h) (q \(q.shape)) must be a multiple of kv heads Hkv=\(hkv) (k \(k.shape))")
        }
        guard d > 0, dv > 0 else {
            throw SparseMoEError.shapeMismatch(op: op, message: "head sizes must be ≥ 1: q \(q.shape), v \(v.shape)")
        }
        guard s > 0 || b * t * h == 0 else {
            throw SparseMoEError.shapeMismatch(op: op, message: "no keys to attend to: k \(k.shape) has S=0 for q \(q.shape)")
        }
        guard !causal || s >= t else {
            throw SparseMoEError.shapeMismatch(op: op, message: "causal attention needs S ≥ T (queries are the last T positions): q \(q.shape) has T=\(t), k \(k.shape) has S=\(s)")
        }
        let sc = scale ?? 1 / Float(d).squareRoot()
        try Check.argument(sc.isFinite, op, "scale must be finite, got \(sc)")
        return sc
    }
}

/// Multi-head scaled-dot-product attention with grouped-query (GQA/MQA) heads.
///
/// - q `[B, T, H, D]`, k `[B, S, Hkv, D]`, v `[B, S, Hkv, Dv]` → `[B, T, H, Dv]`.
/// - `H % Hkv == 0`; query head h uses kv head `h / (H / Hkv)`. Dv may differ from D.
/// - `out[b,i,h] = Σ_j softmax_j(scale · q[b,i,h]·k[b,j,g]) · v[b,j,g]`, `scale`
///   defaulting to `1/√D`.
/// - `causal`: query i sees keys `j ≤ i + (S − T)` — the queries are the last T of
///   the S positions, as when decoding with a KV cache. Requires `S ≥ T`.
///
/// The forward keeps the softmax probabilities `[B, H, T, S]` for the backward when
/// a gradient is needed. FLOPs ≈ 2·B·H·T·S·(D + Dv) (about half when causal with
/// S = T). Backward: dQ, dK, dV; dK/dV of a kv head sum its query heads in order
/// (deterministic).
public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, scale: Float? = nil) -> Tensor {
    let op = "attention"
    let sc = Check.trapping { try Check.attention(q, k, v, causal: causal, scale: scale) }
    let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    let (s, hkv, dv) = (k.shape[1], k.shape[2], v.shape[3])

    let out = Tensor(uninitialized: [b, t, h, dv])
    guard b * t * h > 0 else { return out.recording(op, inputs: [q, k, v]) { _ in } }
    let probs = Tensor(uninitialized: [b, h, t, s])  // masked keys written as 0
    let c = causal ? Int32(1) : 0
    let dims = (Int64(b), Int64(t), Int64(s), Int64(h), Int64(hkv), Int64(d), Int64(dv))
    moe_attention_forward(out.floats, probs.floats, q.floats, k.floats, v.floats,
                          dims.0, dims.1, dims.2, dims.3, dims.4, dims.5, dims.6, c, sc)
    return out.recording(op, inputs: [q, k, v]) { g in
        let dq = q.requiresGrad ? q.gradForWriting() : nil
        let dk = k.requiresGrad ? k.gradForWriting() : nil
        let dvp = v.requiresGrad ? v.gradForWriting() : nil
        guard dq != nil || dk != nil || dvp != nil else { return }
        // dZ per (b, h): the kernel writes every element (zeros where the mask hides a key).
        let work = Workspace(floats: Int(moe_attention_backward_workspace_size(dims.0, dims.1, dims.2, dims.3)))
        moe_attention_backward(dq?.floats, dk?.floats, dvp?.floats, work.floats, g.floats, probs.floats,
                               q.floats, k.floats, v.floats,
                               dims.0, dims.1, dims.2, dims.3, dims.4, dims.5, dims.6, c, sc,
                               dq?.fresh == true ? 1 : 0, dk?.fresh == true ? 1 : 0, dvp?.fresh == true ? 1 : 0)
    }
}

/// Attention of several sequences at once, each over its own keys and values (continuous
/// batching), inference only (no gradient; call it under `withNoGrad`).
///
/// - q `[1, N, H, D]`: the rows of all sequences; sequence g owns rows `rows[g]` (ranges that
///   tile 0..<N in order).
/// - `keys[g]` `[1, S_g, Hkv, D]`, `values[g]` `[1, S_g, Hkv, Dv]`: sequence g's cache, its
///   new rows included (the queries are the last `rows[g].count` of its S_g positions).
/// - → `[1, N, H, Dv]`, each sequence's rows equal to (the same bits as)
///   `attention(q_g, keys[g], values[g], causal:scale:)` on its rows alone, with one parallel
///   region for all (sequence, head) pairs instead of one per sequence.
package func segmentedAttention(_ q: Tensor, keys: [Tensor], values: [Tensor], rows: [Range<Int>],
                                causal: Bool, scale: Float? = nil) -> Tensor {
    precondition(q.shape.count == 4, "segmentedAttention: q [1, N, H, D], got \(q.shape)")
    precondition(keys.count == rows.count && values.count == rows.count, "segmentedAttention: one key and one value tensor per segment")
    guard let first = keys.first else { return Tensor(zeros: [1, q.shape[1], q.shape[2], 0]) }
    let (hkv, dv) = (first.shape[2], values[0].shape[3])
    for (g, (k, v)) in zip(keys, values).enumerated() {
        precondition(k.dtype == .float32 && v.dtype == .float32 && k.shape == [1, k.shape[1], hkv, q.shape[3]] && v.shape == [1, k.shape[1], hkv, dv],
                     "segmentedAttention: segment \(g) keys \(k.shape), values \(v.shape); expected [1, S, \(hkv), \(q.shape[3])] and [1, S, \(hkv), \(dv)]")
    }
    return withExtendedLifetime((keys, values)) {
        segmentedAttention(q, keys: keys.map { UnsafePointer($0.floats) }, values: values.map { UnsafePointer($0.floats) },
                           lengths: keys.map { $0.shape[1] }, kvHeads: hkv, valueDim: dv, rows: rows, causal: causal, scale: scale)
    }
}

/// `segmentedAttention` over keys and values the caller holds: segment g's keys
/// `[lengths[g], kvHeads, D]` at `keys[g]`, values `[lengths[g], kvHeads, valueDim]` at
/// `values[g]` (a KV cache read in place). The pointers must stay valid during the call.
package func segmentedAttention(_ q: Tensor, keys: [UnsafePointer<Float>], values: [UnsafePointer<Float>], lengths: [Int],
                                kvHeads hkv: Int, valueDim dv: Int, rows: [Range<Int>],
                                causal: Bool, scale: Float? = nil) -> Tensor {
    precondition(!GradMode.isEnabled, "segmentedAttention has no backward: call it under withNoGrad")
    precondition(q.dtype == .float32 && q.shape.count == 4 && q.shape[0] == 1, "segmentedAttention: q [1, N, H, D], got \(q.shape)")
    precondition(keys.count == rows.count && values.count == rows.count && lengths.count == rows.count,
                 "segmentedAttention: one key pointer, value pointer and length per segment")
    let (n, h, d) = (q.shape[1], q.shape[2], q.shape[3])
    guard !rows.isEmpty else { return Tensor(zeros: [1, n, h, 0]) }
    precondition(hkv > 0 && h % hkv == 0 && d > 0 && dv > 0, "segmentedAttention: H = \(h) query heads over Hkv = \(hkv), D = \(d), Dv = \(dv)")
    var next = 0, probsCount = 0
    for (g, r) in rows.enumerated() {
        precondition(r.lowerBound == next, "segmentedAttention: segment rows must tile 0..<\(n) in order, got \(rows)")
        next = r.upperBound
        precondition(lengths[g] >= max(r.count, 1), "segmentedAttention: segment \(g) has \(r.count) queries over \(lengths[g]) keys")
        probsCount += h * r.count * lengths[g]
    }
    precondition(next == n, "segmentedAttention: segment rows must tile 0..<\(n), got \(rows)")
    let sc = scale ?? 1 / Float(d).squareRoot()
    let out = Tensor(uninitialized: [1, n, h, dv])
    let probs = Tensor(uninitialized: [max(probsCount, 1)])
    let kp = keys.map { Optional($0) }, vp = values.map { Optional($0) }
    let firstRow = rows.map { Int64($0.lowerBound) }, counts = rows.map { Int64($0.count) }, lens = lengths.map { Int64($0) }
    moe_attention_segments_forward(out.floats, probs.floats, q.floats, kp, vp, firstRow, counts, lens,
                                   Int64(rows.count), Int64(h), Int64(hkv), Int64(d), Int64(dv), causal ? 1 : 0, sc)
    return out
}
