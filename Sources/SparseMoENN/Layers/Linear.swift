import SparseMoECore

/// y = x · Wᵀ + b, W `[out, in]` (PyTorch layout), b `[out]` optional; x `[..., in]`.
/// W may be stored in any weight dtype (`linearProjection`); only float32 trains.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    /// Weights N(0, std²) truncated at ±2σ (std = 1/√in by default); bias zero.
    public init(inFeatures: Int, outFeatures: Int, bias: Bool = false, std: Float? = nil, rng: inout RandomGenerator) {
        precondition(inFeatures > 0 && outFeatures > 0, "Linear needs positive sizes")
        weight = Tensor.truncatedNormal([outFeatures, inFeatures], std: std ?? 1 / Float(inFeatures).squareRoot(),
                                        using: &rng, requiresGrad: true)
        self.bias = bias ? Tensor(zeros: [outFeatures], requiresGrad: true) : nil
    }

    /// Wraps existing tensors (e.g. loaded from a checkpoint).
    public init(weight: Tensor, bias: Tensor? = nil) throws {
        guard weight.rank == 2 else {
            throw SparseMoEError.shapeMismatch(op: "Linear", message: "weight must be [out, in], got \(weight.shape)")
        }
        if let b = bias, b.shape != [weight.shape[0]] {
            throw SparseMoEError.shapeMismatch(op: "Linear", message: "bias \(b.shape) must be [\(weight.shape[0])] for weight \(weight.shape)")
        }
        self.weight = weight
        self.bias = bias
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var p: [(name: String, tensor: Tensor)] = [("weight", weight)]
        if let b = bias { p.append(("bias", b)) }
        return p
    }

    /// x `[..., in]` → `[..., out]`; the last axis of x must be `inFeatures`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        Check.require(x.rank >= 1 && x.shape[x.rank - 1] == inFeatures, "Linear",
                      "input \(x.shape) must end in in_features = \(inFeatures)")
        let y = linearProjection(x.rank == 1 ? x.reshaped([1, inFeatures]) : x, weight)
        let out = bias.map { add(y, $0) } ?? y
        return x.rank == 1 ? out.reshaped([outFeatures]) : out
    }
}
