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
    ///
    /// `checkpointing` (training): `.block` keeps only x and recomputes the block in
    /// backward with the routing context it had here (same router noise, loads counted
    /// once); `.attention` recomputes norm₁ and attention only. Gradients are the same bit
    /// for bit; the returned `MoEOutput`'s tensors other than `auxLoss` then carry no graph.
    /// A KV cache cannot be combined with checkpointing while recording gradients.
    public func callAsFunction(_ x: Tensor, layer: Int, attentionContext: AttentionContext,
                               routingContext: inout RoutingContext,
                               checkpointing: ActivationCheckpointing = .none) throws -> (Tensor, MoEOutput?) {
        if checkpointing != .none && attentionContext.cache != nil && GradMode.isEnabled {
            throw SparseMoEError.invalidArgument(
                op: "TransformerBlock", message: "activation checkpointing (\(checkpointing.rawValue)) recomputes the forward and cannot write a KV cache; use checkpointing none or run under withNoGrad")
        }
        switch checkpointing {
        case .none:
            return try feedForwardHalf(add(x, try attention(inputNorm(x), layer: layer, context: attentionContext)),
                                       routingContext: &routingContext)
        case .attention:
            let a = try checkpoint(inputs: [x], parameters: inputNorm.parameters + attention.parameters) { xs, _ in
                (outputs: [try self.attention(self.inputNorm(xs[0]), layer: layer, context: attentionContext)], extra: ())
            }
            return try feedForwardHalf(add(x, a.outputs[0]!), routingContext: &routingContext)
        case .block:
            let before = routingContext
            let r = try checkpoint(inputs: [x], parameters: parameters) { xs, recomputing in
                var context = before
                context.recomputing = before.recomputing || recomputing
                let (y, moe) = try self(xs[0], layer: layer, attentionContext: attentionContext, routingContext: &context)
                return (outputs: [y, moe?.auxLoss], extra: (moe: moe, context: context))
            }
            routingContext = r.extra.context
            var moe = r.extra.moe
            moe?.auxLoss = r.outputs[1]
            return (r.outputs[0]!, moe)
        }
    }

    /// h `[B, T, C]` (after attention) → h + ffn(norm₂(h)).
    func feedForwardHalf(_ h: Tensor, routingContext: inout RoutingContext) throws -> (Tensor, MoEOutput?) {
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
