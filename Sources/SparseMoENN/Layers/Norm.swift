import SparseMoECore

/// RMSNorm or LayerNorm over the last axis, with a learned scale (and LayerNorm bias).
/// RMSNorm: y = x / √(mean(x²) + ε) ⊙ w. LayerNorm: y = (x − μ) / √(σ² + ε) ⊙ w + b.
public final class Norm: Module {
    public let kind: NormKind
    public let weight: Tensor
    public let bias: Tensor?
    public let eps: Float

    public init(kind: NormKind, width: Int, eps: Float = 1e-5) {
        self.kind = kind
        self.eps = eps
        weight = Tensor(repeating: 1, shape: [width], requiresGrad: true)
        bias = kind == .layer ? Tensor(zeros: [width], requiresGrad: true) : nil
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var p: [(name: String, tensor: Tensor)] = [("weight", weight)]
        if let b = bias { p.append(("bias", b)) }
        return p
    }

    /// x `[..., width]` → normalised, same shape.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch kind {
        case .rms: return rmsNorm(x, weight: weight, eps: eps)
        case .layer: return layerNorm(x, weight: weight, bias: bias, eps: eps)
        }
    }
}

/// A normalisation layer kind.
public enum NormKind: String, Sendable, Equatable, Codable, CaseIterable {
    /// RMSNorm: weight only.
    case rms
    /// LayerNorm: weight and bias.
    case layer

    /// Parameters of one norm over `width` features.
    public func parameters(width: Int) -> Int { self == .rms ? width : 2 * width }
}
