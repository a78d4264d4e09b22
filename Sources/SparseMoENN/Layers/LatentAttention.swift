import SparseMoECore

/// Multi-head latent attention (DeepSeek-V2/V3), over x `[B, T, C]`:
///
///   q = W_qb · norm(W_qa · x)  (or W_q · x without q compression)    [B,T,H, Dn+Dr]
///   [c_kv, k_r] = W_kva · x                                           [B,T, R_kv + Dr]
///   [k_n, v] = W_kvb · norm(c_kv)                                     [B,T,H, Dn+Dv]
///   q = [q_n, rope(q_r)],  k = [k_n, rope(k_r) shared by all heads]
///   out = W_o · softmax(q·kᵀ / √(Dn+Dr)) · v                          [B,T,C]
///
/// Rotary uses the interleaved pairing (transformers' `rope_interleave`; it reorders the
/// rotary features of q and k alike, so the scores are the same). Parameter names:
/// `q_a_proj`, `q_a_layernorm`, `q_b_proj` (or `q_proj`), `kv_a_proj_with_mqa`,
/// `kv_a_layernorm`, `kv_b_proj`, `o_proj`. The two low-rank norms use ε = 1e-6 whatever the
/// model's `normEps` (as DeepSeek's code and transformers build them).
public final class LatentAttentionLayer: AttentionLayer {
    public let heads: Int
    public let config: LatentAttentionConfig
    let qA: Linear?, qANorm: Norm?, qB: Linear?, q: Linear?
    let kvA: Linear, kvANorm: Norm, kvB: Linear, o: Linear
    let rotary: RotaryEmbedding
    /// ε of `q_a_layernorm` and `kv_a_layernorm`.
    public static let lowRankNormEps: Float = 1e-6

    public init(width: Int, heads: Int, config: LatentAttentionConfig, norm: NormKind, normEps: Float, ropeTheta: Float,
                ropeStyle: RotaryStyle, initStd: Float, rng: inout RandomGenerator) throws {
        self.heads = heads
        self.config = config
        let qkDim = config.qkNopeHeadDim + config.qkRopeHeadDim
        if let r = config.qLoraRank {
            qA = Linear(inFeatures: width, outFeatures: r, std: initStd, rng: &rng)
            qANorm = Norm(kind: norm, width: r, eps: Self.lowRankNormEps)
            qB = Linear(inFeatures: r, outFeatures: heads * qkDim, std: initStd, rng: &rng)
            q = nil
        } else {
            qA = nil; qANorm = nil; qB = nil
            q = Linear(inFeatures: width, outFeatures: heads * qkDim, std: initStd, rng: &rng)
        }
        kvA = Linear(inFeatures: width, outFeatures: config.kvLoraRank + config.qkRopeHeadDim, std: initStd, rng: &rng)
        kvANorm = Norm(kind: norm, width: config.kvLoraRank, eps: Self.lowRankNormEps)
        kvB = Linear(inFeatures: config.kvLoraRank, outFeatures: heads * (config.qkNopeHeadDim + config.vHeadDim), std: initStd, rng: &rng)
        o = Linear(inFeatures: heads * config.vHeadDim, outFeatures: width, std: initStd, rng: &rng)
        rotary = RotaryEmbedding(theta: ropeTheta, rotaryDim: nil, style: ropeStyle)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var p: [(name: String, tensor: Tensor)] = []
        if let qA, let qANorm, let qB {
            p += prefixed("q_a_proj", qA.namedParameters()) + prefixed("q_a_layernorm", qANorm.namedParameters())
                + prefixed("q_b_proj", qB.namedParameters())
        } else if let q {
            p += prefixed("q_proj", q.namedParameters())
        }
        return p + prefixed("kv_a_proj_with_mqa", kvA.namedParameters()) + prefixed("kv_a_layernorm", kvANorm.namedParameters())
            + prefixed("kv_b_proj", kvB.namedParameters()) + prefixed("o_proj", o.namedParameters())
    }

    public func callAsFunction(_ x: Tensor, layer: Int, context: AttentionContext) throws -> Tensor {
        let (b, t) = (x.shape[0], x.shape[1])
        let (dn, dr, dv) = (config.qkNopeHeadDim, config.qkRopeHeadDim, config.vHeadDim)
        let qFlat = qA.map { qB!(qANorm!($0(x))) } ?? q!(x)
        let qParts = splitLastAxis(qFlat.reshaped([b, t, heads, dn + dr]), [dn, dr])
        let kv = splitLastAxis(kvA(x), [config.kvLoraRank, dr])
        let kvUp = kvB(kvANorm(kv[0])).reshaped([b, t, heads, dn + dv])
        let kvParts = splitLastAxis(kvUp, [dn, dv])
        let tables = context.rotaryTables(rotary, count: t, headDim: dr)
        let qRot = rotary.apply(qParts[1], cos: tables.cos, sin: tables.sin)
        let kRot = rotary.apply(kv[1].reshaped([b, t, 1, dr]), cos: tables.cos, sin: tables.sin)
        let query = concatLastAxis([qParts[0], qRot])
        let key = concatLastAxis([kvParts[0], broadcastHeads(kRot, heads: heads)])
        let a = try context.attend(query, key, kvParts[1], layer: layer, scale: 1 / Float(dn + dr).squareRoot())
        return o(a.reshaped([b, t, heads * dv]))
    }
}

/// Multi-head latent attention sizes (DeepSeek-V2/V3); see `LatentAttention`.
public struct LatentAttentionConfig: Codable, Sendable, Equatable {
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var qkNopeHeadDim: Int
    public var qkRopeHeadDim: Int
    public var vHeadDim: Int

    public init(qLoraRank: Int?, kvLoraRank: Int, qkNopeHeadDim: Int, qkRopeHeadDim: Int, vHeadDim: Int) {
        self.qLoraRank = qLoraRank
        self.kvLoraRank = kvLoraRank
        self.qkNopeHeadDim = qkNopeHeadDim
        self.qkRopeHeadDim = qkRopeHeadDim
        self.vHeadDim = vHeadDim
    }

    enum CodingKeys: String, CodingKey {
        case qLoraRank = "q_lora_rank", kvLoraRank = "kv_lora_rank", qkNopeHeadDim = "qk_nope_head_dim"
        case qkRopeHeadDim = "qk_rope_head_dim", vHeadDim = "v_head_dim"
    }
}
