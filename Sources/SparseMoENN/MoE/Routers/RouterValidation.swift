import SparseMoECore

/// Field checks shared by the router initialisers; errors name the config field.
enum RouterConfigCheck {
    static func numExperts(_ e: Int) throws {
        guard e >= 1 else { throw SparseMoEError.invalidConfig(field: "num_experts", message: "must be ≥ 1, got \(e)") }
    }

    static func topK(_ k: Int, numExperts e: Int) throws {
        guard k >= 1 else { throw SparseMoEError.invalidConfig(field: "top_k", message: "must be ≥ 1, got \(k)") }
        guard k <= e else { throw SparseMoEError.invalidConfig(field: "top_k", message: "must be ≤ num_experts (\(e)), got \(k)") }
    }

    static func hiddenSize(_ c: Int) throws {
        guard c >= 1 else { throw SparseMoEError.invalidConfig(field: "hidden_size", message: "must be ≥ 1, got \(c)") }
    }

    /// x must be `[T, C]` with C the router's hidden size.
    static func input(_ x: Tensor, hiddenSize c: Int, router: String) throws {
        guard x.rank == 2, x.shape[1] == c else {
            throw SparseMoEError.shapeMismatch(op: router, message: "input must be [T, \(c)] (hidden_size \(c)), got \(x.shape)")
        }
    }
}

/// Router weight initialisation: N(0, std²) truncated at ±2σ, std = 1/√C by default.
func initRouterWeight(numExperts: Int, hiddenSize: Int, std: Float?, rng: inout RandomGenerator) -> Tensor {
    Tensor.truncatedNormal([numExperts, hiddenSize], std: std ?? 1 / Float(hiddenSize).squareRoot(), using: &rng, requiresGrad: true)
}
