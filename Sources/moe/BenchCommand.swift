import ArgumentParser
import Foundation
import SparseMoE
import SparseMoEBench
import SparseMoERuns

/// `moe bench`: the MoE expert computation against the OpenBLAS roofline, sweeps, plots,
/// and training-step throughput.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark the MoE expert computation against the OpenBLAS roofline (and training throughput).",
        discussion: """
        Workloads (fp32, SwiGLU experts, dropless unless stated):
          mixtral-like        T=2048 C=512  F=1024 E=8  K=2
          fine-grained        T=2048 C=512  F=256  E=64 K=8
          switch-top1         T=2048 C=512  F=1024 E=32 K=1
          switch-top1-cf1.25  the same, capacity factor 1.25 (overflow dropped)
          wide                T=1024 C=1024 F=2816 E=8  K=2

        Measured per workload, interleaved run by run in one process
        (median of --runs after --warmup):
          op        routedExperts (gather, expert GEMMs, SwiGLU, weighted
                    combine; backward: dx, dgates, weight gradients) with
                    the routing a softmax top-k router chose on random
                    inputs; the router is not timed. Gradient buffers are
                    kept and zeroed in place between runs ("fresh grads"
                    drops them, as zeroGrad() does).
          balanced  the same op with perfectly balanced routing.
          layer     the whole MoELayer: router matmul + softmax top-k
                    (+ capacity) + experts.
          roofline  the same expert GEMMs with balanced routing as plain
                    OpenBLAS sgemm calls on pre-gathered buffers, the better
                    of experts-in-sequence (GEMMs split across threads) and
                    experts-in-parallel (one thread each).
          dense     one sgemm [T·K, C]·[C, 3F] of the forward's FLOPs; and
                    dense SwiGLU FFNs with the same active (hidden K·F) and
                    total (hidden E·F) parameters.
        GFLOP/s count useful FLOPs: forward 6·C·F·K·T, forward+backward
        18·C·F·K·T (router and combine excluded; dropped tokens count as not
        done). ×roof = op GFLOP/s ÷ roofline GFLOP/s (targets: forward ≥ 0.9,
        forward+backward ≥ 0.8); ×dense = op ÷ dense sgemm; paired = median
        of the per-round ratios of times measured back to back.

        Stable numbers: before every timed run the worker threads are parked
        (put to sleep, untimed). OpenMP's workers spin 200 ms after each
        parallel region and OpenBLAS's own threads (used by the roofline and
        dense references) about 0.1 s after each call; on a machine with as
        many cores as threads, a worker still spinning takes a core from the
        next run. --no-park skips this, to see the difference. --json lists
        every run of every measurement ("measurements": runs_ms, context
        switches, minor page faults, other threads busy at the start); a
        measurement whose spread (max − min) / median exceeds 10 % gets a
        warning. The machine control runs in the same rounds: every thread
        multiplies its own small matrices, the same work each time, sharing
        nothing ("control" column: its forward/backward-round spread). When
        the control spreads too, the noise is the machine's, not the op's.

        Sweeps (--sweep): experts (E = 1…128 at fixed active FLOPs,
        K·F = 1024), topk (1…8), tokens (256…8192), threads (1 vs --threads:
        speedup and efficiency; --thread-sweeps N repeats it and reports
        medians over all repeats, since one sweep on a shared machine says
        little). --train times steps of `moe train`'s default model
        (tiny-moe; --train-preset for another): tokens/s and MFU against the
        sgemm peak measured in the same process after the steps, and paired
        MFU: each step against 1024³ sgemm products run right before it, the
        median over the steps (steadier on a machine whose speed drifts).
        --train-precision both alternates float32 and bf16 steps on the same
        model and reports their step-time ratio round by round.

        Examples:
          moe bench                           # all workloads, human table
          moe bench --workload wide --json    # one JSON object per line
          moe bench --workload none --sweep threads --thread-sweeps 5
          moe bench --sweep all --train --out docs/img --reference pytorch.jsonl
          moe bench --model models/olmoe-bf16 --dtype bf16,int8,int4 --json

        Models (--model DIR): load the folder in each --dtype (converted on load), \
        prefill a random prompt of --prompt-tokens once after a warm-up, decode \
        --new-tokens greedily with the KV cache. Reports prefill and decode tokens/s, \
        time to first token, load time, peak RSS, bytes of weights, bytes read per \
        decoded token and the machine's read bandwidth (measured), and decode as a \
        fraction of the bandwidth limit. Each dtype runs in a child process of its own, \
        so that peak RSS is that dtype's alone.
        """)

    @Option(help: "Workload name or 'all'.") var workload: String = "all"
    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).") var threads: Int?
    @Option(help: "Timed runs per measurement (median reported).") var runs: Int = 9
    @Option(help: "Untimed warm-up runs.") var warmup: Int = 1
    @Flag(help: "One JSON object per workload (and sweep point) per line on stdout.") var json = false
    @Option(help: "Sweep: experts, topk, tokens, threads or all (after the workloads; --workload none skips those).")
    var sweep: String?
    @Option(name: .customLong("sweep-runs"), help: "Timed runs per sweep point.") var sweepRuns: Int = 3
    @Option(name: .customLong("thread-sweeps"),
            help: "Run the threads sweep this many times, spread over time, and report medians over all of them.")
    var threadSweeps: Int = 1
    @Flag(name: .customLong("no-park"),
          help: "Do not park worker threads before each timed run (to see what their spinning does).")
    var noPark = false
    @Flag(help: "Also time training steps of a preset model, tiny-moe unless --train-preset (tokens/s, MFU).") var train = false
    @Option(name: .customLong("train-preset"),
            help: "The preset whose training steps --train times (\(TransformerConfig.presetNames.joined(separator: ", "))); default tiny-moe.")
    var trainPreset: String?
    @Flag(help: "Under mpirun: time all-reduces through the MPI communicator and fit latency and bandwidth (docs/scale-out.md).")
    var collectives = false
    @Option(name: .customLong("train-steps"), help: "Timed training steps with --train (default 20).") var trainSteps: Int?
    @Option(name: .customLong("train-precision"),
            help: "Matmul precision of the --train steps: fp32 (default), bf16, or both (alternating steps, with their ratio).")
    var trainPrecision: String?
    @Flag(name: .customLong("skip-dense-total"), help: "Skip the dense FFN with the same total parameters (the slowest part).")
    var skipDenseTotal = false
    @Option(help: "Folder for results (JSON lines) and plots (SVG + PNG).") var out: String?
    @Option(help: "JSON lines of a reference run (Benchmarks/reference/moe_workloads.py) to plot beside ours.")
    var reference: String?
    @Option(help: "Model folder: measure prefill and decode tokens/s instead of the expert workloads.")
    var model: String?
    @Option(help: "With --model: weight dtypes to measure, comma-separated (f32, bf16, f16, int8, int4; default: as stored).")
    var dtype: String?
    @Option(name: .customLong("prompt-tokens"), help: "With --model: prompt length for prefill.") var promptTokens: Int = 128
    @Option(name: .customLong("new-tokens"), help: "With --model: tokens to decode after the prompt.") var newTokens: Int = 64
    @Option(help: "With --model: decode this many requests together through the continuous-batching scheduler, for each size in the list (e.g. 1,4,16,64), and report tokens/s and the gain over batch 1.")
    var batch: String?

    func validate() throws {
        guard promptTokens >= 1, newTokens >= 1 else { throw ValidationError("--prompt-tokens and --new-tokens must be ≥ 1") }
        if dtype != nil && model == nil { throw ValidationError("--dtype needs --model (the expert workloads are float32)") }
        if let batch {
            guard model != nil else { throw ValidationError("--batch needs --model") }
            guard (dtype?.split(separator: ",").count ?? 1) == 1 else { throw ValidationError("--batch measures one --dtype at a time") }
            _ = try batchSizes(batch)
        }
        for d in dtype?.split(separator: ",") ?? [] {
            do { _ = try DType(weightFormat: String(d)) } catch { throw ValidationError("--dtype: \(error)") }
        }
        if !train, trainPreset != nil || trainSteps != nil || trainPrecision != nil {
            throw ValidationError("--train-preset, --train-steps and --train-precision apply to the training measurement: add --train")
        }
        _ = try trainPrecisions()
        if let p = trainPreset, !TransformerConfig.presetNames.contains(p) {
            throw ValidationError("--train-preset: unknown preset '\(p)'; expected one of \(TransformerConfig.presetNames.joined(separator: ", "))")
        }
        guard runs >= 1, sweepRuns >= 1, threadSweeps >= 1, warmup >= 0, (trainSteps ?? 1) >= 1 else {
            throw ValidationError("--runs, --sweep-runs, --thread-sweeps and --train-steps must be ≥ 1, --warmup ≥ 0")
        }
        if let s = sweep, s != "all", ExpertSweep(rawValue: s) == nil {
            throw ValidationError("--sweep must be one of \(ExpertSweep.allCases.map(\.rawValue).joined(separator: ", ")), all; got '\(s)'")
        }
        if workload != "all", workload != "none", !ExpertWorkload.all.contains(where: { $0.name == workload }) {
            throw ValidationError("--workload must be all, none or one of \(ExpertWorkload.all.map(\.name).joined(separator: ", ")); got '\(workload)'")
        }
    }

    func run() throws {
        try applyThreads(threads)
        if collectives { return try CollectiveBenchmark.run(runs: runs) }
        if let model { return try runModel(model) }
        let outDir = out.map { URL(fileURLWithPath: $0) }
        if let d = outDir { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        let reference = try self.reference.map { try ReferenceThroughput.load(jsonLines: $0) } ?? []
        let progress: (String) -> Void = { printError("[bench] " + $0) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        func line<T: Encodable>(_ v: T) throws -> String { String(decoding: try encoder.encode(v), as: UTF8.self) }
        var jsonl: [String] = []
        func emit<T: Encodable>(_ v: T) throws {
            let s = try line(v)
            jsonl.append(s)
            if json { print(s) }
        }
        if !json { print("moe bench: \(Threads.count) threads, median of \(runs) runs after \(warmup) warm-up") }

        // Workloads.
        let selected = workload == "all" ? ExpertWorkload.all : workload == "none" ? [] : [try ExpertWorkload.named(workload)]
        var results: [ExpertBenchmarkResult] = []
        var options = ExpertBenchmarkOptions()
        options.runs = runs; options.warmup = warmup; options.denseTotal = !skipDenseTotal
        options.parkThreads = !noPark
        for w in selected {
            let r = try ExpertBenchmark.run(w, options: options, progress: progress)
            results.append(r)
            try emit(r)
        }
        if !json && !results.isEmpty {
            printWorkloadTables(results)
            printWarnings(results)
        }
        if let d = outDir, !results.isEmpty {
            try BenchmarkCharts.writeWorkloads(results, reference: reference, to: d)
        }

        // Sweeps.
        let sweeps: [ExpertSweep] = sweep == nil ? [] : sweep == "all" ? ExpertSweep.allCases : [ExpertSweep(rawValue: sweep!)!]
        for s in sweeps {
            if s == .threads {
                let n = max(2, Threads.count)
                let points = try ExpertSweep.threadScaling(threads: n, runs: sweepRuns, repeats: threadSweeps, progress: progress)
                for p in points { try emit(ThreadRecord(point: p)) }
                if !json { printThreadTable(points) }
                if let d = outDir { try BenchmarkCharts.writeThreadScaling(points, to: d) }
            } else {
                let points = try s.run(runs: sweepRuns, progress: progress)
                for p in points { try emit(SweepRecord(sweep: s.rawValue, point: p)) }
                if !json { printSweepTable(s, points) }
                if let d = outDir { try BenchmarkCharts.writeSweep(s, points: points, to: d) }
            }
        }

        // Training throughput.
        if train {
            let precisions = try trainPrecisions()
            let (results, ratios) = try TrainingThroughput.measure(preset: trainPreset ?? "tiny-moe", steps: trainSteps ?? 20,
                                                                   precisions: precisions, progress: progress)
            for t in results {
                try emit(t)
                if !json {
                    print(String(format: "\ntraining (%@, %@ matmuls, %d threads, %d tokens/step): %.1f ms/step (spread %.0f%%), %@ tokens/s (mean %@), "
                                 + "%.1f GFLOP/s model FLOPs = MFU %.1f%% of the %.0f GFLOP/s float32 sgemm peak; "
                                 + "paired MFU %.1f%% (median over the steps, each against an sgemm right before it, p50 %.0f GFLOP/s)",
                                 t.model, t.precision, t.threads, t.tokensPerStep, t.stepMS, 100 * t.stepSpread, grouped(Int(t.tokensPerSecond)),
                                 grouped(Int(t.meanTokensPerSecond)), t.achievedGFLOPS, 100 * t.modelFLOPsUtilization, t.peakGFLOPS,
                                 100 * t.pairedModelFLOPsUtilization, t.pairedPeakGFLOPS))
                }
            }
            if precisions.count == 2 {
                let speedup = PrecisionSpeedup(model: results[0].model, threads: results[0].threads, stepRatios: ratios[1])
                try emit(speedup)
                if !json {
                    print(String(format: "bf16 speed-up over fp32 (%@, step time fp32 ÷ bf16, round by round over %d rounds): "
                                 + "median %.2f×, quartiles %.2f–%.2f×, range %.2f–%.2f×; %@",
                                 speedup.model, speedup.stepRatios.count, speedup.median, speedup.lowerQuartile, speedup.upperQuartile,
                                 speedup.stepRatios.min() ?? .nan, speedup.stepRatios.max() ?? .nan, MatmulPrecision.bf16Kernel.summary))
                }
            }
        }
        if let d = outDir {
            try Data((jsonl.joined(separator: "\n") + "\n").utf8).write(to: d.appendingPathComponent("bench.jsonl"))
            printError("[bench] wrote \(d.path)/bench.jsonl and plots")
        }
    }

    /// --train-precision as the precisions to time, in order: float32 first where both.
    func trainPrecisions() throws -> [MatmulPrecision] {
        switch trainPrecision ?? "fp32" {
        case "both": return [.float32, .bfloat16]
        case let p:
            guard let precision = MatmulPrecision(rawValue: p) else {
                throw ValidationError("--train-precision must be fp32, bf16 or both; got '\(p)'")
            }
            return [precision]
        }
    }

    func printWorkloadTables(_ rs: [ExpertBenchmarkResult]) {
        func f(_ v: Double?, _ w: Int, _ p: Int = 1) -> String { pad(v.map { String(format: "%.\(p)f", $0) } ?? "-", w) }
        print("\nrouted experts (op, router-chosen routing; router not timed) vs grouped-sgemm roofline (balanced routing)")
        print(pad("workload", -19) + pad("fwd ms", 9) + pad("GFLOP/s", 9) + pad("roof", 8) + pad("×roof", 7) + pad("paired", 7) + pad("×dense", 7)
              + " |" + pad("f+b ms", 9) + pad("GFLOP/s", 9) + pad("roof", 8) + pad("×roof", 7) + pad("paired", 7) + pad("sched", 11) + pad("spread", 8) + pad("control", 9))
        for r in rs {
            print(pad(r.workload, -19) + f(r.forwardMS, 9) + f(r.forwardGFLOPS, 9) + f(r.rooflineGroupedGFLOPS, 8) + f(r.forwardVsRoofline, 7, 2)
                  + f(r.forwardVsRooflinePaired, 7, 2) + f(r.forwardVsDense, 7, 2) + " |" + f(r.forwardBackwardMS, 9) + f(r.forwardBackwardGFLOPS, 9)
                  + f(r.rooflineGroupedForwardBackwardGFLOPS, 8) + f(r.forwardBackwardVsRoofline, 7, 2) + f(r.forwardBackwardVsRooflinePaired, 7, 2)
                  + pad(r.schedule, 11) + pad(String(format: "%.0f/%.0f%%", 100 * r.forwardSpread, 100 * r.forwardBackwardSpread), 8)
                  + pad(r.controlForwardSpread.map { String(format: "%.0f/%.0f%%", 100 * $0, 100 * (r.controlForwardBackwardSpread ?? .nan)) } ?? "-", 9))
        }
        print("\nvariants (ms, forward / forward+backward) and routing")
        print(pad("workload", -19) + pad("balanced", 16) + pad("×roof", 13) + pad("layer+router", 16) + pad("fresh grads", 12)
              + pad("max load", 9) + pad("dropped", 8) + pad("roof seq/par GF/s", 19) + pad("dense sgemm", 12))
        for r in rs {
            print(pad(r.workload, -19) + pad(String(format: "%.1f / %.1f", r.balancedForwardMS, r.balancedForwardBackwardMS), 16)
                  + pad(String(format: "%.2f / %.2f", r.balancedForwardVsRoofline, r.balancedForwardBackwardVsRoofline), 13)
                  + pad(r.layerForwardMS.map { String(format: "%.1f / %.1f", $0, r.layerForwardBackwardMS ?? .nan) } ?? "-", 16)
                  + f(r.forwardBackwardFreshGradMS, 12) + f(r.maxExpertLoad, 9, 2) + pad(String(format: "%.2f%%", 100 * r.droppedFraction), 8)
                  + pad(String(format: "%.0f / %.0f", r.rooflineGroupedSequentialGFLOPS, r.rooflineGroupedParallelGFLOPS), 19) + f(r.rooflineDenseGFLOPS, 12))
        }
        print("\ndense SwiGLU FFN vs the MoE (ms, forward / forward+backward)")
        print(pad("workload", -19) + pad("MoE layer", 16) + pad("dense same active", 19) + pad("dense same total", 19) + pad("total/MoE f+b", 14))
        for r in rs {
            func pair(_ a: Double?, _ b: Double?) -> String { a.map { String(format: "%.1f / %.1f", $0, b ?? .nan) } ?? "-" }
            let moe = (r.layerForwardMS ?? r.forwardMS, r.layerForwardBackwardMS ?? r.forwardBackwardMS)
            print(pad(r.workload, -19) + pad(pair(moe.0, moe.1), 16) + pad(pair(r.denseActiveForwardMS, r.denseActiveForwardBackwardMS), 19)
                  + pad(pair(r.denseTotalForwardMS, r.denseTotalForwardBackwardMS), 19)
                  + f(r.denseTotalForwardBackwardMS.map { $0 / moe.1 }, 14, 1))
        }
    }

    func printWarnings(_ rs: [ExpertBenchmarkResult]) {
        let lines = rs.flatMap { r in (r.warnings ?? []).map { "  \(r.workload): \($0)" } }
        guard !lines.isEmpty else { return }
        print(String(format: "\nwarning: spread ((max − min) / median of the runs) above %.0f%%: the machine\n"
                     + "was not quiet or there were too few runs; read these with care:", 100 * ExpertBenchmark.spreadWarningThreshold))
        lines.forEach { print($0) }
    }

    func printSweepTable(_ s: ExpertSweep, _ ps: [SweepPoint]) {
        print("\nsweep \(s.rawValue) (op with router routing vs balanced grouped-sgemm roofline)")
        print(pad("point", -9) + pad("T", 6) + pad("F", 6) + pad("E", 5) + pad("K", 3) + pad("fwd ms", 9) + pad("GFLOP/s", 9) + pad("roof", 8)
              + pad("×roof", 7) + pad("f+b ms", 9) + pad("GFLOP/s", 9) + pad("roof", 8) + pad("×roof", 7))
        for p in ps {
            print(pad(p.workload, -9) + pad("\(p.tokens)", 6) + pad("\(p.intermediateSize)", 6) + pad("\(p.numExperts)", 5) + pad("\(p.topK)", 3)
                  + pad(String(format: "%.1f", p.forwardMS), 9) + pad(String(format: "%.1f", p.forwardGFLOPS), 9)
                  + pad(String(format: "%.1f", p.rooflineGroupedGFLOPS), 8) + pad(String(format: "%.2f", p.forwardVsRoofline), 7)
                  + pad(String(format: "%.1f", p.forwardBackwardMS), 9) + pad(String(format: "%.1f", p.forwardBackwardGFLOPS), 9)
                  + pad(String(format: "%.1f", p.rooflineGroupedForwardBackwardGFLOPS), 8) + pad(String(format: "%.2f", p.forwardBackwardVsRoofline), 7))
        }
    }

    func printThreadTable(_ ps: [ThreadScalingPoint]) {
        let n = ps.first?.threads ?? 2
        let over = (ps.first?.sweeps ?? 1) > 1 ? ", medians over \(ps[0].sweeps) sweeps" : ""
        print("\nsweep threads: speedup of \(n) threads over 1 (ratio of medians; paired = median of per-round ratios; efficiency = speedup / \(n)\(over))")
        print(pad("workload", -15) + pad("fwd 1t ms", 10) + pad("fwd \(n)t ms", 10) + pad("speedup", 8) + pad("paired", 7) + pad("roof", 6)
              + pad("f+b 1t ms", 10) + pad("f+b \(n)t ms", 10) + pad("speedup", 8) + pad("paired", 7) + pad("roof", 6) + pad("efficiency", 12))
        for p in ps {
            print(pad(p.workload, -15) + pad(String(format: "%.1f", p.single.forwardMS), 10) + pad(String(format: "%.1f", p.multi.forwardMS), 10)
                  + pad(String(format: "%.2f", p.forwardSpeedup), 8) + pad(String(format: "%.2f", p.forwardSpeedupPaired), 7)
                  + pad(String(format: "%.2f", p.rooflineForwardSpeedup), 6)
                  + pad(String(format: "%.1f", p.single.forwardBackwardMS), 10) + pad(String(format: "%.1f", p.multi.forwardBackwardMS), 10)
                  + pad(String(format: "%.2f", p.forwardBackwardSpeedup), 8) + pad(String(format: "%.2f", p.forwardBackwardSpeedupPaired), 7)
                  + pad(String(format: "%.2f", p.rooflineForwardBackwardSpeedup), 6)
                  + pad(String(format: "%.0f%% / %.0f%%", 100 * p.forwardSpeedup / Double(n), 100 * p.forwardBackwardSpeedup / Double(n)), 12))
        }
    }
}

/// A sweep point as one JSON line, tagged with its sweep.
struct SweepRecord: Encodable {
    let sweep: String
    let point: SweepPoint
    func encode(to encoder: Encoder) throws {
        try point.encode(to: encoder)
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(sweep, forKey: .sweep)
        try c.encode(point.forwardVsRoofline, forKey: .fwd)
        try c.encode(point.forwardBackwardVsRoofline, forKey: .fb)
    }
    enum Keys: String, CodingKey { case sweep, fwd = "forward_vs_roofline", fb = "forward_backward_vs_roofline" }
}

/// A thread-scaling point as one JSON line.
struct ThreadRecord: Encodable {
    let point: ThreadScalingPoint
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode("threads", forKey: .sweep)
        try c.encode(point.workload, forKey: .workload)
        try c.encode(point.threads, forKey: .threads)
        try c.encode(point.sweeps, forKey: .sweeps)
        try c.encode(point.single.forwardMS, forKey: .f1)
        try c.encode(point.multi.forwardMS, forKey: .fn)
        try c.encode(point.single.forwardBackwardMS, forKey: .b1)
        try c.encode(point.multi.forwardBackwardMS, forKey: .bn)
        try c.encode(point.forwardSpeedup, forKey: .fs)
        try c.encode(point.forwardBackwardSpeedup, forKey: .bs)
        try c.encode(point.forwardSpeedupPaired, forKey: .fsp)
        try c.encode(point.forwardBackwardSpeedupPaired, forKey: .bsp)
        try c.encode(point.rooflineForwardSpeedup, forKey: .rfs)
        try c.encode(point.rooflineForwardBackwardSpeedup, forKey: .rbs)
    }
    enum Keys: String, CodingKey {
        case sweep, workload, threads, sweeps
        case f1 = "forward_ms_1_thread", fn = "forward_ms", b1 = "forward_backward_ms_1_thread", bn = "forward_backward_ms"
        case fs = "forward_speedup", bs = "forward_backward_speedup"
        case fsp = "forward_speedup_paired", bsp = "forward_backward_speedup_paired"
        case rfs = "roofline_forward_speedup", rbs = "roofline_forward_backward_speedup"
    }
}

extension Bench {
    /// `--model`: one child process per dtype (its own peak RSS), each printing one JSON line.
    func runModel(_ model: String) throws {
        if let batch { return try runBatched(model, sizes: batchSizes(batch)) }
        let dtypes = dtype.map { $0.split(separator: ",").map(String.init) } ?? [""]
        if ProcessInfo.processInfo.environment["SPARSEMOE_BENCH_CHILD"] == nil && dtypes.count > 1 {
            for d in dtypes {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
                var args = ["bench", "--model", model, "--dtype", d, "--prompt-tokens", "\(promptTokens)", "--new-tokens", "\(newTokens)"]
                if json { args.append("--json") }
                if let threads { args += ["--threads", "\(threads)"] }
                p.arguments = args
                p.environment = ProcessInfo.processInfo.environment.merging(["SPARSEMOE_BENCH_CHILD": "1"]) { $1 }
                try p.run()
                p.waitUntilExit()
                guard p.terminationStatus == 0 else { throw ModelCommandError("moe bench --model … --dtype \(d) failed (exit \(p.terminationStatus))") }
            }
            return
        }
        let choice = try dtypes[0].isEmpty ? WeightDTypeChoice.asStored : WeightDTypeChoice(dtype: DType(weightFormat: dtypes[0]))
        let r = try InferenceBenchmark.run(directory: URL(fileURLWithPath: model), dtypes: choice, promptTokens: promptTokens,
                                           newTokens: newTokens) { printError("[bench] " + $0) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(r), as: UTF8.self))
            return
        }
        print("moe bench --model \(r.model): \(r.dtype), \(r.threads) threads")
        print(String(format: "  load           %8.1f s", r.load_seconds))
        print(String(format: "  prefill        %8.1f tokens/s  (%d tokens, first token after %.0f ms)", r.prefill_tokens_per_second, r.prompt_tokens, r.time_to_first_token_ms))
        print(String(format: "  decode         %8.2f tokens/s  (%d tokens)", r.decode_tokens_per_second, r.new_tokens))
        print("  weights        \(pad(humanCount(Double(r.weights_bytes)), 8))B  (\(humanCount(Double(r.decode_bytes_per_token)))B read per decoded token)")
        print("  peak RSS       \(pad(humanCount(Double(r.peak_rss_bytes)), 8))B")
        print(String(format: "  bandwidth      %8.1f GB/s read → limit %.1f tokens/s; decode at %.0f%% of it",
                     r.read_bandwidth_bytes_per_second / 1e9, r.read_bandwidth_bytes_per_second / Double(max(r.decode_bytes_per_token, 1)),
                     100 * r.decode_bandwidth_fraction))
    }

    /// `--batch 1,4,16`: sizes ≥ 1, in the order given.
    func batchSizes(_ list: String) throws -> [Int] {
        let sizes = list.split(separator: ",").map { Int($0) }
        guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--batch takes batch sizes ≥ 1 separated by commas, e.g. 1,4,16; got '\(list)'")
        }
        return sizes.map { $0! }
    }

    /// `--model DIR --batch …`: batched decode through the scheduler, in this process.
    func runBatched(_ model: String, sizes: [Int]) throws {
        let choice = try dtype.map { try WeightDTypeChoice(dtype: DType(weightFormat: $0)) } ?? .asStored
        let dir = URL(fileURLWithPath: model)
        printError("[bench] loading \(model)")
        let lm = try ModelLoader.load(directory: dir, dtypes: choice)
        let points = try BatchedDecodeBenchmark.run(model: lm, batches: sizes, promptTokens: promptTokens, newTokens: newTokens) {
            printError("[bench] " + $0)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for p in points { print(String(decoding: try encoder.encode(p), as: UTF8.self)) }
            return
        }
        print("moe bench --model \(model) --batch: \(dtype ?? "stored dtypes"), \(Threads.count) threads, prompt \(promptTokens), \(newTokens) new tokens each")
        print("batch   decode tok/s   gain   step p50 ms   step p95 ms   experts/layer/step   all first tokens ms")
        for p in points {
            print(String(format: "%5d   %12.1f   %4.2f×   %11.2f   %11.2f   %18.1f   %19.1f", p.batch, p.decode_tokens_per_second, p.speedup,
                         p.step_ms_p50, p.step_ms_p95, p.experts_per_layer_per_step, p.burst_first_token_ms))
        }
    }
}
