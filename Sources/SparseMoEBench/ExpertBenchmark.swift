import Foundation
import SparseMoE

/// How `ExpertBenchmark.run` measures.
public struct ExpertBenchmarkOptions: Sendable {
    /// Timed runs per measurement (the median is reported).
    public var runs = 9
    /// Untimed runs before timing (page faults, BLAS buffers, scratch pool).
    public var warmup = 1
    /// Also time the whole MoE layer (router + experts).
    public var layer = true
    /// Also time forward + backward with gradient buffers dropped before every run, as
    /// `Trainer.trainStep` does with `zeroGrad()` (fresh buffers page-fault on first touch).
    public var freshGradients = true
    /// Also time the dense FFN with the same active parameters (hidden K·F).
    public var denseActive = true
    /// Also time the dense FFN with the same total parameters (hidden E·F): the slowest part.
    public var denseTotal = true
    /// Timed runs of the same-total dense FFN (it costs E/K times the MoE).
    public var denseTotalRuns = 2
    public var seed: UInt64 = 1
    /// Park the worker threads (`Threads.park()`) before every timed run, untimed, so that no
    /// runtime's workers still spin from the previous run (see docs/benchmarks.md, "Stable
    /// numbers"). Off only to show what that interference does.
    public var parkThreads = true
    /// Also time the machine control (`MachineControl`) in the same rounds: its spread is the
    /// machine's own noise, and a warning says when a measurement's spread is shared with it.
    public var machineControl = true

    public init() {}
}

/// One workload's numbers (`moe bench --json` writes this object, snake_case keys).
///
/// Which is which:
/// - `forward_ms`, `forward_backward_ms`: the `routedExperts` op (gather, expert GEMMs,
///   activation, combine; backward incl. dx, dgates and weight gradients) with the routing a
///   real softmax top-k router chose on random inputs; the router itself is not timed.
///   Gradient buffers are kept between runs and zeroed in place, untimed.
/// - `balanced_*`: the same op with perfectly balanced routing (the roofline's condition).
/// - `layer_*`: the whole `MoELayer`: router matmul + softmax top-k (+ capacity) + experts.
/// - `roofline_grouped_*`: the expert GEMMs alone with balanced routing as OpenBLAS sgemm
///   calls (`GroupedGEMMReference`), the better of experts-in-sequence and experts-in-parallel.
/// - `roofline_dense_gflops`: one dense sgemm `[T·K, C] · [C, 3F]` of the forward's FLOPs.
/// GFLOP/s always count useful FLOPs (6·C·F·K·T forward, 18·C·F·K·T forward + backward), so
/// dropped tokens (capacity factor) do not count as done work.
public struct ExpertBenchmarkResult: Codable, Sendable {
    public var workload: String
    public var tokens: Int, hiddenSize: Int, intermediateSize: Int, numExperts: Int, topK: Int
    public var capacityFactor: Double?
    public var threads: Int
    public var runs: Int
    public var usefulForwardGFLOP: Double

    public var forwardMS: Double
    public var forwardBackwardMS: Double
    public var forwardGFLOPS: Double
    public var forwardBackwardGFLOPS: Double
    /// (max − min) / median of the op's forward and forward + backward runs.
    public var forwardSpread: Double
    public var forwardBackwardSpread: Double
    /// The schedule the op chose (`parallel` or `sequential`).
    public var schedule: String
    /// Dropped (token, slot) pairs / (T·K) under the router's routing.
    public var droppedFraction: Double
    /// Rows of the busiest expert / mean rows per expert under the router's routing.
    public var maxExpertLoad: Double

    public var balancedForwardMS: Double
    public var balancedForwardBackwardMS: Double
    public var layerForwardMS: Double?
    public var layerForwardBackwardMS: Double?
    /// Forward + backward when every run starts with dropped gradient buffers (`zeroGrad()`).
    public var forwardBackwardFreshGradMS: Double?

    public var rooflineGroupedForwardMS: Double
    public var rooflineGroupedForwardBackwardMS: Double
    /// Forward GFLOP/s of the better grouped-sgemm schedule.
    public var rooflineGroupedGFLOPS: Double
    public var rooflineGroupedForwardBackwardGFLOPS: Double
    public var rooflineGroupedSequentialGFLOPS: Double
    public var rooflineGroupedParallelGFLOPS: Double
    public var rooflineDenseGFLOPS: Double

    /// Op GFLOP/s ÷ grouped roofline GFLOP/s (medians).
    public var forwardVsRoofline: Double
    public var forwardBackwardVsRoofline: Double
    /// Median over runs of (roofline time ÷ op time) measured back to back in the same run.
    public var forwardVsRooflinePaired: Double
    public var forwardBackwardVsRooflinePaired: Double
    public var balancedForwardVsRoofline: Double
    public var balancedForwardBackwardVsRoofline: Double
    /// Op GFLOP/s ÷ dense sgemm GFLOP/s.
    public var forwardVsDense: Double
    public var forwardBackwardVsDense: Double

    /// Dense SwiGLU FFN, hidden K·F (same active parameters) and E·F (same total parameters).
    public var denseActiveForwardMS: Double?
    public var denseActiveForwardBackwardMS: Double?
    public var denseTotalForwardMS: Double?
    public var denseTotalForwardBackwardMS: Double?

    /// Every interleaved measurement by name (`forward`, `forward_backward`,
    /// `roofline_forward_sequential`, …): its runs in order with their context switches and
    /// page faults.
    public var measurements: [String: MeasurementRecord]?
    /// Measurements whose spread exceeds `ExpertBenchmark.spreadWarningThreshold` (10 %).
    public var warnings: [String]?
    /// (max − min) / median of the machine control's runs, interleaved with the forward and
    /// with the forward + backward measurements (`MachineControl`): above 10 %, the machine
    /// itself was noisy in those rounds. nil when not measured.
    public var controlForwardSpread: Double?
    public var controlForwardBackwardSpread: Double?

    public var forwardBackwardGFLOPSFresh: Double? {
        forwardBackwardFreshGradMS.map { usefulForwardGFLOP * 3e3 / $0 }
    }

    enum CodingKeys: String, CodingKey {
        case workload, tokens, hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numExperts = "num_experts", threads, runs, schedule
        case topK = "top_k", capacityFactor = "capacity_factor", usefulForwardGFLOP = "useful_forward_gflop"
        case forwardMS = "forward_ms", forwardBackwardMS = "forward_backward_ms"
        case forwardGFLOPS = "forward_gflops", forwardBackwardGFLOPS = "forward_backward_gflops"
        case forwardSpread = "forward_spread", forwardBackwardSpread = "forward_backward_spread"
        case droppedFraction = "dropped_fraction", maxExpertLoad = "max_expert_load"
        case balancedForwardMS = "balanced_forward_ms", balancedForwardBackwardMS = "balanced_forward_backward_ms"
        case layerForwardMS = "layer_forward_ms", layerForwardBackwardMS = "layer_forward_backward_ms"
        case forwardBackwardFreshGradMS = "forward_backward_fresh_grad_ms"
        case rooflineGroupedForwardMS = "roofline_grouped_forward_ms"
        case rooflineGroupedForwardBackwardMS = "roofline_grouped_forward_backward_ms"
        case rooflineGroupedGFLOPS = "roofline_grouped_gflops"
        case rooflineGroupedForwardBackwardGFLOPS = "roofline_grouped_forward_backward_gflops"
        case rooflineGroupedSequentialGFLOPS = "roofline_grouped_sequential_gflops"
        case rooflineGroupedParallelGFLOPS = "roofline_grouped_parallel_gflops"
        case rooflineDenseGFLOPS = "roofline_dense_gflops"
        case forwardVsRoofline = "forward_vs_roofline", forwardBackwardVsRoofline = "forward_backward_vs_roofline"
        case forwardVsRooflinePaired = "forward_vs_roofline_paired"
        case forwardBackwardVsRooflinePaired = "forward_backward_vs_roofline_paired"
        case balancedForwardVsRoofline = "balanced_forward_vs_roofline"
        case balancedForwardBackwardVsRoofline = "balanced_forward_backward_vs_roofline"
        case forwardVsDense = "forward_vs_dense", forwardBackwardVsDense = "forward_backward_vs_dense"
        case denseActiveForwardMS = "dense_active_forward_ms", denseActiveForwardBackwardMS = "dense_active_forward_backward_ms"
        case denseTotalForwardMS = "dense_total_forward_ms", denseTotalForwardBackwardMS = "dense_total_forward_backward_ms"
        case measurements, warnings
        case controlForwardSpread = "control_forward_spread", controlForwardBackwardSpread = "control_forward_backward_spread"
    }
}

/// One measurement's timed runs, in order, with what the process did during each
/// (`RunCounters`, getrusage of the whole process).
public struct MeasurementRecord: Codable, Sendable, Equatable {
    public var runsMS: [Double]
    public var medianMS: Double
    /// (max − min) / median.
    public var spread: Double
    public var voluntaryContextSwitches: [Int]
    public var involuntaryContextSwitches: [Int]
    public var minorFaults: [Int]
    /// Other threads of the process already running when each run started.
    public var busyThreadsAtStart: [Int]

    public init(_ t: TimingSummary) {
        runsMS = t.runsMS
        medianMS = t.medianMS
        spread = t.spread
        voluntaryContextSwitches = t.counters.map(\.voluntaryContextSwitches)
        involuntaryContextSwitches = t.counters.map(\.involuntaryContextSwitches)
        minorFaults = t.counters.map(\.minorFaults)
        busyThreadsAtStart = t.counters.map(\.busyThreadsAtStart)
    }

    enum CodingKeys: String, CodingKey {
        case runsMS = "runs_ms", medianMS = "median_ms", spread
        case voluntaryContextSwitches = "voluntary_ctxt", involuntaryContextSwitches = "involuntary_ctxt"
        case minorFaults = "minor_faults", busyThreadsAtStart = "busy_threads_at_start"
    }
}

/// Measures the MoE expert computation of a workload against its references, all in the
/// same process and interleaved run by run (op, roofline, dense sgemm back to back), so a
/// load that comes and goes on a shared machine hits them alike. See `ExpertBenchmarkResult`.
public enum ExpertBenchmark {
    /// Runs every measurement of `workload` on `Threads.count` threads. `progress` gets one
    /// short line per phase (the CLI prints it on stderr).
    public static func run(_ w: ExpertWorkload, options o: ExpertBenchmarkOptions = ExpertBenchmarkOptions(),
                           progress: (String) -> Void = { _ in }) throws -> ExpertBenchmarkResult {
        var rng = RandomGenerator(seed: o.seed)
        let (t, c, f, e, k) = (w.tokens, w.hiddenSize, w.intermediateSize, w.numExperts, w.topK)
        progress("\(w.name): setting up (T=\(t) C=\(c) F=\(f) E=\(e) K=\(k)\(w.capacityFactor.map { " capacity \($0)" } ?? ""))")
        let harness = try ExpertHarness(w, rng: &rng)
        let roof = try GroupedGEMMReference(numExperts: e, rowsPerExpert: w.balancedRowsPerExpert, hiddenSize: c, intermediateSize: f)
        let dense = try DenseGEMMReference(m: t * k, n: 3 * f, k: c)
        let control = o.machineControl ? try MachineControl() : nil

        // Forward: op (router routing), op (balanced), roofline both schedules, dense sgemm, layer.
        progress("\(w.name): forward (\(o.warmup) warm-up + \(o.runs) runs)")
        var fwd: [Probe] = [
            Probe { try harness.opForward(balanced: false) },
            Probe { try harness.opForward(balanced: true) },
            Probe { roof.run(backward: false, schedule: .sequential) },
            Probe { roof.run(backward: false, schedule: .parallel) },
            Probe { dense.run() },
        ]
        if o.layer { fwd.append(Probe { try harness.layerForward() }) }
        if let control { fwd.append(Probe { control.run() }) }
        let f0 = try interleaved(fwd, warmup: o.warmup, runs: o.runs, park: o.parkThreads)

        progress("\(w.name): forward + backward")
        var fb: [Probe] = [
            Probe(setup: harness.zeroGradsInPlace) { try harness.opForwardBackward(balanced: false) },
            Probe(setup: harness.zeroGradsInPlace) { try harness.opForwardBackward(balanced: true) },
            Probe { roof.run(backward: true, schedule: .sequential) },
            Probe { roof.run(backward: true, schedule: .parallel) },
        ]
        if o.layer { fb.append(Probe(setup: harness.zeroGradsInPlace) { try harness.layerForwardBackward() }) }
        if o.freshGradients { fb.append(Probe(setup: harness.dropGrads) { try harness.opForwardBackward(balanced: false) }) }
        if let control { fb.append(Probe { control.run() }) }
        let b0 = try interleaved(fb, warmup: o.warmup, runs: o.runs, park: o.parkThreads)

        let useful = w.usefulForwardFLOPs, usefulFB = w.usefulForwardBackwardFLOPs
        let roofF = roof.flops(backward: false), roofFB = roof.flops(backward: true)
        let rSeqF = gflops(roofF, ms: f0[2].medianMS), rParF = gflops(roofF, ms: f0[3].medianMS)
        let rSeqB = gflops(roofFB, ms: b0[2].medianMS), rParB = gflops(roofFB, ms: b0[3].medianMS)
        let roofFwdMS = min(f0[2].medianMS, f0[3].medianMS), roofFbMS = min(b0[2].medianMS, b0[3].medianMS)
        let roofFwd = max(rSeqF, rParF), roofFb = max(rSeqB, rParB)
        let denseG = gflops(dense.flops, ms: f0[4].medianMS)
        let opF = gflops(useful, ms: f0[0].medianMS), opFB = gflops(usefulFB, ms: b0[0].medianMS)
        func paired(_ s: [TimingSummary], _ op: Int) -> Double {
            let r = (0..<s[op].runsMS.count).map { i in min(s[2].runsMS[i], s[3].runsMS[i]) / s[op].runsMS[i] }
            return medianOf(r)
        }
        let stats = harness.routerStats
        var result = ExpertBenchmarkResult(
            workload: w.name, tokens: t, hiddenSize: c, intermediateSize: f, numExperts: e, topK: k, capacityFactor: w.capacityFactor,
            threads: Threads.count, runs: o.runs, usefulForwardGFLOP: useful / 1e9,
            forwardMS: f0[0].medianMS, forwardBackwardMS: b0[0].medianMS, forwardGFLOPS: opF, forwardBackwardGFLOPS: opFB,
            forwardSpread: f0[0].spread, forwardBackwardSpread: b0[0].spread,
            schedule: stats.schedule == .parallel ? "parallel" : "sequential",
            droppedFraction: Double(stats.dropped) / Double(t * k),
            maxExpertLoad: Double(stats.tokensPerExpert.max() ?? 0) / max(Double(stats.assignments) / Double(e), 1e-9),
            balancedForwardMS: f0[1].medianMS, balancedForwardBackwardMS: b0[1].medianMS,
            layerForwardMS: o.layer ? f0[5].medianMS : nil, layerForwardBackwardMS: o.layer ? b0[4].medianMS : nil,
            forwardBackwardFreshGradMS: o.freshGradients ? b0[o.layer ? 5 : 4].medianMS : nil,
            rooflineGroupedForwardMS: roofFwdMS, rooflineGroupedForwardBackwardMS: roofFbMS,
            rooflineGroupedGFLOPS: roofFwd, rooflineGroupedForwardBackwardGFLOPS: roofFb,
            rooflineGroupedSequentialGFLOPS: rSeqF, rooflineGroupedParallelGFLOPS: rParF, rooflineDenseGFLOPS: denseG,
            forwardVsRoofline: opF / roofFwd, forwardBackwardVsRoofline: opFB / roofFb,
            forwardVsRooflinePaired: paired(f0, 0), forwardBackwardVsRooflinePaired: paired(b0, 0),
            balancedForwardVsRoofline: gflops(useful, ms: f0[1].medianMS) / roofFwd,
            balancedForwardBackwardVsRoofline: gflops(usefulFB, ms: b0[1].medianMS) / roofFb,
            forwardVsDense: opF / denseG, forwardBackwardVsDense: opFB / denseG)

        var names = ["forward", "balanced_forward", "roofline_forward_sequential", "roofline_forward_parallel", "dense_sgemm"]
        if o.layer { names.append("layer_forward") }
        if control != nil { names.append("machine_control_forward") }
        let forwardMeasured = Array(zip(names, f0))
        names = ["forward_backward", "balanced_forward_backward", "roofline_forward_backward_sequential",
                 "roofline_forward_backward_parallel"]
        if o.layer { names.append("layer_forward_backward") }
        if o.freshGradients { names.append("forward_backward_fresh_grad") }
        if control != nil { names.append("machine_control_forward_backward") }
        let backwardMeasured = Array(zip(names, b0))
        if control != nil { (result.controlForwardSpread, result.controlForwardBackwardSpread) = (f0.last!.spread, b0.last!.spread) }
        result.measurements = Dictionary(uniqueKeysWithValues: (forwardMeasured + backwardMeasured).map { ($0, MeasurementRecord($1)) })
        result.warnings = spreadWarnings(forwardMeasured, control: control != nil ? f0.last : nil)
            + spreadWarnings(backwardMeasured, control: control != nil ? b0.last : nil)

        if o.denseActive {
            progress("\(w.name): dense FFN, same active parameters (hidden \(k * f))")
            let d = try DenseFFNHarness(hiddenSize: c, intermediateSize: k * f, tokens: t, rng: &rng)
            (result.denseActiveForwardMS, result.denseActiveForwardBackwardMS) = try d.measure(warmup: o.warmup, runs: o.runs)
        }
        if o.denseTotal {
            progress("\(w.name): dense FFN, same total parameters (hidden \(e * f))")
            let d = try DenseFFNHarness(hiddenSize: c, intermediateSize: e * f, tokens: t, rng: &rng)
            (result.denseTotalForwardMS, result.denseTotalForwardBackwardMS) = try d.measure(warmup: 1, runs: max(1, o.denseTotalRuns))
        }
        return result
    }

    /// Roofline and op only, forward and forward + backward, for sweeps, on each thread count
    /// of `threadCounts` (default: the current one); the runs of all thread counts are
    /// interleaved, so a speedup compares measurements taken side by side.
    public static func quick(_ w: ExpertWorkload, runs: Int, warmup: Int = 1, seed: UInt64 = 1,
                             balanced: Bool = false, threadCounts: [Int]? = nil) throws -> [SweepPoint] {
        try quickTimed(w, runs: runs, warmup: warmup, seed: seed, balanced: balanced, threadCounts: threadCounts).points
    }

    /// `quick` with the op's timings per thread count (forward, forward + backward), in round order.
    static func quickTimed(_ w: ExpertWorkload, runs: Int, warmup: Int = 1, seed: UInt64 = 1, balanced: Bool = false,
                           threadCounts: [Int]? = nil) throws -> (points: [SweepPoint], forward: [TimingSummary], forwardBackward: [TimingSummary]) {
        var rng = RandomGenerator(seed: seed)
        let harness = try ExpertHarness(w, rng: &rng, layer: false)
        let roof = try GroupedGEMMReference(numExperts: w.numExperts, rowsPerExpert: w.balancedRowsPerExpert, hiddenSize: w.hiddenSize, intermediateSize: w.intermediateSize)
        let counts = threadCounts ?? [Threads.count]
        func on(_ n: Int, _ body: @escaping () throws -> Void) -> () throws -> Void { { try Threads.with(n, body) } }
        var fwd: [Probe] = [], fb: [Probe] = []
        for n in counts {
            fwd += [Probe(body: on(n) { try harness.opForward(balanced: balanced) }),
                    Probe(body: on(n) { roof.run(backward: false, schedule: .sequential) }),
                    Probe(body: on(n) { roof.run(backward: false, schedule: .parallel) })]
            fb += [Probe(setup: harness.zeroGradsInPlace, body: on(n) { try harness.opForwardBackward(balanced: balanced) }),
                   Probe(body: on(n) { roof.run(backward: true, schedule: .sequential) }),
                   Probe(body: on(n) { roof.run(backward: true, schedule: .parallel) })]
        }
        let f0 = try interleaved(fwd, warmup: warmup, runs: runs), b0 = try interleaved(fb, warmup: warmup, runs: runs)
        let rf = roof.flops(backward: false), rb = roof.flops(backward: true)
        let points = counts.enumerated().map { i, n in
            let (o, r1, r2) = (3 * i, 3 * i + 1, 3 * i + 2)
            return SweepPoint(
                workload: w.name, tokens: w.tokens, hiddenSize: w.hiddenSize, intermediateSize: w.intermediateSize, numExperts: w.numExperts, topK: w.topK,
                threads: n, forwardMS: f0[o].medianMS, forwardBackwardMS: b0[o].medianMS,
                forwardGFLOPS: gflops(w.usefulForwardFLOPs, ms: f0[o].medianMS),
                forwardBackwardGFLOPS: gflops(w.usefulForwardBackwardFLOPs, ms: b0[o].medianMS),
                rooflineGroupedGFLOPS: max(gflops(rf, ms: f0[r1].medianMS), gflops(rf, ms: f0[r2].medianMS)),
                rooflineGroupedForwardBackwardGFLOPS: max(gflops(rb, ms: b0[r1].medianMS), gflops(rb, ms: b0[r2].medianMS)),
                rooflineGroupedForwardMS: min(f0[r1].medianMS, f0[r2].medianMS),
                rooflineGroupedForwardBackwardMS: min(b0[r1].medianMS, b0[r2].medianMS))
        }
        let ops = counts.indices.map { 3 * $0 }
        return (points, ops.map { f0[$0] }, ops.map { b0[$0] })
    }

    /// One timed thing with an untimed setup.
    struct Probe {
        var setup: () throws -> Void = {}
        var body: () throws -> Void
        init(setup: @escaping () throws -> Void = {}, body: @escaping () throws -> Void) {
            self.setup = setup
            self.body = body
        }
    }

    /// Above this spread ((max − min) / median of the runs) a measurement gets a warning.
    public static let spreadWarningThreshold = 0.10

    /// One line per measurement whose spread exceeds `spreadWarningThreshold`, in order; when
    /// the machine control timed in the same rounds spread beyond it too, the line says so.
    static func spreadWarnings(_ measured: [(String, TimingSummary)], control: TimingSummary? = nil) -> [String] {
        let noisy = control.map { $0.spread > spreadWarningThreshold } ?? false
        return measured.compactMap { name, t in
            guard t.spread > spreadWarningThreshold else { return nil }
            let line = String(format: "%@ spread %.1f%% > %.0f%% (runs %.1f–%.1f ms, median %.1f)", name, 100 * t.spread,
                              100 * spreadWarningThreshold, t.minMS, t.runsMS.max() ?? .nan, t.medianMS)
            guard noisy, let control, !name.hasPrefix("machine_control") else { return line }
            return line + String(format: "; the machine control spread %.1f%% in the same rounds", 100 * control.spread)
        }
    }

    /// Runs the probes round-robin: warm-up rounds, then `runs` timed rounds. `park`: park the
    /// worker threads (`Threads.park()`) before every run, untimed.
    static func interleaved(_ probes: [Probe], warmup: Int, runs: Int, park: Bool = true) throws -> [TimingSummary] {
        var timers = Array(repeating: RunTimer(), count: probes.count)
        for round in 0..<(max(0, warmup) + max(1, runs)) {
            for (i, p) in probes.enumerated() {
                try p.setup()
                if park { Threads.park() }
                if round >= warmup { try timers[i].time(p.body) } else { try p.body() }
            }
        }
        return timers.map(\.summary)
    }
}

/// The tensors of one workload: input, output gradient, expert bank, router, and the two
/// routings (router-chosen on the input, perfectly balanced).
final class ExpertHarness {
    let workload: ExpertWorkload
    let x: Tensor, dy: Tensor
    let bank: Experts
    let layer: MoELayer?
    let routed: (experts: Tensor, gates: Tensor)
    let balanced: (experts: Tensor, gates: Tensor)
    let routerStats: (schedule: ExpertSchedule, dropped: Int, tokensPerExpert: [Int], assignments: Int)

    init(_ w: ExpertWorkload, rng: inout RandomGenerator, layer withLayer: Bool = true) throws {
        workload = w
        let (t, c, e, k) = (w.tokens, w.hiddenSize, w.numExperts, w.topK)
        let x = Tensor.normal([t, c], using: &rng, requiresGrad: true)
        self.x = x
        dy = Tensor.normal([t, c], std: 0.01, using: &rng)
        let bank = try Experts(kind: .swiglu, numExperts: e, hiddenSize: c, intermediateSize: w.intermediateSize, rng: &rng)
        self.bank = bank
        let router = try TopKRouter(hiddenSize: c, numExperts: e, topK: k, renormalize: true,
                                    capacity: try w.capacityFactor.map { try CapacityLimit(factor: $0) }, rng: &rng)
        var context = RoutingContext()
        let routing = try withNoGrad { try router.route(x, context: &context) }
        routed = (routing.experts, Tensor(routing.gates.scalars, shape: [t, k], requiresGrad: true))
        // Balanced: token perm[i] takes experts (i·K + s) mod E — E divides T·K in every fixed workload.
        var perm = Array(0..<t)
        perm.shuffle(using: &rng)
        var ex = [Int32](repeating: 0, count: t * k)
        for i in 0..<t {
            for s in 0..<k { ex[perm[i] * k + s] = Int32((i * k + s) % e) }
        }
        balanced = (Tensor(indices: ex, shape: [t, k]),
                    Tensor(repeating: 1 / Float(k), shape: [t, k], requiresGrad: true))
        layer = withLayer ? try MoELayer(router: router, experts: bank, losses: try MoELossConfig(balanceCoefficient: 0), rng: &rng) : nil
        let r = routed
        let (_, stats) = try withNoGrad {
            try routedExperts(x, experts: r.experts, gates: r.gates, w1: bank.w1, w3: bank.w3, w2: bank.w2,
                              activation: .swiglu, schedule: bank.schedule)
        }
        routerStats = (stats.schedule, routing.dropped, stats.tokensPerExpert, stats.assignments)
    }

    private func op(_ r: (experts: Tensor, gates: Tensor)) throws -> (output: Tensor, stats: RoutedExpertsStats) {
        try routedExperts(x, experts: r.experts, gates: r.gates, w1: bank.w1, w3: bank.w3, w2: bank.w2,
                          activation: .swiglu, schedule: bank.schedule)
    }

    func opForward(balanced b: Bool) throws { _ = try op(b ? balanced : routed) }

    func opForwardBackward(balanced b: Bool) throws {
        try op(b ? balanced : routed).output.backward(gradient: dy)
    }

    func layerForward() throws {
        var context = RoutingContext(training: true)
        _ = try layer!(x, context: &context)
    }

    func layerForwardBackward() throws {
        var context = RoutingContext(training: true)
        try layer!(x, context: &context).output.backward(gradient: dy)
    }

    private var gradTensors: [Tensor] {
        [x, routed.gates, balanced.gates] + bank.parameters + (layer?.router.namedParameters().map(\.tensor) ?? [])
    }

    /// Keeps the gradient buffers, sets them to 0 (what an optimiser step with a pooled
    /// gradient buffer would cost nothing for).
    func zeroGradsInPlace() throws { for g in gradTensors { g.grad?.zero() } }

    /// Drops the gradient buffers (`Module.zeroGrad()`): the next backward allocates them afresh.
    func dropGrads() throws { for g in gradTensors { g.zeroGrad() } }
}

/// A dense SwiGLU FFN on T tokens; times forward and forward + backward.
final class DenseFFNHarness {
    let ffn: FeedForward
    let x: Tensor, dy: Tensor

    init(hiddenSize: Int, intermediateSize: Int, tokens: Int, rng: inout RandomGenerator) throws {
        ffn = try FeedForward(kind: .swiglu, hiddenSize: hiddenSize, intermediateSize: intermediateSize, rng: &rng)
        x = Tensor.normal([tokens, hiddenSize], using: &rng, requiresGrad: true)
        dy = Tensor.normal([tokens, hiddenSize], std: 0.01, using: &rng)
    }

    func measure(warmup: Int, runs: Int) throws -> (Double, Double) {
        let f = try TimingSummary.measure(warmup: warmup, runs: runs) { _ = ffn(x) }
        let zero = { [self] in for p in ffn.parameters + [x] { p.grad?.zero() } }
        let b = TimingSummary.measure(warmup: warmup, runs: runs, setup: zero) { ffn(x).backward(gradient: dy) }
        return (f.medianMS, b.medianMS)
    }
}
