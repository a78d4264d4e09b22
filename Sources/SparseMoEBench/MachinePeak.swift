import SparseMoE

/// The machine's practical fp32 matrix-product peak, and model-FLOPs utilisation (MFU)
/// against it.
///
/// MFU = (model FLOPs / second) / peak, where model FLOPs are the analytic count
/// (`ModelAccounting`: forward, or training = 3 × forward, per token × tokens), not what
/// the kernels executed: padding, recomputation and dropped tokens do not raise it.
/// The peak is measured, not read from a data sheet: the best of a few large square
/// sgemm calls through the library's `matmul` op on each float32 kernel this CPU runs
/// (OpenBLAS, and ours where the CPU has AVX-512: `Float32Kernel.available`), so MFU says how
/// close the whole model comes to the fastest GEMM the same machine runs.
public enum MachinePeak {
    /// GFLOP/s of the best of `repeats` timed `size`×`size`×`size` products (2·size³ FLOPs
    /// each) after one untimed warm-up, on `threads` threads (nil: the current
    /// `Threads.count`; the previous count is restored after). About 2·size³·(repeats + 1)
    /// FLOPs of work: ≈ 8.6 GFLOP, well under a second, at the default sizes.
    public static func measureSGEMM(threads: Int? = nil, size: Int = 1024, repeats: Int = 3) throws -> Double {
        guard repeats >= 1 else { throw SparseMoEError.invalidArgument(op: "MachinePeak.measureSGEMM", message: "repeats must be ≥ 1, got \(repeats)") }
        if let n = threads, n < 1 {
            throw SparseMoEError.invalidArgument(op: "MachinePeak.measureSGEMM", message: "threads must be ≥ 1, got \(n)")
        }
        let probe = try SGEMMProbe(size: size)
        return Threads.with(threads ?? Threads.count) {
            _ = probe.gflops(repeats: 1)  // warm-up
            return probe.gflops(repeats: repeats)
        }
    }

    /// Fixed random `size`×`size` matrices whose product measures the sgemm rate again and
    /// again, e.g. once beside every timed step of a benchmark, so that each step is held
    /// against the machine's speed of that moment rather than of another minute.
    public struct SGEMMProbe {
        public let size: Int
        private let a: Tensor, b: Tensor

        public init(size: Int = 1024) throws {
            guard size >= 1 else { throw SparseMoEError.invalidArgument(op: "MachinePeak.SGEMMProbe", message: "size must be ≥ 1, got \(size)") }
            self.size = size
            var rng = RandomGenerator(seed: 1)
            a = Tensor.uniform([size, size], low: -1, high: 1, using: &rng)
            b = Tensor.uniform([size, size], low: -1, high: 1, using: &rng)
        }

        /// GFLOP/s of the fastest of `repeats` products (2·size³ FLOPs each) on each float32
        /// kernel this CPU runs, on the current `Threads.count`.
        public func gflops(repeats: Int = 1) -> Double {
            let clock = ContinuousClock()
            var best = Double.infinity
            for kernel in Float32Kernel.available {
                Float32Kernel.with(kernel) {
                    for _ in 0..<max(1, repeats) {
                        let start = clock.now
                        _ = matmul(a, b)
                        best = min(best, seconds(clock.now - start))
                    }
                }
            }
            return 2 * Double(size) * Double(size) * Double(size) / max(best, 1e-9) / 1e9
        }
    }

    /// Paired MFU: the median over rounds of (`flops` / `stepMS[i]`) / `peakGFLOPS[i]`, each
    /// step against the peak measured beside it. A machine whose speed drifts (other tenants,
    /// clocks) moves both numbers of a round together, so the ratio holds where MFU against
    /// one peak measured at another moment does not. NaN without rounds.
    public static func pairedModelFLOPsUtilization(flops: Double, stepMS: [Double], peakGFLOPS: [Double]) throws -> Double {
        guard stepMS.count == peakGFLOPS.count else {
            throw SparseMoEError.invalidArgument(op: "MachinePeak.pairedModelFLOPsUtilization",
                                                 message: "one peak per step expected, got \(stepMS.count) steps and \(peakGFLOPS.count) peaks")
        }
        let ratios = try zip(stepMS, peakGFLOPS).map { try modelFLOPsUtilization(modelFLOPs: flops, seconds: $0 / 1e3, peakGFLOPS: $1) }
        return medianOf(ratios)
    }

    /// Achieved GFLOP/s: `flops` done in `seconds`.
    public static func achievedGFLOPS(flops: Double, seconds: Double) throws -> Double {
        guard flops >= 0, flops.isFinite else {
            throw SparseMoEError.invalidArgument(op: "MachinePeak.achievedGFLOPS", message: "flops must be finite and ≥ 0, got \(flops)")
        }
        guard seconds > 0, seconds.isFinite else {
            throw SparseMoEError.invalidArgument(op: "MachinePeak.achievedGFLOPS", message: "seconds must be finite and > 0, got \(seconds)")
        }
        return flops / seconds / 1e9
    }

    /// Model-FLOPs utilisation, a fraction: (`modelFLOPs` / `seconds`) / (`peakGFLOPS` · 10⁹).
    /// E.g. 3 × forward FLOPs per token × tokens of a training step, its wall time, and
    /// `measureSGEMM()` on the same thread count.
    public static func modelFLOPsUtilization(modelFLOPs: Double, seconds: Double, peakGFLOPS: Double) throws -> Double {
        guard peakGFLOPS > 0, peakGFLOPS.isFinite else {
            throw SparseMoEError.invalidArgument(op: "MachinePeak.modelFLOPsUtilization", message: "peak must be finite and > 0 GFLOP/s, got \(peakGFLOPS)")
        }
        return try achievedGFLOPS(flops: modelFLOPs, seconds: seconds) / peakGFLOPS
    }

    package static func seconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
