import Foundation

extension Tensor {
    /// A float32 tensor of i.i.d. uniform values on [−√3·std, √3·std] (mean 0, standard
    /// deviation `std`), element i drawn from a SplitMix64 hash of (seed, i): the same seed
    /// gives the same values on every machine and thread count, and the fill runs in
    /// parallel chunks (≈ 1 ns per value per core). For random weights at real sizes, where
    /// `truncatedNormal` would take minutes.
    package static func hashedUniform(_ shape: [Int], std: Float, seed: UInt64) -> Tensor {
        let t = Tensor(zeros: shape)
        let n = t.count
        nonisolated(unsafe) let p = t.floats  // chunks write disjoint ranges
        let scale = std * Float(3).squareRoot() * 2 / Float(1 << 24)
        let chunk = 1 << 16
        DispatchQueue.concurrentPerform(iterations: (n + chunk - 1) / chunk) { c in
            var z = seed &+ UInt64(c * chunk) &* 0x9E37_79B9_7F4A_7C15
            for i in (c * chunk)..<min(n, (c + 1) * chunk) {
                z &+= 0x9E37_79B9_7F4A_7C15
                var x = z
                x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
                x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
                x ^= x >> 31
                p[i] = (Float(x >> 40) - Float(1 << 23)) * scale
            }
        }
        return t
    }
}
