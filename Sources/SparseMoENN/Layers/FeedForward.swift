import SparseMoECore

/// Feed-forward block kinds, shared by dense FFNs and experts.
public enum FeedForwardKind: String, Codable, Sendable, CaseIterable {
    /// down(silu(gate(x)) ⊙ up(x)) — Llama, Mixtral, Qwen, DeepSeek, OLMoE.
    case swiglu
    /// fc2(gelu(fc1(x))), exact GELU — BERT, GShard-style.
    case gelu
    /// fc2(gelu_tanh(fc1(x))) — GPT-2, Switch Transformer.
    case geluTanh = "gelu_tanh"
    /// fc2(relu(fc1(x))) — original Transformer, T5.
    case relu

    var expertActivation: ExpertActivation {
        switch self {
        case .swiglu: return .swiglu
        case .gelu: return .gelu
        case .geluTanh: return .geluTanh
        case .relu: return .relu
        }
    }
}

/// A dense feed-forward block on x `[..., C]` (C = `hiddenSize`) with intermediate size F (`intermediateSize`).
/// SwiGLU: parameters `gate_proj` `[F, C]`, `up_proj` `[F, C]`, `down_proj` `[C, F]` (no biases).
/// MLP kinds: `fc1` `[F, C]` + bias, `fc2` `[C, F]` + bias.
/// FLOPs per token: 2·C·F per matrix (3 matrices for SwiGLU, 2 otherwise).
public final class FeedForward: Module {
    public let kind: FeedForwardKind
    public let hiddenSize: Int
    public let intermediateSize: Int
    let first: Linear   // gate_proj or fc1
    let up: Linear?     // up_proj (SwiGLU only)
    let second: Linear  // down_proj or fc2

    public init(kind: FeedForwardKind, hiddenSize: Int, intermediateSize: Int, rng: inout RandomGenerator) throws {
        guard hiddenSize > 0 else { throw SparseMoEError.invalidConfig(field: "hidden_size", message: "must be ≥ 1, got \(hiddenSize)") }
        guard intermediateSize > 0 else { throw SparseMoEError.invalidConfig(field: "intermediate_size", message: "must be ≥ 1, got \(intermediateSize)") }
        self.kind = kind
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        let bias = kind != .swiglu
        first = Linear(inFeatures: hiddenSize, outFeatures: intermediateSize, bias: bias, rng: &rng)
        up = kind == .swiglu ? Linear(inFeatures: hiddenSize, outFeatures: intermediateSize, rng: &rng) : nil
        second = Linear(inFeatures: intermediateSize, outFeatures: hiddenSize, bias: bias, rng: &rng)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        if kind == .swiglu {
            return prefixed("gate_proj", first.namedParameters()) + prefixed("up_proj", up!.namedParameters())
                + prefixed("down_proj", second.namedParameters())
        }
        return prefixed("fc1", first.namedParameters()) + prefixed("fc2", second.namedParameters())
    }

    /// Matmul FLOPs for `tokens` rows.
    public func flops(tokens: Int) -> Int { 2 * tokens * hiddenSize * intermediateSize * (kind == .swiglu ? 3 : 2) }

    /// x `[..., C]` → `[..., C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch kind {
        case .swiglu: return second(swiglu(first(x), up!(x)))
        case .gelu: return second(gelu(first(x), approximation: .none))
        case .geluTanh: return second(gelu(first(x), approximation: .tanh))
        case .relu: return second(relu(first(x)))
        }
    }
}
