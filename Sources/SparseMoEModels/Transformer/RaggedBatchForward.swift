import SparseMoECore
import SparseMoENN

/// One sequence's part of a ragged batch: its next tokens (one when decoding, a prompt chunk
/// when prefilling) and the KV cache of its earlier positions, which the forward extends.
public struct SequenceChunk {
    public var tokens: [Int32]
    public var cache: KVCache

    public init(tokens: [Int32], cache: KVCache) {
        self.tokens = tokens
        self.cache = cache
    }
}

/// What `TransformerLM.forward(chunks:)` returns.
public struct RaggedBatchOutput {
    /// The logits after each chunk's last token, `[S, V]` for S chunks in order.
    public var logits: Tensor
    /// Each MoE layer's decision over all N rows of the batch (nil for dense layers).
    public var moe: [MoEOutput?]
}

extension TransformerLM {
    /// One inference forward over several sequences at once (continuous batching).
    ///
    /// The chunks' tokens are laid end to end as one input of N = Σ nᵢ rows: embeddings,
    /// norms, projections and the MoE layers see all N rows together (every chosen expert
    /// runs once per step on all its rows), while attention runs per sequence, each chunk's
    /// queries over its own cache + its own new keys at its own positions. Row for row the
    /// result is what `forward(_:options:)` gives each sequence alone with its cache, up to
    /// float rounding of the different GEMM shapes. No gradients are recorded.
    public func forward(chunks: [SequenceChunk]) throws -> RaggedBatchOutput {
        guard !chunks.isEmpty else {
            throw SparseMoEError.invalidArgument(op: "TransformerLM", message: "a batched forward needs at least one sequence chunk")
        }
        var segments: [AttentionSegment] = []
        var positions: [Int32] = []
        var ids: [Int32] = []
        for (i, chunk) in chunks.enumerated() {
            let start = chunk.cache.length
            guard !chunk.tokens.isEmpty else {
                throw SparseMoEError.invalidArgument(op: "TransformerLM", message: "sequence chunk \(i) has no tokens")
            }
            guard start + chunk.tokens.count <= min(config.maxSequenceLength, chunk.cache.capacity) else {
                throw SparseMoEError.invalidArgument(op: "TransformerLM", message: "sequence chunk \(i) would reach position \(start + chunk.tokens.count), beyond its cache capacity \(chunk.cache.capacity) or max_position_embeddings = \(config.maxSequenceLength)")
            }
            guard !chunks[..<i].contains(where: { $0.cache === chunk.cache }) else {
                throw SparseMoEError.invalidArgument(op: "TransformerLM", message: "sequence chunk \(i) shares its KV cache with an earlier chunk; each sequence appears once per step")
            }
            segments.append(AttentionSegment(rows: ids.count..<(ids.count + chunk.tokens.count), start: start, cache: chunk.cache))
            positions += (start..<(start + chunk.tokens.count)).map { Int32($0) }
            ids += chunk.tokens
        }
        return try withNoGrad {
            let n = ids.count, c = config.hiddenSize
            let tokens = Tensor(indices: ids, shape: [1, n])
            try Check.embedding(embedTokens, tokens)
            var x = embedding(embedTokens, tokens)
            switch config.positionEncoding {
            case .learned:
                let pos = embedding(positionTable!, Tensor(indices: positions, shape: [n]))
                x = add(x.reshaped([n * c]), pos.reshaped([n * c])).reshaped([1, n, c])
            case .sinusoidal:
                let table = concatFirstAxis(segments.map { sinusoidalPositionTable(count: $0.rows.count, width: c, start: $0.start) })
                x = add(x.reshaped([n * c]), table.reshaped([n * c])).reshaped([1, n, c])
            case .rope:
                break
            }
            var context = AttentionContext(causal: config.causal, segments: segments)
            if let rotary, config.latentAttention == nil {
                context.rotary = context.rotaryTables(rotary, count: n, headDim: config.resolvedHeadDim)
            }
            var routing = RoutingContext(training: false, rng: RandomGenerator(seed: 0), tokenIds: tokens.reshaped([n]), sequenceLength: n)
            var outputs: [MoEOutput?] = []
            for (i, block) in blocks.enumerated() {
                let (y, moe) = try block(x, layer: i, attentionContext: context, routingContext: &routing)
                x = y
                outputs.append(moe)
            }
            let rows = finalNorm(x).reshaped([n, c])
            let last = concatFirstAxis(segments.map { rows.slice(rows: ($0.rows.upperBound - 1)..<$0.rows.upperBound) })
            return RaggedBatchOutput(logits: linearProjection(last, lmHead ?? embedTokens), moe: outputs)
        }
    }
}
