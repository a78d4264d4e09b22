
/// Wall-clock timings of repeated runs: the median is the reported number; the spread
/// (max − min) / median says how noisy the machine was while measuring.
public struct TimingSummary: Codable, Sendable, Equatable {
    /// Each timed run, milliseconds, in order.
    public var runsMS: [Double]

    public init(runsMS: [Double]) { self.runsMS = runsMS }

    public var medianMS: Double {
        let s = runsMS.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    public var minMS: Double { runsMS.min() ?? .nan }
    /// (max − min) / median.
    public var spread: Double { runsMS.isEmpty ? .nan : ((runsMS.max()! - runsMS.min()!) / medianMS) }

    /// Runs `body` `warmup` times untimed, then `runs` times timed; `setup` runs untimed before
    /// every run (for example zeroing gradients in place).
    public static func measure(warmup: Int, runs: Int, setup: () throws -> Void = {},
                               _ body: () throws -> Void) rethrows -> TimingSummary {
        for _ in 0..<max(0, warmup) { try setup(); try body() }
        let clock = ContinuousClock()
        var times: [Double] = []
        for _ in 0..<max(1, runs) {
            try setup()
            let start = clock.now
            try body()
            times.append(MachinePeak.seconds(clock.now - start) * 1e3)
        }
        return TimingSummary(runsMS: times)
    }
}

/// Median of `values` (mean of the middle two for an even count; NaN when empty).
func medianOf(_ values: [Double]) -> Double { TimingSummary(runsMS: values).medianMS }

/// GFLOP/s of `flops` done in `ms` milliseconds.
func gflops(_ flops: Double, ms: Double) -> Double { ms > 0 ? flops / (ms * 1e6) : .nan }
