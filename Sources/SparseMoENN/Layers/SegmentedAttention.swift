import SparseMoECore

/// One sequence's rows inside a ragged batch (continuous batching): rows `rows` of the
/// flattened input `[1, N, C]` are this sequence's new tokens at positions
/// `start ..< start + rows.count`, and `cache` holds its earlier keys and values.
public struct AttentionSegment {
    public var rows: Range<Int>
    public var start: Int
    public var cache: KVCache

    public init(rows: Range<Int>, start: Int, cache: KVCache) {
        self.rows = rows
        self.start = start
        self.cache = cache
    }
}

extension AttentionContext {
    /// Rotary cos/sin tables `[T, headDim/2]` for the input's T rows: `start ..< start + T`,
    /// or with segments each segment's own positions, one after another.
    public func rotaryTables(_ rotary: RotaryEmbedding, count t: Int, headDim: Int) -> (cos: Tensor, sin: Tensor) {
        guard let segments else { return rotary.tables(start: start, count: t, headDim: headDim) }
        return rotary.tables(runs: segments.map { ($0.start, $0.rows.count) }, headDim: headDim)
    }

    /// Softmax attention of q `[B, T, H, D]` over k `[B, T, Hkv, D]`, v `[B, T, Hkv, Dv]` with
    /// this context's cache, or with `segments` (B = 1) each segment's queries over its own
    /// cache + its own new keys, so sequences never see each other. → `[B, T, H, Dv]`.
    public func attend(_ q: Tensor, _ k: Tensor, _ v: Tensor, layer: Int, scale: Float? = nil) throws -> Tensor {
        guard let segments else {
            var keys = k, values = v
            if let cache { (keys, values) = try cache.append(layer: layer, keys: k, values: v) }
            return attention(q, keys, values, causal: causal, scale: scale)
        }
        let t = q.shape[1]
        guard q.shape[0] == 1, segments.last?.rows.upperBound == t else {
            throw SparseMoEError.shapeMismatch(op: "attention", message: "segments must tile the T = \(t) rows of a batch-1 input, got q \(q.shape) and rows up to \(segments.last?.rows.upperBound ?? 0)")
        }
        let rows = { (x: Tensor, r: Range<Int>) -> Tensor in
            let inner = Array(x.shape.dropFirst(2))
            return x.reshaped([t] + inner).slice(rows: r).reshaped([1, r.count] + inner)
        }
        if GradMode.inferenceKernels {
            // One kernel call for all sequences (the same bits as the per-sequence path below),
            // each cache read in place: no per-sequence tensors.
            let cached = try segments.map { try $0.cache.append(layer: layer, keys: k, values: v, rows: $0.rows) }
            return segmentedAttention(q, keys: cached.map(\.keys), values: cached.map(\.values), lengths: cached.map(\.length),
                                      kvHeads: k.shape[2], valueDim: v.shape[3], rows: segments.map(\.rows), causal: causal, scale: scale)
        }
        let outputs = try segments.map { s -> Tensor in
            let (keys, values) = try s.cache.append(layer: layer, keys: rows(k, s.rows), values: rows(v, s.rows))
            let a = attention(rows(q, s.rows), keys, values, causal: causal, scale: scale)
            return a.reshaped(Array(a.shape.dropFirst()))
        }
        let out = concatFirstAxis(outputs)
        return out.reshaped([1] + out.shape)
    }
}
