import SparseMoECore

/// Switch Transformer's multiplicative jitter: x ⊙ U(1 − ε, 1 + ε), a fresh sample
/// per element. Differentiable in x (the noise is a constant).
func applyJitter(_ x: Tensor, epsilon: Float, rng: inout RandomGenerator) throws -> Tensor {
    let noise = Tensor.uniform(x.shape, low: 1 - epsilon, high: 1 + epsilon, using: &rng)
    return multiply(x, noise)
}
