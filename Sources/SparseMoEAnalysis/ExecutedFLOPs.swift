import SparseMoECore
import SparseMoENN
import SparseMoEModels

/// Matmul FLOPs a forward pass actually executed, counted from what the MoE layers returned
/// (`MoEOutput`: the routing decision and the dispatch), 2·m·n·k per matrix product. Unlike
/// `ModelAccounting` (K experts per token by construction) this sees dropped slots and
/// expert-choice routing. A full backward executes twice these again.
public enum ExecutedFLOPs {
    /// Routed experts: 2·A·C·F per weight matrix (3 for SwiGLU, 2 otherwise), A the
    /// assignments that ran (dropped slots excluded).
    public static func routedExperts(_ experts: Experts, assignments: Int) -> Int {
        2 * assignments * experts.hiddenSize * experts.intermediateSize * (experts.kind == .swiglu ? 3 : 2)
    }

    /// One MoE layer on T tokens: router logits 2·T·C·E (when the router computed logits),
    /// routed experts, shared experts 2·T·C·F per matrix, shared gate 2·T·C.
    public static func moeLayer(_ layer: MoELayer, _ output: MoEOutput) -> Int {
        let t = output.routing.experts.shape[0], c = layer.experts.hiddenSize
        var flops = routedExperts(layer.experts, assignments: output.dispatch.assignments)
        if output.routing.logits != nil { flops += 2 * t * c * layer.router.numExperts }
        if let shared = layer.shared { flops += shared.flops(tokens: t) }
        if layer.sharedGate != nil { flops += 2 * t * c }
        return flops
    }

    /// All MoE layers of one `TransformerLM.forward` output.
    public static func moeLayers(_ model: TransformerLM, _ output: LMOutput) -> Int {
        zip(model.blocks, output.moe).reduce(0) { sum, pair in
            guard case let .moe(layer) = pair.0.feedForward, let moe = pair.1 else { return sum }
            return sum + moeLayer(layer, moe)
        }
    }
}
