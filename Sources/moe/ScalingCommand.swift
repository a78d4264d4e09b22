import ArgumentParser
import Foundation
import SparseMoE
import SparseMoERuns

/// `moe scaling`: trains a grid of dense and MoE models, fits scaling laws, predicts a larger run.
struct Scaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sweep dense and MoE sizes, fit scaling laws (L(N), L(D), compute frontier, Clark et al.'s routed law), predict a larger run.",
        discussion: """
        Trains every point of a grid (dense widths/depths at fractions of a token or FLOP
        budget; MoE bases with E experts each at fixed active size) the way `moe train`
        does, then fits L(N) = a·N^-α + c, L(D), the compute-optimal frontier L(C) and
        ln L = a ln N + b ln Ê + c ln N ln Ê + d (Clark et al. 2022) with bootstrap
        intervals. Resumable: run the same command again and finished points are skipped;
        a point that fails is recorded and the sweep goes on.

        Grids: tiny (a smoke test, about a minute on 2 cores), small (the default, 33
        points, about 8 minutes on 2 idle cores), or a grid JSON file (see
        docs/scaling.md).

        Examples:
          moe scaling --data synthetic --grid tiny --out runs/scaling-tiny
          moe scaling --data shakespeare.txt --out runs/scaling-shakespeare --predict
          moe scaling --data synthetic --budget flops --grid my-grid.json --out runs/iso

        Output folder: points/<id>/ (each run's report as moe train writes it),
        points.jsonl (one line per point), grid.json, fits.json (every coefficient with
        its interval and goodness of fit), loss_vs_parameters.svg, loss_vs_compute.svg,
        loss_vs_experts.svg, effective_parameters.svg.
        """)

    @Option(help: "A UTF-8 text file to train on, or 'synthetic' for the built-in multi-task corpus.") var data: String
    @Option(help: "What every point gets the same of: tokens or flops (training FLOPs).") var budget: String = "tokens"
    @Option(help: "Grid: tiny, small, or a grid JSON file.") var grid: String = "small"
    @Option(help: "Output folder (resumable).") var out: String
    @Flag(help: "Also train the grid's held-out larger configuration and report predicted against measured loss.") var predict = false
    @Option(help: "Bootstrap resamples for the confidence intervals.") var bootstrap: Int = 500
    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).") var threads: Int?

    func validate() throws {
        guard ScalingBudget(rawValue: budget) != nil else { throw ValidationError("--budget must be tokens or flops, got '\(budget)'") }
        guard bootstrap >= 1 else { throw ValidationError("--bootstrap must be ≥ 1, got \(bootstrap)") }
        if data != "synthetic" && !FileManager.default.fileExists(atPath: data) {
            throw ValidationError("--data: '\(data)' is neither 'synthetic' nor an existing file")
        }
    }

    func run() throws {
        try applyThreads(threads)
        let g = try ScalingGrid.load(grid)
        if predict && g.predict == nil { throw ValidationError("--predict: the grid '\(g.name)' names no 'predict' configuration") }
        let budgetKind = ScalingBudget(rawValue: budget)!
        let output = URL(fileURLWithPath: out)
        let sweep = try ScalingSweep(grid: g, budget: budgetKind, output: output, includePrediction: predict)
        let totalFlops = sweep.plans.reduce(0) { $0 + $1.trainingFlops }
        print("moe scaling: grid \(g.name), \(sweep.plans.count) points, \(budgetKind.rawValue) budget, data \(data); "
              + "\(humanCount(totalFlops))FLOP of training in all, \(Threads.count) threads")
        let terminal = stdoutIsTerminal
        var lastLine = -1.0, lastDone = 0
        let clockStart = Date()
        let results = try sweep.run(trainer: TrainingRunPointTrainer(dataPath: data == "synthetic" ? nil : data, grid: g)) { p in
            let eta = p.eta.map(clock) ?? "--:--"
            let line = String(format: "[%d/%d] %@ %3.0f%%  done %d, failed %d, skipped %d  elapsed %@  ETA %@", p.index, p.total, p.pointID,
                              100 * p.pointFraction, p.finished, p.failed, p.skipped, clock(p.elapsed), eta)
            let pointEnded = p.finished + p.failed > lastDone
            lastDone = p.finished + p.failed
            if terminal {
                FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
                if pointEnded { print("") }
            } else if pointEnded || p.elapsed - lastLine >= 10 {
                print(line)
                lastLine = p.elapsed
            }
            fflush(nil)
        }
        let target = predict ? sweep.plans.first { $0.point.role == .prediction } : nil
        let fits = ScalingFits.compute(results: results, grid: g, budget: budgetKind, target: target ?? (g.predict.flatMap {
            try? ScalingSweep.plan(ScalingPoint(shape: $0.shape, experts: $0.experts, topK: g.topK, fraction: 1, role: .prediction), grid: g, budget: budgetKind)
        }), resamples: bootstrap, seed: g.seed)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(fits), to: output.appendingPathComponent("fits.json"))
        let charts = try ScalingCharts.write(results: results, fits: fits, to: output)
        printReport(results, fits)
        print(String(format: "\nwall time %@; report: %@/fits.json, %@/points.jsonl, ", clock(Date().timeIntervalSince(clockStart)), out, out)
              + charts.map(\.lastPathComponent).joined(separator: ", "))
    }

    func printReport(_ results: [ScalingPointResult], _ fits: ScalingFits) {
        print("\npoint" + String(repeating: " ", count: 30) + "      N   N total   steps   val loss   seconds")
        for r in results {
            let loss = r.validationLoss.map { String(format: "%8.4f", $0) } ?? "  failed"
            print(pad(r.id, -35) + pad(grouped(r.parameters), 7) + pad(grouped(r.totalParameters), 10) + pad(String(r.steps), 8)
                  + "   " + loss + String(format: "  %8.1f", r.seconds) + (r.error.map { "  \($0)" } ?? ""))
        }
        func ci(_ e: EstimateWithInterval) -> String {
            String(format: "%.4g", e.value) + ((e.low != nil && e.high != nil) ? String(format: " [%.4g, %.4g]", e.low!, e.high!) : " [no interval]")
        }
        print("\nfits (\(Int(fits.bootstrap.level * 100))% bootstrap intervals, \(fits.bootstrap.resamples) resamples):")
        for (name, r) in [("L(N)", fits.parameters), ("L(D)", fits.data), ("L(C) frontier", fits.compute)] {
            guard let r else { continue }
            print("  \(name) = a·x^-α + c over \(r.x): a \(ci(r.a)), α \(ci(r.alpha)), c \(ci(r.c)); R² \(String(format: "%.3f", r.fit.r2)), RMSE \(String(format: "%.4f", r.fit.rmse)) (\(r.fit.points) points)")
        }
        if let r = fits.routed {
            print("  routed ln L = a ln N + b ln Ê + c ln N ln Ê + d: a \(ci(r.a)), b \(ci(r.b)), c \(ci(r.c)), d \(ci(r.d)); "
                  + "E_start \(r.saturation.eStart), E_max \(r.saturation.eMax.isFinite ? String(r.saturation.eMax) : "∞"); R² \(String(format: "%.3f", r.fit.r2)) in ln L")
            print("  effective-parameter multiplier N̄/N: " + r.multipliers.map { "N \($0.parameters) E \($0.experts): ×\(String(format: "%.2f", $0.multiplier))" }.joined(separator: ", "))
        }
        if let p = fits.prediction {
            var line = "  prediction for \(p.id) (N \(grouped(p.parameters)), \(p.law)): \(ci(p.predicted))"
            if let m = p.measured, let e = p.error { line += String(format: "; measured %.4f, error %+.4f nats", m, e) }
            print(line)
        }
        for n in fits.notes { print("  note: \(n)") }
    }
}
