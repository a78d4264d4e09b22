import SparseMoECore
import SparseMoENN

/// An architecture-neutral description of a decoder-only transformer, just detailed
/// enough to count its parameters and FLOPs exactly.
///
/// Anything that builds models describes itself with this type: Hugging Face
/// configurations (`ModelArchitecture(huggingFace:)`), and the library's own model
/// configurations. `ModelAccounting` works on this description only.
///
/// Layout assumed: token embedding [V, C] → decoder layers (norm → attention →
/// residual, norm → feed-forward → residual) → final norm → output head [V, C]
/// (shared with the embedding when `tiedEmbeddings`).
public struct ModelArchitecture: Sendable, Equatable, Codable {
    public var name: String
    /// V
    public var vocabSize: Int
    /// C
    public var hiddenSize: Int
    public var tiedEmbeddings: Bool
    /// Normalisation used by every norm of the model (block norms, final norm, q/k norms).
    public var norm: NormKind
    /// Learned absolute position embeddings [maxPositions, C] (0 when positions are rotary).
    public var learnedPositions: Int
    public var layers: [LayerArchitecture]

    public init(name: String, vocabSize: Int, hiddenSize: Int, tiedEmbeddings: Bool, norm: NormKind = .rms,
                learnedPositions: Int = 0, layers: [LayerArchitecture]) {
        self.name = name
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.tiedEmbeddings = tiedEmbeddings
        self.norm = norm
        self.learnedPositions = learnedPositions
        self.layers = layers
    }
}

/// One decoder layer: attention and a feed-forward block, each behind a pre-norm.
public struct LayerArchitecture: Sendable, Equatable, Codable {
    public var attention: AttentionArchitecture
    public var feedForward: FeedForwardArchitecture
    /// Norms over C in the layer (2 for pre-norm blocks).
    public var normsPerLayer: Int

    public init(attention: AttentionArchitecture, feedForward: FeedForwardArchitecture, normsPerLayer: Int = 2) {
        self.attention = attention
        self.feedForward = feedForward
        self.normsPerLayer = normsPerLayer
    }
}

/// Self-attention variants.
public enum AttentionArchitecture: Sendable, Equatable, Codable {
    /// Multi-head / grouped-query / multi-query attention.
    case grouped(GroupedQueryAttention)
    /// DeepSeek multi-head latent attention.
    case latent(LatentAttention)
}

/// Standard attention: q [H·D], k and v [KV·D], output [C].
public struct GroupedQueryAttention: Sendable, Equatable, Codable {
    /// H
    public var heads: Int
    /// KV (divides H)
    public var kvHeads: Int
    /// D
    public var headDim: Int
    /// Bias on q, k and v.
    public var qkvBias: Bool
    /// Bias on the output projection.
    public var outputBias: Bool
    public var qkNorm: QKNorm
    /// Rotary dimensions per head (D for full RoPE, 0 for none).
    public var ropeDims: Int
    /// Sliding-window attention: each position sees at most this many keys (itself included).
    public var slidingWindow: Int?

    public init(heads: Int, kvHeads: Int, headDim: Int, qkvBias: Bool = false, outputBias: Bool = false,
                qkNorm: QKNorm = .none, ropeDims: Int? = nil, slidingWindow: Int? = nil) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.qkvBias = qkvBias
        self.outputBias = outputBias
        self.qkNorm = qkNorm
        self.ropeDims = ropeDims ?? headDim
        self.slidingWindow = slidingWindow
    }
}

/// Multi-head latent attention (DeepSeek-V2/V3):
/// q = W_qb · norm(W_qa · x) (or W_q · x when `qLoraRank` is nil), [H, Dn + Dr];
/// [c_kv, k_rope] = W_kva · x, [R_kv + Dr]; [k_nope, v] = W_kvb · norm(c_kv), [H, Dn + Dv];
/// out = W_o · attention, [H·Dv] → C.
public struct LatentAttention: Sendable, Equatable, Codable {
    public var heads: Int
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var qkNopeHeadDim: Int
    public var qkRopeHeadDim: Int
    public var vHeadDim: Int
    /// Bias on q_a (or q), kv_a and o (DeepSeek's `attention_bias`).
    public var bias: Bool

    public init(heads: Int, qLoraRank: Int?, kvLoraRank: Int, qkNopeHeadDim: Int, qkRopeHeadDim: Int, vHeadDim: Int, bias: Bool = false) {
        self.heads = heads
        self.qLoraRank = qLoraRank
        self.kvLoraRank = kvLoraRank
        self.qkNopeHeadDim = qkNopeHeadDim
        self.qkRopeHeadDim = qkRopeHeadDim
        self.vHeadDim = vHeadDim
        self.bias = bias
    }
}

/// Feed-forward variants.
public enum FeedForwardArchitecture: Sendable, Equatable, Codable {
    case dense(DenseFeedForward)
    case mixture(MixtureOfExperts)

    public var isMixture: Bool { if case .mixture = self { return true } else { return false } }
}

/// Activation functions (for the non-matmul FLOP count).
public enum Activation: String, Sendable, Equatable, Codable {
    case silu, gelu, relu
}

/// A dense MLP of intermediate size F: gated (SwiGLU-style: gate, up [F, C], down [C, F]) or
/// plain (up [F, C], down [C, F]).
public struct DenseFeedForward: Sendable, Equatable, Codable {
    /// F
    public var intermediateSize: Int
    public var gated: Bool
    public var bias: Bool
    public var activation: Activation

    public init(intermediateSize: Int, gated: Bool = true, bias: Bool = false, activation: Activation = .silu) {
        self.intermediateSize = intermediateSize
        self.gated = gated
        self.bias = bias
        self.activation = activation
    }

    /// Weight matrices of shape F×C.
    var matrices: Int { gated ? 3 : 2 }
}

/// Router scoring function.
public enum RouterScoring: String, Sendable, Equatable, Codable {
    case softmax, sigmoid
}

/// A mixture-of-experts block: router [E, C], E routed experts of intermediate size F of which each
/// token uses K, and optionally a shared MLP every token uses (with an optional scalar
/// sigmoid gate [1, C], as in Qwen2-MoE).
///
/// `routerProjections` counts the router's [E, C] matrices: 1 (the gate), 2 for noisy
/// top-k gating (its learned noise projection, which runs in training only and is not
/// in the forward FLOPs), 0 for parameter-free routers (hash routing: no router FLOPs,
/// no scoring).
public struct MixtureOfExperts: Sendable, Equatable, Codable {
    /// E
    public var numExperts: Int
    /// K
    public var topK: Int
    /// One routed expert (F = `expert.intermediateSize`).
    public var expert: DenseFeedForward
    /// Bias on the router projection.
    public var routerBias: Bool
    /// A per-expert score-correction bias [E] (DeepSeek-V3 `e_score_correction_bias`).
    public var routerCorrectionBias: Bool
    public var scoring: RouterScoring
    /// The shared MLP (all shared experts fused: width = count × per-expert width), if any.
    public var shared: DenseFeedForward?
    /// Number of shared experts the shared MLP stands for (reporting only).
    public var sharedExpertCount: Int
    /// A sigmoid gate [1, C] scaling the shared MLP's output.
    public var sharedGate: Bool
    /// Router weight matrices [E, C] stored (see the type's note): 0, 1 or 2.
    public var routerProjections: Int

    public init(numExperts: Int, topK: Int, expert: DenseFeedForward, routerBias: Bool = false, routerCorrectionBias: Bool = false,
                scoring: RouterScoring = .softmax, shared: DenseFeedForward? = nil, sharedExpertCount: Int? = nil, sharedGate: Bool = false,
                routerProjections: Int = 1) {
        self.numExperts = numExperts
        self.topK = topK
        self.expert = expert
        self.routerBias = routerBias
        self.routerCorrectionBias = routerCorrectionBias
        self.scoring = scoring
        self.shared = shared
        self.sharedExpertCount = sharedExpertCount ?? (shared == nil ? 0 : 1)
        self.sharedGate = sharedGate
        self.routerProjections = routerProjections
    }
}
