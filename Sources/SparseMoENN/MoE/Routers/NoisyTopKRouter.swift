import SparseMoECore

/// Noisy top-k gating (Shazeer et al. 2017).
///
/// H = x·W_gᵀ + ε ⊙ softplus(x·W_noiseᵀ), ε ~ N(0, 1) in training only (clean
/// logits at inference); G = softmax over the k largest entries of H (the others
/// get weight 0), i.e. softmax top-k with renormalisation. The noise scale is
/// learned: gradients reach W_noise through the softplus.
public final class NoisyTopKRouter: Router {
    public let numExperts: Int
    public let topK: Int
    /// `[E, C]`, checkpoint names `weight` and `noise_weight`.
    public let weight: Tensor
    public let noiseWeight: Tensor

    public init(hiddenSize: Int, numExperts: Int, topK: Int, rng: inout RandomGenerator) throws {
        try RouterConfigCheck.numExperts(numExperts)
        try RouterConfigCheck.topK(topK, numExperts: numExperts)
        try RouterConfigCheck.hiddenSize(hiddenSize)
        self.numExperts = numExperts
        self.topK = topK
        self.weight = initRouterWeight(numExperts: numExperts, hiddenSize: hiddenSize, std: nil, rng: &rng)
        // Zero noise weights: softplus(0) = log 2, a moderate initial noise scale.
        self.noiseWeight = Tensor(zeros: [numExperts, hiddenSize], requiresGrad: true)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] { [("weight", weight), ("noise_weight", noiseWeight)] }

    public func route(_ x: Tensor, context: inout RoutingContext) throws -> Routing {
        try RouterConfigCheck.input(x, hiddenSize: weight.shape[1], router: "NoisyTopKRouter")
        let clean = matmul(x, weight, transposeB: true, precision: .float32)
        var logits = clean
        if context.training {
            let rawStd = matmul(x, noiseWeight, transposeB: true, precision: .float32)
            let noise = Tensor.normal(clean.shape, using: &context.rng)
            logits = noisyLogits(clean: clean, rawStd: rawStd, noise: noise)
        }
        let sel = softmaxTopK(logits, topK: topK, renormalize: true)
        return Routing(experts: sel.indices, gates: sel.weights, probs: sel.probs, logits: logits)
    }
}
