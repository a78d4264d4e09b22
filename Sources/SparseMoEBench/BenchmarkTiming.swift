import SparseMoE

/// Wall-clock timings of repeated runs: the median is the reported number; the spread
/// (max − min) / median says how noisy the machine was while measuring.
public struct TimingSummary: Codable, Sendable, Equatable {
    /// Each timed run, milliseconds, in order.
    public var runsMS: [Double]
    /// What the process did during each timed run (same order; empty when not recorded).
    public var counters: [RunCounters]

    public init(runsMS: [Double], counters: [RunCounters] = []) {
        self.runsMS = runsMS
        self.counters = counters
    }

    public var medianMS: Double {
        let s = runsMS.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    public var minMS: Double { runsMS.min() ?? .nan }
    /// (max − min) / median.
    public var spread: Double { runsMS.isEmpty ? .nan : ((runsMS.max()! - runsMS.min()!) / medianMS) }

    /// The `p` quantile of the runs (0 ≤ p ≤ 1), see `percentileOf`.
    public func percentileMS(_ p: Double) -> Double { percentileOf(runsMS, p) }

    /// Runs `body` `warmup` times untimed, then `runs` times timed; `setup` runs untimed before
    /// every run (for example zeroing gradients in place). `park`: also park the worker threads
    /// (`Threads.park()`) before every timed run, untimed.
    public static func measure(warmup: Int, runs: Int, park: Bool = false, setup: () throws -> Void = {},
                               _ body: () throws -> Void) rethrows -> TimingSummary {
        for _ in 0..<max(0, warmup) { try setup(); try body() }
        var timer = RunTimer()
        for _ in 0..<max(1, runs) {
            try setup()
            if park { Threads.park() }
            try timer.time(body)
        }
        return timer.summary
    }
}

/// Times runs one by one, with their `RunCounters`.
public struct RunTimer {
    public private(set) var summary = TimingSummary(runsMS: [])
    private let clock = ContinuousClock()

    public init() {}

    /// Runs `body` once, timed; returns its milliseconds.
    @discardableResult
    public mutating func time(_ body: () throws -> Void) rethrows -> Double {
        let busy = RunCounters.busyOtherThreads()
        let before = RunCounters.now()
        let start = clock.now
        try body()
        let ms = MachinePeak.seconds(clock.now - start) * 1e3
        summary.runsMS.append(ms)
        summary.counters.append(RunCounters.delta(from: before, to: RunCounters.now(), busy: busy))
        return ms
    }
}

/// Median of `values` (mean of the middle two for an even count; NaN when empty).
func medianOf(_ values: [Double]) -> Double { TimingSummary(runsMS: values).medianMS }

/// The `p` quantile of `values` (0 ≤ p ≤ 1, clamped), interpolated linearly between the
/// closest ranks: rank p·(n − 1) of the sorted values, counted from 0 (NumPy's default
/// `linear` method). p = 0.5 is the median, 0 the minimum, 1 the maximum. NaN when empty.
public func percentileOf(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty, !p.isNaN else { return .nan }
    let s = values.sorted()
    let rank = min(max(p, 0), 1) * Double(s.count - 1)
    let lo = Int(rank.rounded(.down)), hi = min(lo + 1, s.count - 1)
    return s[lo] + (rank - Double(lo)) * (s[hi] - s[lo])
}

/// GFLOP/s of `flops` done in `ms` milliseconds.
func gflops(_ flops: Double, ms: Double) -> Double { ms > 0 ? flops / (ms * 1e6) : .nan }
