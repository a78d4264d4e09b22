/// An explicit, seeded pseudo-random generator (xoshiro256**, seeded by SplitMix64).
///
/// There is no global generator: every function that draws random numbers takes
/// one `inout`. The same seed gives the same sequence on every machine.
public struct RandomGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    /// Set for the generator of `placeholder()`.
    package private(set) var isPlaceholder = false

    /// A generator under which `Tensor.normal`/`truncatedNormal` give placeholder
    /// tensors (zeros, no resident memory until written): for building a model whose
    /// parameters loading will fill or replace, without initialising them first.
    package static func placeholder() -> RandomGenerator {
        var g = RandomGenerator(seed: 0)
        g.isPlaceholder = true
        return g
    }

    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// The generator's full state (4 words), for checkpoints: `RandomGenerator(state:)`
    /// continues the sequence exactly.
    public var state: [UInt64] { [s.0, s.1, s.2, s.3] }

    /// Restores a generator from `state`. Throws unless it holds 4 words, not all zero.
    public init(state: [UInt64]) throws {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else {
            throw SparseMoEError.invalidArgument(op: "RandomGenerator", message: "state must be 4 words, not all zero, got \(state)")
        }
        s = (state[0], state[1], state[2], state[3])
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits (exactly representable in Float).
    public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * uniform()
    }

    /// Standard normal N(0, 1) by the Box–Muller transform (one value per call).
    public mutating func normal() -> Float {
        var u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    /// Normal N(mean, std²) truncated to [mean + a·std, mean + b·std] by rejection.
    public mutating func truncatedNormal(mean: Float = 0, std: Float = 1, a: Float = -2, b: Float = 2) -> Float {
        precondition(a < b, "truncatedNormal: empty interval")
        while true {
            let z = normal()
            if z >= a && z <= b { return mean + std * z }
        }
    }

    /// Uniform integer in 0..<n.
    public mutating func int(below n: Int) -> Int {
        precondition(n > 0)
        return Int(next() % UInt64(n))
    }
}

@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }

import Foundation

extension Tensor {
    /// Uniform [low, high) samples.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, using rng: inout RandomGenerator,
                               requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        let p = t.floats
        for i in 0..<t.count { p[i] = rng.uniform(low, high) }
        return t
    }

    /// Normal samples N(mean, std²).
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, using rng: inout RandomGenerator,
                              requiresGrad: Bool = false) -> Tensor {
        if rng.isPlaceholder { return Tensor(placeholder: shape, requiresGrad: requiresGrad) }
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        let p = t.floats
        for i in 0..<t.count { p[i] = mean + std * rng.normal() }
        return t
    }

    /// Normal samples truncated to [mean − 2·std, mean + 2·std] (the usual weight init).
    public static func truncatedNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                       using rng: inout RandomGenerator, requiresGrad: Bool = false) -> Tensor {
        if rng.isPlaceholder { return Tensor(placeholder: shape, requiresGrad: requiresGrad) }
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        let p = t.floats
        for i in 0..<t.count { p[i] = rng.truncatedNormal(mean: mean, std: std) }
        return t
    }
}
