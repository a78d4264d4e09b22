import Foundation
import SparseMoE
import SparseMoEReporting
import SparseMoEBench

/// Where the model of a training run comes from.
public enum ModelSource: Codable, Sendable, Equatable {
    /// A named preset (`TransformerConfig.presetNames`) or a TransformerConfig JSON file.
    case config(String)
    /// A saved model folder to fine-tune (library-native or Hugging Face).
    case initFrom(String)
}

/// Everything `moe train` decides before work starts; saved as `run.json` in the
/// output folder so `--resume` can rebuild the same run.
public struct TrainingRunOptions: Codable, Sendable, Equatable {
    public var model: ModelSource = .config("tiny-moe")
    /// Replace every MoE layer by its dense twin with the same active parameters.
    public var dense = false
    /// A text file (UTF-8 bytes); nil = the built-in synthetic multi-task corpus.
    public var dataPath: String?
    public var validationFraction = 0.1
    /// Size of the synthetic corpus when `dataPath` is nil.
    public var syntheticCorpusBytes = 1_500_000
    public var training = TrainingConfig()
    public var outputDirectory = "runs/tiny-moe"

    public init() {}

    /// The settings in which `other` differs from these, as "name: ours → theirs", named by
    /// their keys in run.json (`training.learning_rate`, `dataPath`, …), in key order.
    /// `ignoring` leaves keys out (a resumed run may change `training.steps`; the output folder
    /// is where the run is, not a setting).
    public func differences(from other: TrainingRunOptions, ignoring: Set<String> = []) throws -> [String] {
        func flat(_ o: TrainingRunOptions) throws -> [String: String] {
            let enc = JSONEncoder()
            var out: [String: String] = [:]
            func walk(_ v: Any, _ key: String) {
                if let d = v as? [String: Any] {
                    for (k, sub) in d { walk(sub, key.isEmpty ? k : "\(key).\(k)") }
                } else if let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys]) {
                    out[key] = String(decoding: data, as: UTF8.self)
                }
            }
            walk(try JSONSerialization.jsonObject(with: enc.encode(o)), "")
            return out
        }
        let mine = try flat(self), theirs = try flat(other)
        return Set(mine.keys).union(theirs.keys).subtracting(ignoring).sorted().compactMap { key in
            let a = mine[key] ?? "(none)", b = theirs[key] ?? "(none)"
            return a == b ? nil : "\(key): \(a) → \(b)"
        }
    }
}

/// A Double that JSON cannot hold as a number when it is NaN or infinite (a loss of a
/// skipped step, a rate over no time): encoded as `null` then, decoded from `null` as NaN.
@propertyWrapper
public struct NullWhenNotFinite: Codable, Sendable, Equatable {
    public var wrappedValue: Double
    public init(wrappedValue: Double) { self.wrappedValue = wrappedValue }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? .nan : try c.decode(Double.self)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if wrappedValue.isFinite { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.wrappedValue == b.wrappedValue || (a.wrappedValue.isNaN && b.wrappedValue.isNaN)
    }
}

/// `x` when finite, else nil (for optional numbers bound for JSON).
func finite(_ x: Double?) -> Double? { x.flatMap { $0.isFinite ? $0 : nil } }

/// One row of the loss history.
public struct LossPoint: Codable, Sendable, Equatable {
    public var step: Int
    /// NaN when the step's loss was not finite (written as null).
    @NullWhenNotFinite public var trainLoss: Double
    public var validationLoss: Double?

    public init(step: Int, trainLoss: Double, validationLoss: Double?) {
        self.step = step
        self.trainLoss = trainLoss
        self.validationLoss = validationLoss
    }

    enum CodingKeys: String, CodingKey { case step, trainLoss = "train_loss", validationLoss = "val_loss" }
}

/// The result of a run, written as `summary.json`. A number that is not finite (a NaN
/// loss) is written as null, never as invalid JSON.
public struct TrainingSummary: Codable, Sendable {
    public var model: String
    public var ffn: String
    public var data: String
    public var objective: Objective
    public var steps: Int
    public var skippedSteps: Int
    @NullWhenNotFinite public var trainLoss: Double
    @NullWhenNotFinite public var valLoss: Double
    @NullWhenNotFinite public var tokensPerSecond: Double
    @NullWhenNotFinite public var seconds: Double
    /// Median and 95th percentile of the time of one `Trainer.trainStep()` over the steps of
    /// this run (linear interpolation, `percentileOf`), milliseconds; evaluations and
    /// checkpoints not included. p95 / p50 says how evenly the steps ran.
    public var stepMSP50: Double?
    public var stepMSP95: Double?
    /// Every step's time in order, milliseconds (as `stepMSP50`): where the slow steps fall.
    /// nil in older summaries.
    public var stepMS: [Double]? = nil
    public var threads: Int
    public var totalParams: Int
    public var activeParams: Int
    public var trainableParams: Int
    @NullWhenNotFinite public var forwardFlopsPerToken: Double
    @NullWhenNotFinite public var trainingFlopsPerToken: Double
    public var denseSameActiveForwardFlopsPerToken: Double?
    public var denseSameTotalForwardFlopsPerToken: Double?
    @NullWhenNotFinite public var achievedGFLOPS: Double
    public var peakGFLOPS: Double?
    public var modelFLOPsUtilization: Double?
    /// Share of assignments per expert over the whole run, per MoE layer (layer index → shares).
    public var expertLoad: [String: [Double]]
    /// Expert share per synthetic task for the last MoE layer (task → shares), synthetic corpus only.
    public var expertLoadByTask: [String: [Double]]?
    /// Validation loss per synthetic task (task → mean cross-entropy of the predictions made
    /// on that task's lines), synthetic corpus only; nil in older summaries.
    public var valLossByTask: [String: Double]? = nil
    public var history: [LossPoint]
    /// What the forward kept for backward (`ActivationCheckpointing`); nil in older summaries.
    public var checkpointing: ActivationCheckpointing? = nil
    /// The matmul arithmetic of the run (`MatmulPrecision`); nil in older summaries.
    public var precision: MatmulPrecision? = nil
    /// Peak resident memory of the process over the training steps and evaluations (`VmHWM`
    /// when the last step ended, before the final checkpoint is written), bytes.
    public var peakRSSBytes: Int? = nil
    /// Resident memory when the run was set up, before the model was built (code, libraries,
    /// the data set): what peak RSS holds besides the analytic training memory.
    public var baselineRSSBytes: Int? = nil
    /// Analytic activation bytes one micro-batch keeps for backward (`TrainingMemoryEstimate`).
    public var activationBytes: Int? = nil
    /// Analytic peak: parameters, gradients, AdamW moments, activations and the backward
    /// transient (`TrainingMemoryEstimate.totalBytes`); peak RSS adds the process's own footprint.
    public var analyticPeakBytes: Int? = nil
    /// Data parallel: this rank's (rank 0's) collectives per step, by kind; nil for one process.
    public var communication: CommunicationReport? = nil

    enum CodingKeys: String, CodingKey {
        case model, ffn, data, objective, steps, threads, seconds, history, checkpointing, communication, precision
        case peakRSSBytes = "peak_rss_bytes", baselineRSSBytes = "baseline_rss_bytes", activationBytes = "activation_bytes", analyticPeakBytes = "analytic_peak_bytes"
        case skippedSteps = "skipped_steps", trainLoss = "train_loss", valLoss = "val_loss"
        case stepMSP50 = "step_ms_p50", stepMSP95 = "step_ms_p95", stepMS = "step_ms"
        case tokensPerSecond = "tokens_per_second", totalParams = "total_params", activeParams = "active_params"
        case trainableParams = "trainable_params", forwardFlopsPerToken = "forward_flops_per_token"
        case trainingFlopsPerToken = "training_flops_per_token"
        case denseSameActiveForwardFlopsPerToken = "dense_same_active_forward_flops_per_token"
        case denseSameTotalForwardFlopsPerToken = "dense_same_total_forward_flops_per_token"
        case achievedGFLOPS = "achieved_gflops", peakGFLOPS = "peak_gflops", modelFLOPsUtilization = "mfu"
        case expertLoad = "expert_load", expertLoadByTask = "expert_load_by_task", valLossByTask = "val_loss_by_task"
    }
}

extension TransformerConfig {
    /// The dense model with the same active parameters: each MoE layer becomes one FFN
    /// of hidden K·F + (shared hidden) (exact for SwiGLU experts and shared experts).
    public func denseTwin() -> TransformerConfig {
        guard let m = moe else { return self }
        var c = self
        c.moe = nil
        c.ffnKind = m.expertKind
        c.intermediateSize = m.topK * m.expertIntermediateSize + (m.sharedExperts > 0 ? m.sharedExpertIntermediateSize : 0)
        return c
    }
}

/// A whole `moe train` run: builds data, model and trainer (validating everything
/// first), trains with periodic evaluation and checkpoints, and writes the report
/// folder (summary.json, loss.svg, expert_load.svg, model/, checkpoints/).
public final class TrainingRun {
    public let options: TrainingRunOptions
    public let trainer: Trainer
    public let accounting: ModelAccounting
    public let corpus: SyntheticCorpus?
    public let output: URL
    public private(set) var history: [LossPoint] = []
    /// Per MoE layer, per expert: assignments summed over the run.
    var loadTotals: [[Int]]
    /// Per MoE layer: load shares averaged per time bucket (for the heatmap).
    var loadBuckets: [[[Double]]]
    var bucketAccumulator: [[Double]]
    var bucketCount = 0
    let bucketSize: Int
    var skipped = 0
    /// Resident bytes after the data set was built, before the model (`TrainingSummary.baselineRSSBytes`).
    let baselineRSS: Int
    /// Peak resident bytes when the last step (and its evaluation) ended, before the final
    /// checkpoint and model files are written (`TrainingSummary.peakRSSBytes`).
    var peakRSSOfTraining = 0
    /// Wall time of every `trainStep()` of this run, milliseconds.
    public private(set) var stepMS: [Double] = []

    /// The files and folders a run writes into its output folder; any of them there means
    /// the folder already holds a run.
    public static let runFiles = ["run.json", "summary.json", "model", "checkpoints",
                                  "loss.svg", "loss.png", "expert_load.svg", "expert_load.png"]

    /// With `resume`: the checkpoint folder the run continues from.
    public let resumedFrom: URL?
    /// With `resume`: damaged checkpoints passed over (newest first), each with the reason.
    public let skippedCheckpoints: [String]
    /// Whether `run()` removes the previous run's files before writing (`force`).
    let replaceExisting: Bool
    /// Data-parallel rank of this process (0 without a communicator); only rank 0 writes files.
    public let rank: Int
    /// Number of data-parallel ranks (1 without a communicator).
    public let ranks: Int
    /// This rank's collectives summed over the steps of this run (`StepReport.communication`).
    public private(set) var stepCommunication = CommunicationTally()

    /// Builds the run. Fails before any training on bad options, configs or data.
    ///
    /// An output folder that already holds a run (any of `runFiles`) is refused unless
    /// `resume` (continue the checkpoint in `options.outputDirectory/checkpoints`) or
    /// `force` (`run()` removes the old run's files, then starts clean) is set; an empty
    /// or unrelated folder is used as it is. `steps`, with `resume`: train the resumed run
    /// to this many steps instead of its own count (more than the checkpoint's step; the
    /// cosine schedule is recomputed over the new total). Resuming a run that already
    /// reached its steps, without a larger `steps`, throws. With `communicator`, every rank
    /// builds the same run and trains data-parallel (`Trainer`); rank 0 alone writes the
    /// report, checkpoints and model (`parallel`: data, expert or both; see `Trainer`).
    ///
    /// With a communicator of more than one rank, every rank first compares its settings with
    /// rank 0's (`RunSettings`: the options, how the run was started, the resolved model
    /// config, the data, and `settings`, the caller's own fields such as its parallel flags)
    /// and throws `SettingsMismatch`, naming the differing fields, on every rank when any differ.
    public init(options: TrainingRunOptions, resume: Bool = false, force: Bool = false, steps: Int? = nil,
                communicator: (any Communicator)? = nil, parallel: ParallelLayout = .data,
                settings: [(name: String, value: String)] = []) throws {
        guard !(resume && force) else {
            throw SparseMoEError.invalidArgument(op: "TrainingRun", message: "resume continues the run in \(options.outputDirectory) and force deletes it: choose one")
        }
        if steps != nil && !resume {
            throw SparseMoEError.invalidArgument(op: "TrainingRun", message: "a step count override is only for resuming; set options.training.steps for a new run")
        }
        var options = options
        var t = options.training
        try t.validate()
        output = URL(fileURLWithPath: options.outputDirectory)
        let existing = try Self.existingRunFiles(in: output)
        if !existing.isEmpty && !resume && !force {
            throw SparseMoEError.file(path: output.path, message: "already holds a training run (\(existing.joined(separator: ", "))); "
                                      + "use --resume to continue it or --force to start clean (this deletes the old run's files)")
        }
        replaceExisting = force && !existing.isEmpty
        // Data first: a missing or empty file is the most common mistake.
        let dataset: TextDataset
        if let path = options.dataPath {
            dataset = try TextDataset(contentsOf: path, sequenceLength: t.sequenceLength, validationFraction: options.validationFraction)
            corpus = nil
        } else {
            let c = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: t.seed, targetBytes: options.syntheticCorpusBytes))
            dataset = try TextDataset(tokens: c.tokens, sequenceLength: t.sequenceLength, validationFraction: options.validationFraction)
            corpus = c
        }
        let maxToken = dataset.tokens.max() ?? 0
        baselineRSS = ProcessMemory.residentBytes
        // Model.
        let model: TransformerLM
        let resolved = resume ? try TrainingCheckpoint.resolveVerified(output.appendingPathComponent("checkpoints")) : nil
        let checkpoint = resolved?.folder
        resumedFrom = checkpoint
        skippedCheckpoints = resolved?.skipped ?? []
        if let folder = checkpoint {
            let state = try TrainingCheckpoint.loadState(folder)
            t = state.config
            if let steps {
                guard steps > state.step else {
                    throw SparseMoEError.invalidConfig(field: "steps", message: "the run in \(output.path) is already at step \(state.step); "
                                                       + "to train further, give more steps than that (got \(steps))")
                }
                t.steps = steps
                try t.validate()
            } else if state.step >= t.steps {
                throw SparseMoEError.invalidConfig(field: "steps", message: "the run in \(output.path) already reached its \(t.steps) steps; "
                                                   + "to train further, resume with more steps (--steps M with M > \(t.steps))")
            }
            options.training = t
            model = try ModelFiles.load(from: folder)
        } else {
            switch options.model {
            case let .config(spec):
                var config = try TransformerConfig.load(presetOrPath: spec)
                if options.dense { config = config.denseTwin() }
                if t.objective == .masked { config.causal = false }
                if t.sequenceLength > config.maxSequenceLength {
                    throw SparseMoEError.invalidConfig(field: "sequence_length", message: "\(t.sequenceLength) exceeds the model's max_position_embeddings \(config.maxSequenceLength)")
                }
                // Too big for memory: a model field of a config file is named with the file.
                do { try t.checkMemory(model: config) } catch let SparseMoEError.invalidConfig(field, message)
                    where field != "batch_size" && !TransformerConfig.presetNames.contains(spec) {
                    throw SparseMoEError.file(path: spec, message: SparseMoEError.invalidConfig(field: field, message: message).description)
                }
                model = try TransformerLM(config: config, seed: t.seed)
            case let .initFrom(dir):
                model = try ModelLoader.load(directory: URL(fileURLWithPath: dir))
            }
        }
        guard maxToken < Int32(model.config.vocabSize) else {
            throw SparseMoEError.invalidConfig(field: "vocab_size", message: "the model's vocabulary (\(model.config.vocabSize)) is smaller than the byte tokenizer's (\(ByteTokenizer.vocabularySize)) and the data uses ids up to \(maxToken)")
        }
        let counting = communicator.map { CountingCommunicator.wrapping($0) }
        if let c = counting {
            let fields = try RunSettings.fields(options: options, model: model.config, dataset: dataset, resume: resume, force: force,
                                                steps: steps, extra: settings)
            try SettingsAgreement.check(fields, communicator: c)
        }
        trainer = try Trainer(model: model, dataset: dataset, config: t, communicator: counting, parallel: parallel)
        rank = communicator?.rank ?? 0
        ranks = communicator?.size ?? 1
        if let folder = checkpoint { try TrainingCheckpoint.restore(trainer, from: folder) }
        accounting = try ModelAccounting(ModelArchitecture(transformer: model.config), sequenceLength: t.sequenceLength)
        let layers = model.moeLayers
        loadTotals = layers.map { [Int](repeating: 0, count: $0.experts.numExperts) }
        loadBuckets = layers.map { _ in [] }
        bucketAccumulator = layers.map { [Double](repeating: 0, count: $0.experts.numExperts) }
        bucketSize = max(1, t.steps / 60)
        self.options = options
    }

    /// The entries of `runFiles` present in `folder` (none when it does not exist yet).
    /// Throws when `folder` is a regular file.
    static func existingRunFiles(in folder: URL) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else {
            throw SparseMoEError.file(path: folder.path, message: "is a file, not a folder; the output (--out) must be a folder for the run's report")
        }
        return runFiles.filter { FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }
    }

    public var config: TrainingConfig { trainer.config }

    /// Trains to `config.steps`. `onStep` sees every step; `onEvaluation` every evaluation.
    public func run(onStep: (StepReport, Double) -> Void = { _, _ in },
                    onEvaluation: (Int, Double) -> Void = { _, _ in }) throws -> TrainingSummary {
        let writes = rank == 0
        if replaceExisting && writes {
            for name in try Self.existingRunFiles(in: output) {
                try FileManager.default.removeItem(at: output.appendingPathComponent(name))
            }
        }
        if writes {
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(encoder.encode(options), to: output.appendingPathComponent("run.json"))
        }
        let clock = ContinuousClock(), start = clock.now
        func elapsed() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        var tokens = 0
        var lastTrain = Double.nan, lastVal = Double.nan
        let c = config
        while trainer.step < c.steps {
            let stepStart = clock.now
            let report = try trainer.trainStep()
            stepMS.append(MachinePeak.seconds(clock.now - stepStart) * 1e3)
            tokens += report.tokens
            stepCommunication = stepCommunication + report.communication
            if report.skipped { skipped += 1 }
            record(report.routing)
            lastTrain = report.loss
            var point = LossPoint(step: report.step, trainLoss: report.loss, validationLoss: nil)
            if (c.evalEvery > 0 && report.step % c.evalEvery == 0) || report.step == c.steps {
                lastVal = try trainer.evaluate()
                point.validationLoss = lastVal
                onEvaluation(report.step, lastVal)
            }
            history.append(point)
            if c.checkpointEvery > 0 && report.step % c.checkpointEvery == 0 && report.step < c.steps {
                try trainer.gatherExperts()  // expert parallelism: rank 0 gets the full model
                if writes { try TrainingCheckpoint.save(trainer, to: output.appendingPathComponent("checkpoints")) }
            }
            onStep(report, elapsed())
        }
        let seconds = elapsed()
        peakRSSOfTraining = ProcessMemory.peakResidentBytes  // before the final checkpoint and model files
        try trainer.gatherExperts()
        if writes {
            try TrainingCheckpoint.save(trainer, to: output.appendingPathComponent("checkpoints"))
            try ModelFiles.save(trainer.model, to: output.appendingPathComponent("model"))
        }
        if lastVal.isNaN { lastVal = try trainer.evaluate() }
        let summary = try makeSummary(trainLoss: lastTrain, valLoss: lastVal, tokens: tokens, seconds: seconds)
        if writes { try writeReport(summary) }
        return summary
    }

    func record(_ routing: [RoutingStatistics?]) {
        let stats = routing.compactMap { $0 }
        guard stats.count == loadTotals.count else { return }
        for (l, s) in stats.enumerated() {
            for (e, n) in s.tokensPerExpert.enumerated() { loadTotals[l][e] += n }
            for (e, f) in s.fraction.enumerated() { bucketAccumulator[l][e] += f }
        }
        bucketCount += 1
        if bucketCount == bucketSize {
            for l in 0..<loadBuckets.count {
                loadBuckets[l].append(bucketAccumulator[l].map { $0 / Double(bucketCount) })
                bucketAccumulator[l] = bucketAccumulator[l].map { _ in 0 }
            }
            bucketCount = 0
        }
    }

    /// Share of assignments per expert over the run, per MoE layer.
    public var expertLoad: [[Double]] {
        loadTotals.map { row in
            let total = max(row.reduce(0, +), 1)
            return row.map { Double($0) / Double(total) }
        }
    }

    /// On the synthetic corpus (causal objective), from one pass over the validation batches
    /// `Trainer.evaluate` uses, in the run's precision: the validation loss per task (each
    /// prediction counts toward the task of the line its input byte belongs to) and, for the
    /// last MoE layer, the share of each task's assignments sent to each expert (nil for a
    /// dense model). Nil on other data.
    public func statisticsByTask() throws -> (validationLoss: [String: Double], expertLoad: [String: [Double]]?)? {
        guard let corpus, config.objective == .causal else { return nil }
        let tasks = SyntheticTask.allCases
        let layer = trainer.model.moeLayers.last
        var loss = GroupedLoss(groupCount: tasks.count)
        var counts = [[Int]](repeating: [Int](repeating: 0, count: layer?.experts.numExperts ?? 0), count: tasks.count)
        try MatmulPrecision.with(config.precision) {
            try withNoGrad {
                for batch in try trainer.dataset.evaluationBatches(.validation, batchSize: config.batchSize, maxBatches: config.evalBatches) {
                    let logits = try trainer.model.forward(batch.inputs).logits
                    let ids = corpus.taskIDs(of: batch)
                    loss.add(logits: logits, targets: batch.targets, groups: ids)
                    guard let experts = layer?.lastExperts else { continue }
                    let k = experts.shape[1]
                    for (t, task) in ids.enumerated() where Int(task) < counts.count {
                        for s in 0..<k {
                            let e = experts.int32s[t * k + s]
                            if e >= 0 { counts[Int(task)][Int(e)] += 1 }
                        }
                    }
                }
            }
        }
        var lossByTask: [String: Double] = [:], loadByTask: [String: [Double]] = [:]
        for (task, (g, row)) in zip(tasks, zip(loss.means, counts)) {
            if g.tokens > 0 { lossByTask[task.rawValue] = g.loss }
            let total = row.reduce(0, +)
            if total > 0 { loadByTask[task.rawValue] = row.map { Double($0) / Double(total) } }
        }
        return (lossByTask, layer == nil ? nil : loadByTask)
    }

    func makeSummary(trainLoss: Double, valLoss: Double, tokens: Int, seconds: Double) throws -> TrainingSummary {
        let peakRSS = peakRSSOfTraining
        let a = accounting
        let memory = try? TrainingMemoryEstimate(model: trainer.model.config, batchSize: config.batchSize,
                                                 sequenceLength: config.sequenceLength, checkpointing: config.checkpointing)
        let tps = Double(tokens) / max(seconds, 1e-9)
        let achieved = a.trainingFlopsPerToken * tps / 1e9
        let peak = try? MachinePeak.measureSGEMM()
        let byTask = try statisticsByTask()
        var load: [String: [Double]] = [:]
        let moeIndices = trainer.model.blocks.indices.filter { trainer.model.config.isMoELayer($0) }
        for (i, shares) in zip(moeIndices, expertLoad) { load["\(i)"] = shares }
        let source: String
        switch options.model {
        case let .config(s): source = s
        case let .initFrom(d): source = "init:" + d
        }
        return TrainingSummary(
            model: source, ffn: trainer.model.config.moe == nil ? "dense" : "moe",
            data: options.dataPath ?? "synthetic", objective: config.objective, steps: trainer.step, skippedSteps: skipped,
            trainLoss: trainLoss, valLoss: valLoss, tokensPerSecond: tps, seconds: seconds,
            stepMSP50: stepMS.isEmpty ? nil : finite(percentileOf(stepMS, 0.5)),
            stepMSP95: stepMS.isEmpty ? nil : finite(percentileOf(stepMS, 0.95)),
            stepMS: stepMS.isEmpty ? nil : stepMS.map { ($0 * 1000).rounded() / 1000 }, threads: Threads.count,
            totalParams: a.totalParams, activeParams: a.activeParams, trainableParams: trainer.trainableParameterCount,
            forwardFlopsPerToken: a.forwardFlopsPerToken, trainingFlopsPerToken: a.trainingFlopsPerToken,
            denseSameActiveForwardFlopsPerToken: finite(a.denseSameActive?.forwardFlopsPerToken),
            denseSameTotalForwardFlopsPerToken: finite(a.denseSameTotal?.forwardFlopsPerToken),
            achievedGFLOPS: achieved, peakGFLOPS: finite(peak), modelFLOPsUtilization: finite(peak.map { achieved / $0 }),
            expertLoad: load, expertLoadByTask: byTask?.expertLoad, valLossByTask: byTask?.validationLoss, history: history,
            checkpointing: config.checkpointing, precision: config.precision, peakRSSBytes: peakRSS, baselineRSSBytes: baselineRSS,
            activationBytes: memory?.activationBytes, analyticPeakBytes: memory?.totalBytes,
            communication: ranks > 1 ? CommunicationReport(ranks: ranks, rank: rank, steps: stepMS.count, tally: stepCommunication,
                                                           setup: (trainer.communicationTally ?? CommunicationTally()) - stepCommunication,
                                                           stepMSMean: stepMS.isEmpty ? 0 : stepMS.reduce(0, +) / Double(stepMS.count)) : nil)
    }

    func writeReport(_ summary: TrainingSummary) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(summary), to: output.appendingPathComponent("summary.json"))
        let train = SVGChart.Series(name: "train loss", points: history.map { (Double($0.step), $0.trainLoss) }, color: "#1f77b4")
        let val = SVGChart.Series(name: "validation loss", points: history.compactMap { p in p.validationLoss.map { (Double(p.step), $0) } },
                                  color: "#d62728")
        try SVGChart.write(SVGChart.lineChart(title: "\(summary.model) (\(summary.ffn)): loss", xLabel: "step",
                                              yLabel: "cross-entropy (nats/token)", series: [train, val]),
                           to: output.appendingPathComponent("loss.svg"))
        if !loadBuckets.isEmpty && !(loadBuckets.first?.isEmpty ?? true) {
            let moeIndices = trainer.model.blocks.indices.filter { trainer.model.config.isMoELayer($0) }
            let panels = zip(moeIndices, loadBuckets).map { (i, buckets) -> (name: String, values: [[Double]]) in
                let experts = buckets.first?.count ?? 0
                return ("layer \(i)", (0..<experts).map { e in buckets.map { $0[e] } })
            }
            try SVGChart.write(SVGChart.heatmaps(title: "Expert load over training (\(summary.model))", panels: panels,
                                                 rowLabel: "experts", columnLabel: "training time, \(bucketSize) steps each",
                                                 center: 1 / Double(trainer.model.moeLayers[0].experts.numExperts)),
                               to: output.appendingPathComponent("expert_load.svg"))
        }
    }
}
