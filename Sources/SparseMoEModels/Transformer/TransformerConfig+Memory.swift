import SparseMoECore
import SparseMoENN

/// What a `TransformerConfig` costs in memory, known before anything is allocated, so
/// that a config asking for more memory than the machine has is an error, not a crash.
extension TransformerConfig {
    /// A lower bound on the parameters `TransformerLM(config:)` allocates: the weight
    /// matrices only (norm weights and biases left out, < 1 % of any real model):
    ///
    ///   V·C (embedding) + V·C (head, unless tied) + max_position_embeddings·C (learned positions)
    ///   + per layer: attention (GQA: C·(H + 2·KV)·D + H·D·C; latent: the five projections)
    ///   + dense FFN m·C·F, or MoE E·m·C·F_e + E·C (router) + 3·C·F_s (shared experts),
    ///   with m = 3 for SwiGLU, 2 for the MLP kinds.
    ///
    /// Saturates at `Int.max` (never traps, whatever the fields hold).
    public var parameterLowerBound: Int {
        let c = hiddenSize
        func p(_ xs: Int...) -> Int { MemoryBudget.product(xs) }
        var terms = [p(vocabSize, c)]
        if !tiedEmbeddings { terms.append(p(vocabSize, c)) }
        if positionEncoding == .learned { terms.append(p(maxSequenceLength, c)) }
        let attention: Int
        if let l = latentAttention {
            let qk = MemoryBudget.sum([l.qkNopeHeadDim, l.qkRopeHeadDim])
            let q = l.qLoraRank.map { MemoryBudget.sum([p(c, $0), p($0, numHeads, qk)]) } ?? p(c, numHeads, qk)
            attention = MemoryBudget.sum([q, p(c, MemoryBudget.sum([l.kvLoraRank, l.qkRopeHeadDim])),
                                          p(l.kvLoraRank, numHeads, MemoryBudget.sum([l.qkNopeHeadDim, l.vHeadDim])),
                                          p(numHeads, l.vHeadDim, c)])
        } else {
            let d = resolvedHeadDim
            attention = MemoryBudget.sum([p(c, numHeads, d), p(2, c, numKVHeads, d), p(numHeads, d, c)])
        }
        func matrices(_ kind: FeedForwardKind) -> Int { kind == .swiglu ? 3 : 2 }
        let dense = p(matrices(ffnKind), c, intermediateSize)
        var moeLayer = dense
        if let m = moe {
            moeLayer = MemoryBudget.sum([p(m.numExperts, matrices(m.expertKind), c, m.expertIntermediateSize),
                                         m.router == .hash ? 0 : p(m.numExperts, c),
                                         m.sharedExperts > 0 ? p(3, c, m.sharedExpertIntermediateSize) : 0])
        }
        // Count layers by kind without walking a huge `num_hidden_layers`.
        let layers = max(numLayers, 0)
        let moeLayers = moe == nil ? 0 : (layers <= 1 << 20 && moe!.every >= 1 ? (0..<layers).filter(isMoELayer).count : layers)
        terms.append(p(layers, attention))
        terms.append(p(moeLayers, moeLayer))
        terms.append(p(layers - moeLayers, dense))
        return MemoryBudget.sum(terms)
    }

    /// Throws `invalidConfig` when the parameters (at least `parameterLowerBound` ×
    /// `bytesPerParameter` (4 for float32; less for weights stored as bf16, int8, int4), times
    /// `copies`) do not fit in the memory available. `copies`: 1 to build the model; 4 to
    /// train it (weights, gradients, the two AdamW moments).
    public func checkMemory(copies: Int = 1, bytesPerParameter: Double = 4, availableBytes: Int? = nil) throws {
        let params = parameterLowerBound
        let perParameter = max(bytesPerParameter, 0.5)
        let bytes = params > Int.max / 8 ? Int.max : MemoryBudget.product(Int((Double(params) * perParameter).rounded(.up)), copies)
        let what = copies == 1
            ? "the model's parameters (at least \(params == Int.max ? "9.2e18" : String(params)) values at \(String(format: "%.2f", perParameter)) bytes each, from vocab_size \(vocabSize), hidden_size \(hiddenSize), \(numLayers) layers\(moe.map { ", \($0.numExperts) experts" } ?? ""))"
            : "training the model (at least \(params == Int.max ? "9.2e18" : String(params)) parameters × \(copies) float32 copies: weights, gradients, two AdamW moments; vocab_size \(vocabSize), hidden_size \(hiddenSize), \(numLayers) layers\(moe.map { ", \($0.numExperts) experts" } ?? ""))"
        try MemoryBudget.check(bytes, for: what, field: dominantField, availableBytes: availableBytes)
    }

    /// Floats one layer's KV cache holds per position: keys KV·D + values KV·D (latent
    /// attention: H·(Dn + Dr) + H·Dv).
    public var kvCacheFloatsPerPosition: Int {
        if let l = latentAttention {
            return MemoryBudget.product(numHeads, MemoryBudget.sum([l.qkNopeHeadDim, l.qkRopeHeadDim, l.vHeadDim]))
        }
        return MemoryBudget.product(2, numKVHeads, resolvedHeadDim)
    }

    /// The field behind most of the parameters, for the error message.
    package var dominantField: String {
        let c = hiddenSize
        func p(_ xs: Int...) -> Int { MemoryBudget.product(xs) }
        let embedding = p(vocabSize, c, tiedEmbeddings ? 1 : 2)
        let experts = moe.map { p($0.numExperts, 3, c, $0.expertIntermediateSize, max(numLayers, 0)) } ?? 0
        let dense = p(3, c, intermediateSize, max(numLayers, 0))
        let positions = positionEncoding == .learned ? p(maxSequenceLength, c) : 0
        let biggest = [embedding, experts, dense, positions].max()!
        if biggest == embedding { return "vocab_size" }
        if biggest == experts { return "moe.num_experts" }
        if biggest == positions { return "max_position_embeddings" }
        return "intermediate_size"
    }
}
