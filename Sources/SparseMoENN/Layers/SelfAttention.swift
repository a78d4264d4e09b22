import SparseMoECore

/// What an attention layer needs besides its input.
public struct AttentionContext {
    /// Position of the first input token (for rotary angles with a KV cache).
    public var start: Int = 0
    /// Rotary cos/sin tables for positions start..<start+T, shared by all layers.
    public var rotary: (cos: Tensor, sin: Tensor)?
    /// Incremental decoding cache (inference only).
    public var cache: KVCache?
    public var causal: Bool = true
    /// A ragged batch of sequences (continuous batching): the input is `[1, N, C]` and each
    /// segment is one sequence's rows with its own cache and positions (`start`, `cache` unused).
    public var segments: [AttentionSegment]?

    public init(start: Int = 0, rotary: (cos: Tensor, sin: Tensor)? = nil, cache: KVCache? = nil, causal: Bool = true,
                segments: [AttentionSegment]? = nil) {
        self.segments = segments
        self.start = start
        self.rotary = rotary
        self.cache = cache
        self.causal = causal
    }
}

/// A self-attention layer over x `[B, T, C]`.
public protocol AttentionLayer: Module {
    func callAsFunction(_ x: Tensor, layer: Int, context: AttentionContext) throws -> Tensor
}

/// Multi-head / grouped-query self-attention (Llama, Mixtral, Qwen, OLMoE):
/// q = x·W_qᵀ [B,T,H,D], k, v = x·W_kᵀ, x·W_vᵀ [B,T,KV,D]; optional q/k RMSNorm (per head
/// or over the full projection); RoPE on q and k; softmax(q·kᵀ/√D)·v; out = ·W_oᵀ.
/// Parameter names: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `q_norm`, `k_norm`.
public final class GroupedQueryAttentionLayer: AttentionLayer {
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int
    public let qProj: Linear, kProj: Linear, vProj: Linear, oProj: Linear
    public let qNorm: Norm?, kNorm: Norm?
    public let qkNorm: QKNorm
    public let useRotary: Bool
    public let rotary: RotaryEmbedding

    public init(width: Int, heads: Int, kvHeads: Int, headDim: Int, bias: Bool, qkNorm: QKNorm, norm: NormKind,
                normEps: Float, rotary: RotaryEmbedding?, initStd: Float, rng: inout RandomGenerator) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.qkNorm = qkNorm
        qProj = Linear(inFeatures: width, outFeatures: heads * headDim, bias: bias, std: initStd, rng: &rng)
        kProj = Linear(inFeatures: width, outFeatures: kvHeads * headDim, bias: bias, std: initStd, rng: &rng)
        vProj = Linear(inFeatures: width, outFeatures: kvHeads * headDim, bias: bias, std: initStd, rng: &rng)
        oProj = Linear(inFeatures: heads * headDim, outFeatures: width, std: initStd, rng: &rng)
        switch qkNorm {
        case .none: qNorm = nil; kNorm = nil
        case .perHead: qNorm = Norm(kind: norm, width: headDim, eps: normEps); kNorm = Norm(kind: norm, width: headDim, eps: normEps)
        case .full: qNorm = Norm(kind: norm, width: heads * headDim, eps: normEps); kNorm = Norm(kind: norm, width: kvHeads * headDim, eps: normEps)
        }
        useRotary = rotary != nil
        self.rotary = rotary ?? RotaryEmbedding()
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var p = prefixed("q_proj", qProj.namedParameters()) + prefixed("k_proj", kProj.namedParameters())
            + prefixed("v_proj", vProj.namedParameters()) + prefixed("o_proj", oProj.namedParameters())
        if let q = qNorm, let k = kNorm { p += prefixed("q_norm", q.namedParameters()) + prefixed("k_norm", k.namedParameters()) }
        return p
    }

    public func callAsFunction(_ x: Tensor, layer: Int, context: AttentionContext) throws -> Tensor {
        let (b, t) = (x.shape[0], x.shape[1])
        var q = qProj(x), k = kProj(x)
        let v = vProj(x).reshaped([b, t, kvHeads, headDim])
        if qkNorm == .full { q = qNorm!(q); k = kNorm!(k) }
        q = q.reshaped([b, t, heads, headDim])
        k = k.reshaped([b, t, kvHeads, headDim])
        if qkNorm == .perHead { q = qNorm!(q); k = kNorm!(k) }
        if useRotary {
            let tables = context.rotary ?? context.rotaryTables(rotary, count: t, headDim: headDim)
            q = rotary.apply(q, cos: tables.cos, sin: tables.sin)
            k = rotary.apply(k, cos: tables.cos, sin: tables.sin)
        }
        let a = try context.attend(q, k, v, layer: layer)
        return oProj(a.reshaped([b, t, heads * headDim]))
    }
}

/// Where q/k normalisation is applied (Qwen3-MoE: per head over D; OLMoE: over the full projection).
public enum QKNorm: String, Sendable, Equatable, Codable {
    case none
    /// One norm of width D shared by all heads, for q and for k.
    case perHead
    /// A norm over the whole q projection (H·D) and the whole k projection (KV·D).
    case full
}
