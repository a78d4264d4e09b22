import SparseMoECore
import SparseMoENN

/// The feed-forward half of a block: one dense FFN or one MoE layer.
public enum FeedForwardBlock {
    case dense(FeedForward)
    case moe(MoELayer)

    var module: any Module {
        switch self {
        case let .dense(f): return f
        case let .moe(m): return m
        }
    }
}

/// A pre-norm transformer block:
///   h = x + attn(norm₁(x));  y = h + ffn(norm₂(h)).
/// Parameter names (HF layout): `input_layernorm`, `self_attn.*`, `post_attention_layernorm`, `mlp.*`.
public final class TransformerBlock: Module {
    public let inputNorm: Norm
    public let attention: any AttentionLayer
    public let postAttentionNorm: Norm
    public let feedForward: FeedForwardBlock

    public init(inputNorm: Norm, attention: any AttentionLayer, postAttentionNorm: Norm, feedForward: FeedForwardBlock) {
        self.inputNorm = inputNorm
        self.attention = attention
        self.postAttentionNorm = postAttentionNorm
        self.feedForward = feedForward
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        prefixed("input_layernorm", inputNorm.namedParameters()) + prefixed("self_attn", attention.namedParameters())
            + prefixed("post_attention_layernorm", postAttentionNorm.namedParameters())
            + prefixed("mlp", feedForward.module.namedParameters())
    }

    /// x `[B, T, C]` → (y `[B, T, C]`, the MoE layer's output details if any).
    public func callAsFunction(_ x: Tensor, layer: Int, attentionContext: AttentionContext,
                               routingContext: inout RoutingContext) throws -> (Tensor, MoEOutput?) {
        let h = add(x, try attention(inputNorm(x), layer: layer, context: attentionContext))
        let n = postAttentionNorm(h)
        switch feedForward {
        case let .dense(f):
            return (add(h, f(n)), nil)
        case let .moe(m):
            let out = try m(n, context: &routingContext)
            return (add(h, out.output), out)
        }
    }
}
