import ArgumentParser
import Foundation
import SparseMoE
import SparseMoERuns
import SparseMoEMPI

/// `moe train`: the main job.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an MoE (or dense) language model and report loss, speed, FLOPs and expert load.",
        discussion: """
        With no arguments, trains the `tiny-moe` preset (4 layers, width 128; a dense
        SwiGLU 512 in layer 0, then 8 SwiGLU experts of 256, top-2) on a built-in
        synthetic multi-task corpus (arithmetic, copy, reverse, bracket balance,
        key-value lookup) for a minute or two on two
        cores, then prints the losses, parameters, FLOPs against dense models and the
        expert load per layer, and writes a report folder.

        Examples:
          moe train                          # tiny-moe, synthetic corpus
          moe train --ffn dense              # dense twin, same active params
          moe train --data shakespeare.txt --steps 600
          moe train --objective masked       # BERT-style masked LM
          moe train --config small-moe --threads 2
          moe train --config medium-moe --checkpointing block  # less activation memory
          moe train --init runs/tiny-moe/model --data notes.txt \\
                    --lr 3e-4 --freeze routers   # fine-tune
          moe train --resume --out runs/tiny-moe # continue a run
          moe train --resume --out runs/tiny-moe --steps 600  # train a run further
          moe train --force --out runs/tiny-moe  # replace the run there
          mpirun -np 2 moe train --parallel data --threads 1  # data parallel, 2 processes
          mpirun -np 2 moe train --parallel expert --threads 1  # 4 of the 8 experts per process
          mpirun -np 4 moe train --parallel data,expert --expert-ranks 2 --threads 1

        --parallel data (under mpirun, one process per rank): every rank trains on
        batch-size / N sequences of each batch and the gradients are averaged, so the
        run trains like one process on the whole batch; rank 0 writes the report and
        checkpoints (which resume on any number of ranks). A rank that waits longer
        than --collective-timeout seconds for its peers ends the whole job with a message.
        --parallel expert: the same, and the routed experts are split over the N ranks
        (E/N each; tokens travel to their experts and back by all-to-all); the experts
        must divide by N. --parallel data,expert --expert-ranks M: groups of M ranks
        split the experts, the N/M groups replicate them. With a capacity factor, each
        rank applies the capacity to its own tokens.
        At startup every rank compares its settings with rank 0's and the job ends, naming
        the fields, when any differ. The report shows rank 0's communication per step by
        kind (bytes, calls, time waiting); `moe flops --parallel` predicts it
        (docs/scale-out.md).

        An --out folder that already holds a run is refused unless --resume or
        --force is given.

        Report folder (--out, default runs/<preset>[-dense]): summary.json,
        loss.svg, expert_load.svg (PNG beside them when rsvg-convert or
        ImageMagick is installed), model/ (config.json + model.safetensors)
        and checkpoints/ (resumable).
        Presets: \(TransformerConfig.presetNames.joined(separator: ", ")).
        """)

    @Option(name: .long, help: "Model preset or TransformerConfig JSON file (default: tiny-moe).")
    var config: String?

    @Option(name: .long, help: "FFN kind: moe (as configured; the default) or dense (the dense twin with the same active parameters).")
    var ffn: String?

    @Option(name: .long, help: "Start from this saved model folder (fine-tuning) instead of --config.")
    var `init`: String?

    @Option(name: .long, help: "Text file to train on (UTF-8, byte-level). Default: the synthetic multi-task corpus.")
    var data: String?

    @Option(name: .long, help: "Objective: causal (next token; the default) or masked (BERT-style, bidirectional).")
    var objective: String?

    @Option(name: .long, help: "Optimiser steps (default 300; with --resume: train the run on to this many steps).") var steps: Int?
    @Option(name: .customLong("batch-size"), help: "Sequences per micro-batch (default 16).") var batchSize: Int?
    @Option(name: .long, help: "Tokens per sequence (default 128).") var seq: Int?
    @Option(name: .long, help: "Peak learning rate (default 2e-3).") var lr: Double?
    @Option(name: .long, help: "Linear warmup steps before cosine decay (default: 10% of the steps, at most 30).") var warmup: Int?
    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay, not on norms, biases, embeddings (default 0.1).") var weightDecay: Double?
    @Option(name: .customLong("grad-clip"), help: "Clip the global gradient norm to this, 0 = off (default 1).") var gradClip: Double?
    @Option(name: .long, help: "Micro-batches per optimiser step, gradient accumulation (default 1).") var accumulate: Int?
    @Option(name: .customLong("eval-every"), help: "Evaluate on the validation split every N steps (default 50).") var evalEvery: Int?
    @Option(name: .customLong("eval-batches"), help: "Validation batches per evaluation (default 8).") var evalBatches: Int?
    @Option(name: .customLong("checkpoint-every"), help: "Save a resumable checkpoint every N steps, 0 = at the end only (default 0).") var checkpointEvery: Int?
    @Option(name: .long, help: "Fine-tuning: none (the default), routers, or all-but-experts.") var freeze: String?
    @Option(name: .long, help: "Activation checkpointing: none, attention (recompute attention in backward) or block (keep only each block's input). Same gradients, less memory, more time. Default none.") var checkpointing: String?
    @Option(name: .long, help: "Matmul arithmetic: fp32, or bf16 (mixed precision: matmul operands rounded to bfloat16, float32 sums; weights, optimizer, routers, norms and losses stay float32). On CPUs with AMX (Intel Sapphire Rapids and later) 1.5–1.7× fp32's tokens/s on small-moe and medium-moe; elsewhere the arithmetic, not speed (0.5–0.9× fp32's GEMM rate). moe info names the kernel. Default fp32; with --resume, the run's own.") var precision: String?
    @Option(name: .long, help: "Random seed: data order, initialisation, router noise (default 0).") var seed: UInt64?
    @Option(name: .long, help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).") var threads: Int?
    @Option(name: .long, help: "Report folder (default runs/<preset>[-dense]).") var out: String?
    @Flag(name: .long, help: "Continue the run in --out from its latest checkpoint.") var resume = false
    @Flag(name: .long, help: "Delete the run already in --out (report, model, checkpoints) and start clean.") var force = false
    @Flag(name: .long, help: "Only the final report, no progress.") var quiet = false
    @Option(name: .long, help: "Under mpirun: data (data parallel), expert (experts split over the ranks) or data,expert (with --expert-ranks). Default: one process.") var parallel: String?
    @Option(name: .customLong("expert-ranks"), help: "With --parallel data,expert: ranks per expert group (divides the ranks and the experts).") var expertRanks: Int?
    @Option(name: .customLong("collective-timeout"), help: "With --parallel: seconds a rank waits for its peers before the job ends with an error.")
    var collectiveTimeout: Double = 300

    /// --config, or the default preset.
    var configSpec: String { config ?? "tiny-moe" }

    func validate() throws {
        if let ffn, !["moe", "dense"].contains(ffn) { throw ValidationError("--ffn must be moe or dense, got '\(ffn)'") }
        if let objective, Objective(rawValue: objective) == nil {
            throw ValidationError("--objective must be causal or masked, got '\(objective)'")
        }
        if let freeze, FreezeMode(rawValue: freeze) == nil {
            throw ValidationError("--freeze must be one of \(FreezeMode.allCases.map(\.rawValue).joined(separator: ", ")), got '\(freeze)'")
        }
        if let checkpointing, ActivationCheckpointing(rawValue: checkpointing) == nil {
            throw ValidationError("--checkpointing must be one of \(ActivationCheckpointing.allCases.map(\.rawValue).joined(separator: ", ")), got '\(checkpointing)'")
        }
        if let precision, MatmulPrecision(rawValue: precision) == nil {
            throw ValidationError("--precision must be fp32 or bf16, got '\(precision)'")
        }
        if resume && out == nil { throw ValidationError("--resume needs --out DIR (the run folder to continue)") }
        if `init` != nil && config != nil {
            throw ValidationError("--init starts from a saved model, whose folder fixes the architecture; --config would be ignored: give one of them")
        }
        if resume && force { throw ValidationError("--resume continues the run in --out and --force deletes it: choose one") }
    }

    /// The run options of a new run: what the command line gives, defaults for the rest.
    func options() -> TrainingRunOptions {
        var o = TrainingRunOptions()
        o.model = .config(configSpec)
        var t = TrainingConfig()  // the library's defaults, which --help states, but for:
        if let steps { t.steps = steps }
        t.warmupSteps = max(1, min(30, t.steps / 10))
        t.evalEvery = 50
        o.training = t
        o = given(over: o)
        let base = `init` != nil ? "finetune" : URL(fileURLWithPath: configSpec).deletingPathExtension().lastPathComponent
        o.outputDirectory = out ?? "runs/\(base)\(ffn == "dense" ? "-dense" : "")"
        return o
    }

    /// `base` with every run option the command line gives put over it (--steps and --out
    /// aside: the length and the folder of the run, not its settings).
    func given(over base: TrainingRunOptions) -> TrainingRunOptions {
        var o = base
        if let config { o.model = .config(config) }
        if let path = `init` { o.model = .initFrom(path) }
        if let ffn { o.dense = ffn == "dense" }
        if let data { o.dataPath = data }
        if let objective { o.training.objective = Objective(rawValue: objective)! }
        if let batchSize { o.training.batchSize = batchSize }
        if let seq { o.training.sequenceLength = seq }
        if let lr { o.training.learningRate = lr }
        if let warmup { o.training.warmupSteps = warmup }
        if let weightDecay { o.training.weightDecay = weightDecay }
        if let gradClip { o.training.gradClip = gradClip }
        if let accumulate { o.training.gradAccumulation = accumulate }
        if let evalEvery { o.training.evalEvery = evalEvery }
        if let evalBatches { o.training.evalBatches = evalBatches }
        if let checkpointEvery { o.training.checkpointEvery = checkpointEvery }
        if let freeze { o.training.freeze = FreezeMode(rawValue: freeze)! }
        if let checkpointing { o.training.checkpointing = ActivationCheckpointing(rawValue: checkpointing)! }
        if let precision { o.training.precision = MatmulPrecision(rawValue: precision)! }
        if let seed { o.training.seed = seed }
        return o
    }

    func run() throws {
        guard let parallel else {
            if expertRanks != nil { throw ValidationError("--expert-ranks needs --parallel data,expert") }
            return try train(communicator: nil)
        }
        let layout = try parallelLayout(parallel, expertRanks: expertRanks)
        guard collectiveTimeout > 0 && collectiveTimeout.isFinite else {
            throw ValidationError("--collective-timeout must be > 0 seconds, got \(collectiveTimeout)")
        }
        let comm = try MPICommunicator(timeout: collectiveTimeout)
        do {
            if case let .dataExpert(m) = layout, comm.size % m != 0 {
                throw ValidationError("--expert-ranks \(m) must divide the \(comm.size) ranks (one of \((1...comm.size).filter { comm.size % $0 == 0 }.map(String.init).joined(separator: ", ")))")
            }
            try train(communicator: comm, parallel: layout)
            comm.finalize()
        } catch {
            // One rank's error ends every rank, so that no peer waits for it.
            FileHandle.standardError.write(Data("moe train: rank \(comm.rank) of \(comm.size): \(error)\n".utf8))
            if comm.size > 1 { comm.abort(code: 1) }
            throw error
        }
    }

    /// The run, single-process or as one rank (rank 0 alone prints).
    func train(communicator: MPICommunicator?, parallel: ParallelLayout = .data) throws {
        let rank = communicator?.rank ?? 0
        func print(_ line: String) { if rank == 0 { Swift.print(line) } }
        try applyThreads(threads)
        var opts = options()
        if resume {
            let saved = URL(fileURLWithPath: opts.outputDirectory).appendingPathComponent("run.json")
            guard let data = FileManager.default.contents(atPath: saved.path) else {
                throw SparseMoEError.file(path: saved.path, message: "no run to resume here (run.json is missing)")
            }
            do { opts = try decodeJSON(TrainingRunOptions.self, from: data) } catch {
                throw SparseMoEError.file(path: saved.path, message: "cannot read the saved run (\(error)); "
                                          + "restore it, or start a new run with --force")
            }
            // Options given with --resume must be the run's own: it continues as it was saved.
            let changes = try opts.differences(from: given(over: opts), ignoring: ["training.steps", "outputDirectory"])
            if !changes.isEmpty {
                throw ValidationError("--resume continues the run in \(opts.outputDirectory) as saved in run.json, but the "
                                      + "command line changes \(changes.joined(separator: "; ")). Leave those options out, "
                                      + "or start a new run (another --out, or --force)")
            }
        }
        // Flags that are not run options but must match across ranks too.
        let flags: [(name: String, value: String)] = communicator == nil ? [] : [("flags.parallel", "\(parallel)"),
                                                                                 ("flags.collective_timeout", "\(collectiveTimeout)")]
        let run = try TrainingRun(options: opts, resume: resume, force: force, steps: resume ? steps : nil, communicator: communicator,
                                  parallel: parallel, settings: flags)
        // Tests of a rank that dies mid-run (Tests/MPI/run.sh): rank 1 kills itself after this step.
        let exitAtStep = rank == 1 ? ProcessInfo.processInfo.environment["SPARSEMOE_DEBUG_EXIT_AT_STEP"].flatMap { Int($0) } : nil
        for skipped in run.skippedCheckpoints { print("moe train: skipping damaged checkpoint \(skipped)") }
        if let from = run.resumedFrom, !run.skippedCheckpoints.isEmpty { print("moe train: resuming from \(from.path)") }
        let c = run.config
        let m = run.trainer.model.config
        let a = run.accounting
        let moeLayers = run.trainer.model.moeLayers.count
        print("moe train: \(m.moe == nil ? "dense" : "MoE") model from \(describe(opts.model)), \(m.numLayers) layers"
              + (m.moe != nil && moeLayers < m.numLayers ? " (\(moeLayers) MoE)" : "") + ", width \(m.hiddenSize)"
              + (m.moe.map { ", \($0.numExperts) experts top-\($0.topK)" } ?? ", FFN \(m.intermediateSize)"))
        print("  parameters \(grouped(a.totalParams)) total, \(grouped(a.activeParams)) active per token; data: \(opts.dataPath ?? "synthetic multi-task corpus")"
              + " (\(grouped(run.trainer.dataset.trainRange.count)) train / \(grouped(run.trainer.dataset.validationRange.count)) validation tokens)")
        print("  \(c.steps) steps × \(c.batchSize)×\(c.sequenceLength) tokens\(c.gradAccumulation > 1 ? " × \(c.gradAccumulation)" : ""), \(c.objective.rawValue) LM, lr \(c.learningRate), \(Threads.count) threads"
              + (run.trainer.step > 0 ? ", resuming at step \(run.trainer.step)" : "")
              + (communicator.map { ", \(Self.describe(parallel, ranks: $0.size)) over \($0.size) ranks (\(c.batchSize / $0.size) sequences each)" } ?? ""))
        if c.precision == .bfloat16 {
            print("  matmuls with bf16 operands and float32 sums (\(MatmulPrecision.bf16Kernel.summary))"
                  + "; routers, norms, losses and optimizer in float32")
        }
        let progress = Progress(total: c.steps, startStep: run.trainer.step, terminal: stdoutIsTerminal, quiet: quiet || rank != 0)
        let summary = try run.run(onStep: { report, elapsed in
                                      progress.step(report, elapsed: elapsed)
                                      if report.step == exitAtStep {
                                          FileHandle.standardError.write(Data("moe train: rank 1: SPARSEMOE_DEBUG_EXIT_AT_STEP: killing this rank after step \(report.step)\n".utf8))
                                          kill(getpid(), SIGKILL)
                                      }
                                  },
                                  onEvaluation: { step, loss in progress.evaluation(step: step, loss: loss) })
        progress.finish()
        if rank == 0 { printSummary(summary, run: run) }
    }

    static func describe(_ layout: ParallelLayout, ranks: Int) -> String {
        switch layout {
        case .data: return "data parallel"
        case .expert: return "expert parallel"
        case let .dataExpert(m): return "data and expert parallel (\(ranks / m) groups of \(m))"
        }
    }

    /// Rank 0's collectives per step, by kind.
    static func communicationTable(_ c: CommunicationReport) -> String {
        func mb(_ b: Double) -> String { b >= 1e6 ? String(format: "%.3f MB", b / 1e6) : b >= 1e3 ? String(format: "%.3f kB", b / 1e3) : String(format: "%.0f B", b) }
        var lines = ["communication per step, rank \(c.rank) of \(c.ranks) (mean over \(c.steps) steps; payload bytes handed to the transport):",
                     pad("kind", -36) + pad("calls", 8) + pad("sent", 14) + pad("received", 14) + pad("wait", 12)]
        for name in c.perStep.keys.sorted() {
            let e = c.perStep[name]!
            lines.append(pad(name, -36) + pad(String(format: "%.1f", e.calls), 8) + pad(mb(e.bytesSent), 14) + pad(mb(e.bytesReceived), 14)
                         + pad(String(format: "%.2f ms", e.waitMS), 12))
        }
        lines.append(pad("total", -36) + pad("", 8) + pad(mb(c.bytesSentPerStep), 14) + pad(mb(c.bytesReceivedPerStep), 14)
                     + pad(String(format: "%.2f ms", c.waitMSPerStep), 12)
                     + String(format: "  (%.1f%% of the %.1f ms step)", 100 * c.waitMSPerStep / max(c.stepMSMean, 1e-9), c.stepMSMean))
        return lines.joined(separator: "\n")
    }

    func describe(_ s: ModelSource) -> String {
        switch s {
        case let .config(x): return x
        case let .initFrom(d): return d
        }
    }

    func printSummary(_ s: TrainingSummary, run: TrainingRun) {
        print("")
        print(String(format: "train loss %.4f   validation loss %.4f   (%@ steps, %d skipped)", s.trainLoss, s.valLoss, grouped(s.steps), s.skippedSteps))
        print(String(format: "speed %@ tokens/s   time %@   %.1f GFLOP/s model FLOPs", grouped(Int(s.tokensPerSecond)), clock(s.seconds), s.achievedGFLOPS)
              + (s.peakGFLOPS.map { String(format: " = %.0f%% of the %.0f GFLOP/s sgemm peak", 100 * s.achievedGFLOPS / $0, $0) } ?? ""))
        if let p50 = s.stepMSP50, let p95 = s.stepMSP95 {
            print(String(format: "step time: median %.1f ms, p95 %.1f ms (p95 / median %.3f)", p50, p95, p95 / p50))
        }
        if let rss = s.peakRSSBytes, let act = s.activationBytes, let peak = s.analyticPeakBytes {
            print(String(format: "memory: peak RSS %.1f MB (%.1f MB above the %.1f MB before the model); analytic %.1f MB (activations %.1f MB, checkpointing %@)",
                         Double(rss) / 1e6, Double(rss - (s.baselineRSSBytes ?? 0)) / 1e6, Double(s.baselineRSSBytes ?? 0) / 1e6,
                         Double(peak) / 1e6, Double(act) / 1e6, (s.checkpointing ?? .none).rawValue))
        }
        if let c = s.communication { print(Self.communicationTable(c)) }
        print("parameters: \(grouped(s.totalParams)) total, \(grouped(s.activeParams)) active per token, \(grouped(s.trainableParams)) trained")
        var line = "forward FLOPs/token (seq \(run.config.sequenceLength)): \(humanCount(s.forwardFlopsPerToken))"
        if let d = s.denseSameActiveForwardFlopsPerToken {
            line += String(format: "; dense, same active params: %@ (×%.2f)", humanCount(d), s.forwardFlopsPerToken / d)
        }
        if let d = s.denseSameTotalForwardFlopsPerToken {
            line += String(format: "; dense, same total params: %@ (×%.2f)", humanCount(d), s.forwardFlopsPerToken / d)
        }
        print(line)
        if !s.expertLoad.isEmpty {
            print("\nexpert load over the run (share of assignments; balanced = \(String(format: "%.3f", 1 / Double(s.expertLoad.first!.value.count)))):")
            let e = s.expertLoad.first!.value.count
            print("layer " + (0..<e).map { pad("e\($0)", 6) }.joined() + "      cv  max/mean")
            for key in s.expertLoad.keys.sorted(by: { Int($0)! < Int($1)! }) {
                let shares = s.expertLoad[key]!
                let mean = 1 / Double(shares.count)
                let sd = (shares.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(shares.count)).squareRoot()
                print(pad(key, 5) + " " + shares.map { String(format: "%6.3f", $0) }.joined()
                      + String(format: "  %6.3f  %8.2f", sd / mean, shares.max()! / mean))
            }
        }
        if let byTask = s.valLossByTask, !byTask.isEmpty {
            print("\nvalidation loss by task: " + SyntheticTask.allCases.compactMap { task in
                byTask[task.rawValue].map { "\(task.rawValue) \(String(format: "%.4f", $0))" }
            }.joined(separator: ", "))
        }
        if let byTask = s.expertLoadByTask, !byTask.isEmpty {
            let e = byTask.first!.value.count
            print("\nexpert share by task, last MoE layer (validation tokens):")
            print("task  " + (0..<e).map { pad("e\($0)", 6) }.joined())
            for task in SyntheticTask.allCases {
                guard let shares = byTask[task.rawValue] else { continue }
                print(pad(task.rawValue, -5) + " " + shares.map { String(format: "%6.3f", $0) }.joined())
            }
        }
        let out = run.output.path
        print("\nreport: \(out)/summary.json, \(out)/loss.svg\(s.expertLoad.isEmpty ? "" : ", \(out)/expert_load.svg"); model: \(out)/model")
    }
}

/// Progress display: a redrawn bar on a terminal, plain log lines otherwise.
final class Progress {
    let total: Int, startStep: Int, terminal: Bool, quiet: Bool
    var tokens = 0
    var lastLine = 0.0
    var lastVal: Double?
    let every: Int

    init(total: Int, startStep: Int, terminal: Bool, quiet: Bool) {
        self.total = total
        self.startStep = startStep
        self.terminal = terminal
        self.quiet = quiet
        every = max(1, total / 20)
    }

    func step(_ r: StepReport, elapsed: Double) {
        tokens += r.tokens
        guard !quiet else { return }
        let done = r.step - startStep
        let rate = Double(tokens) / max(elapsed, 1e-9)
        let eta = elapsed / Double(max(done, 1)) * Double(total - r.step)
        let load = r.routing.compactMap { $0 }.last.map { "  load \(sparkline($0.fraction))" } ?? ""
        if r.skipped {
            let msg = "step \(r.step): gradients held NaN/Inf (norm \(r.gradNorm)); update skipped"
            if terminal { print("\r\u{1B}[K" + msg) } else { print(msg) }
        }
        if terminal {
            let width = 24
            let filled = Int(Double(width) * Double(r.step) / Double(total))
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            let line = String(format: "\r\u{1B}[Kstep %d/%d %@ loss %.3f%@  %@ tok/s  ETA %@%@", r.step, total, bar, r.loss,
                              r.auxLoss > 0 ? String(format: " aux %.3f", r.auxLoss) : "", grouped(Int(rate)), clock(eta), load)
            FileHandle.standardOutput.write(Data(line.utf8))
        } else if r.step % every == 0 || r.step == total {
            print(String(format: "step %d/%d loss %.4f aux %.4f lr %.2e grad-norm %.3f %@ tok/s eta %@%@", r.step, total, r.loss, r.auxLoss,
                         r.learningRate, r.gradNorm, grouped(Int(rate)), clock(eta), load))
        }
        fflush(nil)  // log lines reach a file or pipe as they happen
    }

    func evaluation(step: Int, loss: Double) {
        guard !quiet else { return }
        let msg = String(format: "step %d: validation loss %.4f", step, loss)
        if terminal { print("\r\u{1B}[K" + msg) } else { print(msg) }
        fflush(nil)
    }

    func finish() {
        if terminal && !quiet { print("") }
    }
}
