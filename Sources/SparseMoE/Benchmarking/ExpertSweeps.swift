/// One point of a sweep: the `routedExperts` op (router-chosen routing unless stated) and its
/// grouped-sgemm roofline, forward and forward + backward (snake_case JSON).
public struct SweepPoint: Codable, Sendable {
    public var workload: String
    public var tokens: Int, width: Int, hidden: Int, experts: Int, topK: Int
    public var threads: Int
    public var forwardMS: Double, forwardBackwardMS: Double
    public var forwardGFLOPS: Double, forwardBackwardGFLOPS: Double
    public var rooflineGroupedGFLOPS: Double, rooflineGroupedForwardBackwardGFLOPS: Double
    public var rooflineGroupedForwardMS: Double, rooflineGroupedForwardBackwardMS: Double

    public var forwardVsRoofline: Double { forwardGFLOPS / rooflineGroupedGFLOPS }
    public var forwardBackwardVsRoofline: Double { forwardBackwardGFLOPS / rooflineGroupedForwardBackwardGFLOPS }

    enum CodingKeys: String, CodingKey {
        case workload, tokens, width, hidden, experts, threads
        case topK = "top_k", forwardMS = "forward_ms", forwardBackwardMS = "forward_backward_ms"
        case forwardGFLOPS = "forward_gflops", forwardBackwardGFLOPS = "forward_backward_gflops"
        case rooflineGroupedGFLOPS = "roofline_grouped_gflops"
        case rooflineGroupedForwardBackwardGFLOPS = "roofline_grouped_forward_backward_gflops"
        case rooflineGroupedForwardMS = "roofline_grouped_forward_ms"
        case rooflineGroupedForwardBackwardMS = "roofline_grouped_forward_backward_ms"
    }
}

/// One workload at 1 thread and at `threads` threads: speedup = t₁ / tₙ (medians),
/// efficiency = speedup / n; the paired speedups are the median over rounds of t₁ / tₙ
/// measured back to back in the same round, so slow drift of the machine cancels.
public struct ThreadScalingPoint: Codable, Sendable {
    public var workload: String
    public var threads: Int
    public var single: SweepPoint
    public var multi: SweepPoint
    public var forwardSpeedupPaired: Double
    public var forwardBackwardSpeedupPaired: Double
    public var forwardSpeedup: Double { single.forwardMS / multi.forwardMS }
    public var forwardBackwardSpeedup: Double { single.forwardBackwardMS / multi.forwardBackwardMS }
    public var rooflineForwardSpeedup: Double { single.rooflineGroupedForwardMS / multi.rooflineGroupedForwardMS }
    public var rooflineForwardBackwardSpeedup: Double { single.rooflineGroupedForwardBackwardMS / multi.rooflineGroupedForwardBackwardMS }
}

/// The sweeps of `moe bench --sweep`.
public enum ExpertSweep: String, CaseIterable, Sendable {
    /// E = 1…128 at fixed active FLOPs: T = 2048, C = 512, K·F = 1024 (E = 1: K = 1, F = 1024,
    /// a dense FFN; E ≥ 2: K = 2, F = 512). Total parameters grow with E, the cost should not.
    case experts
    /// K = 1, 2, 4, 8 on mixtral-like (T = 2048, C = 512, F = 1024, E = 8): cost ∝ K.
    case topk
    /// T = 256 … 8192 on mixtral-like: small T means few rows per expert.
    case tokens
    /// The fixed workloads on 1 thread and on the current thread count.
    case threads

    /// The workloads of a sweep (not `threads`, which uses `ExpertWorkload.all`).
    public var workloads: [ExpertWorkload] {
        get throws {
            let base = ExpertWorkload.mixtralLike
            switch self {
            case .experts:
                return try [1, 2, 4, 8, 16, 32, 64, 128].map { e in
                    try ExpertWorkload(name: "E=\(e)", tokens: 2048, width: 512, hidden: e == 1 ? 1024 : 512,
                                       experts: e, topK: e == 1 ? 1 : 2)
                }
            case .topk: return try [1, 2, 4, 8].map { (kk: Int) in try base.with(name: "K=\(kk)", topK: kk) }
            case .tokens: return try [256, 512, 1024, 2048, 4096, 8192].map { (tt: Int) in try base.with(name: "T=\(tt)", tokens: tt) }
            case .threads: return ExpertWorkload.all.filter { $0.capacityFactor == nil }
            }
        }
    }

    /// Measures every point (op with router routing vs the balanced roofline).
    public func run(runs: Int, progress: (String) -> Void = { _ in }) throws -> [SweepPoint] {
        try workloads.map { w in
            progress("sweep \(rawValue): \(w.name)")
            return try ExpertBenchmark.quick(w, runs: runs)[0]
        }
    }

    /// The thread-scaling sweep: each workload on 1 thread and on `threads`, runs interleaved.
    public static func threadScaling(threads: Int, runs: Int, progress: (String) -> Void = { _ in }) throws -> [ThreadScalingPoint] {
        try ExpertSweep.threads.workloads.map { w in
            progress("sweep threads: \(w.name) on 1 and \(threads) threads")
            let m = try ExpertBenchmark.quickTimed(w, runs: runs, threadCounts: [1, threads])
            func paired(_ s: [TimingSummary]) -> Double {
                TimingSummary(runsMS: zip(s[0].runsMS, s[1].runsMS).map { $0 / $1 }).medianMS
            }
            return ThreadScalingPoint(workload: w.name, threads: threads, single: m.points[0], multi: m.points[1],
                                      forwardSpeedupPaired: paired(m.forward), forwardBackwardSpeedupPaired: paired(m.forwardBackward))
        }
    }
}
