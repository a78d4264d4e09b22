import SparseMoE

/// One point of a sweep: the `routedExperts` op (router-chosen routing unless stated) and its
/// grouped-sgemm roofline, forward and forward + backward (snake_case JSON).
public struct SweepPoint: Codable, Sendable {
    public var workload: String
    public var tokens: Int, hiddenSize: Int, intermediateSize: Int, numExperts: Int, topK: Int
    public var threads: Int
    public var forwardMS: Double, forwardBackwardMS: Double
    public var forwardGFLOPS: Double, forwardBackwardGFLOPS: Double
    public var rooflineGroupedGFLOPS: Double, rooflineGroupedForwardBackwardGFLOPS: Double
    public var rooflineGroupedForwardMS: Double, rooflineGroupedForwardBackwardMS: Double

    public var forwardVsRoofline: Double { forwardGFLOPS / rooflineGroupedGFLOPS }
    public var forwardBackwardVsRoofline: Double { forwardBackwardGFLOPS / rooflineGroupedForwardBackwardGFLOPS }

    /// Field by field median of measurements of the same point (labels from the first).
    static func median(_ points: [SweepPoint]) -> SweepPoint {
        var m = points[0]
        func med(_ f: (SweepPoint) -> Double) -> Double { medianOf(points.map(f)) }
        m.forwardMS = med(\.forwardMS)
        m.forwardBackwardMS = med(\.forwardBackwardMS)
        m.forwardGFLOPS = med(\.forwardGFLOPS)
        m.forwardBackwardGFLOPS = med(\.forwardBackwardGFLOPS)
        m.rooflineGroupedGFLOPS = med(\.rooflineGroupedGFLOPS)
        m.rooflineGroupedForwardBackwardGFLOPS = med(\.rooflineGroupedForwardBackwardGFLOPS)
        m.rooflineGroupedForwardMS = med(\.rooflineGroupedForwardMS)
        m.rooflineGroupedForwardBackwardMS = med(\.rooflineGroupedForwardBackwardMS)
        return m
    }

    enum CodingKeys: String, CodingKey {
        case workload, tokens, hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numExperts = "num_experts", threads
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
    /// Number of repeated sweeps the numbers are medians over.
    public var sweeps: Int
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
                    try ExpertWorkload(name: "E=\(e)", tokens: 2048, hiddenSize: 512, intermediateSize: e == 1 ? 1024 : 512,
                                       numExperts: e, topK: e == 1 ? 1 : 2)
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
    /// With `repeats` > 1 the whole sweep runs that many times (spread over time, so that one
    /// disturbed stretch moves one repeat, not every workload's number); each reported time is
    /// the median over the repeats of the per-repeat medians, and the paired speedups the median
    /// over every round of every repeat.
    public static func threadScaling(threads: Int, runs: Int, repeats: Int = 1,
                                     progress: (String) -> Void = { _ in }) throws -> [ThreadScalingPoint] {
        let workloads = try ExpertSweep.threads.workloads
        var perRepeat: [[ThreadScalingPoint]] = []
        var pairedF = [[Double]](repeating: [], count: workloads.count), pairedB = pairedF
        for r in 0..<max(1, repeats) {
            let of = repeats > 1 ? " (sweep \(r + 1) of \(repeats))" : ""
            perRepeat.append(try workloads.enumerated().map { i, w in
                progress("sweep threads: \(w.name) on 1 and \(threads) threads\(of)")
                let m = try ExpertBenchmark.quickTimed(w, runs: runs, threadCounts: [1, threads])
                let f = zip(m.forward[0].runsMS, m.forward[1].runsMS).map { $0 / $1 }
                let b = zip(m.forwardBackward[0].runsMS, m.forwardBackward[1].runsMS).map { $0 / $1 }
                pairedF[i] += f
                pairedB[i] += b
                return ThreadScalingPoint(workload: w.name, threads: threads, sweeps: 1, single: m.points[0], multi: m.points[1],
                                          forwardSpeedupPaired: medianOf(f), forwardBackwardSpeedupPaired: medianOf(b))
            })
        }
        if perRepeat.count == 1 { return perRepeat[0] }
        return workloads.indices.map { i in
            let ps = perRepeat.map { $0[i] }
            return ThreadScalingPoint(workload: ps[0].workload, threads: threads, sweeps: ps.count,
                                      single: .median(ps.map(\.single)), multi: .median(ps.map(\.multi)),
                                      forwardSpeedupPaired: medianOf(pairedF[i]), forwardBackwardSpeedupPaired: medianOf(pairedB[i]))
        }
    }
}
