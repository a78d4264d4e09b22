import SparseMoE
import SparseMoEBench

/// Training-step throughput of a preset (`moe bench --train`): `steps` timed
/// `Trainer.trainStep()` calls (forward, cross-entropy + aux loss, backward, clipping,
/// AdamW) after `warmup` untimed ones, on `Threads.count` threads, with the synthetic corpus
/// `moe train` uses. Evaluation, checkpoints and reports are not part of it.
///
/// MFU = training FLOPs per token (`ModelAccounting`, 3 × forward) × tokens/s ÷ the
/// sgemm peak measured by `MachinePeak.measureSGEMM` in the same process, after the steps.
/// Paired MFU holds each timed step against 1024³ sgemm products (the best of three) run right before it
/// and takes the median over the steps (`MachinePeak.pairedModelFLOPsUtilization`): on a
/// machine whose speed drifts it moves far less from run to run. MFU is against the float32
/// peak whatever the matmuls' `precision`.
public struct TrainingThroughput: Codable, Sendable {
    public var model: String
    /// The matmuls' precision (`MatmulPrecision`): "fp32" or "bf16".
    public var precision: String
    public var threads: Int
    public var steps: Int
    public var tokensPerStep: Int
    /// Median step time, milliseconds.
    public var stepMS: Double
    /// Tokens per step ÷ median step time.
    public var tokensPerSecond: Double
    /// All timed tokens ÷ all timed seconds.
    public var meanTokensPerSecond: Double
    public var trainingFLOPsPerToken: Double
    public var achievedGFLOPS: Double
    public var peakGFLOPS: Double
    public var modelFLOPsUtilization: Double
    /// Median over the timed steps of each step's MFU against the sgemm rate measured just before it.
    public var pairedModelFLOPsUtilization: Double
    /// Median of those per-step sgemm rates, GFLOP/s.
    public var pairedPeakGFLOPS: Double
    public var stepSpread: Double

    enum CodingKeys: String, CodingKey {
        case model, precision, threads, steps
        case tokensPerStep = "tokens_per_step", stepMS = "step_ms", tokensPerSecond = "tokens_per_second"
        case meanTokensPerSecond = "mean_tokens_per_second", trainingFLOPsPerToken = "training_flops_per_token"
        case achievedGFLOPS = "achieved_gflops", peakGFLOPS = "peak_gflops", modelFLOPsUtilization = "mfu"
        case pairedModelFLOPsUtilization = "mfu_paired", pairedPeakGFLOPS = "peak_gflops_paired"
        case stepSpread = "step_spread"
    }

    /// Builds `preset` (default `moe train`'s `tiny-moe`, batch 16 × 128 tokens, AdamW 2e-3)
    /// and times its training steps with matmuls in `precision`.
    public static func measure(preset: String = "tiny-moe", steps: Int = 20, warmup: Int = 3,
                               precision: MatmulPrecision = .float32,
                               progress: (String) -> Void = { _ in }) throws -> TrainingThroughput {
        try measure(preset: preset, steps: steps, warmup: warmup, precisions: [precision], progress: progress).results[0]
    }

    /// Times the training steps of `preset` in each of `precisions` (distinct, at least one)
    /// on the same model: each round runs one step per precision, the order rotating from round
    /// to round, each step after its own sgemm probe. So the precisions share the machine's
    /// drift, and `ratios[i][r]` — round r's step time in `precisions[0]` ÷ in `precisions[i]`
    /// — compares them step against neighbouring step (the steps train on, so they see
    /// successive batches and weights).
    public static func measure(preset: String, steps: Int, warmup: Int = 3, precisions: [MatmulPrecision],
                               progress: (String) -> Void = { _ in }) throws
        -> (results: [TrainingThroughput], ratios: [[Double]]) {
        guard steps >= 1, warmup >= 0 else {
            throw SparseMoEError.invalidArgument(op: "TrainingThroughput", message: "steps must be ≥ 1 and warmup ≥ 0, got \(steps), \(warmup)")
        }
        guard !precisions.isEmpty, Set(precisions).count == precisions.count else {
            throw SparseMoEError.invalidArgument(op: "TrainingThroughput",
                                                 message: "precisions must be distinct and not empty, got \(precisions.map(\.rawValue))")
        }
        var options = TrainingRunOptions()
        options.model = .config(preset)
        options.training.steps = (warmup + steps) * precisions.count
        options.training.warmupSteps = 0
        options.training.evalEvery = 0
        progress("train: building \(preset)")
        let run = try TrainingRun(options: options)
        let tokens = run.config.batchSize * run.config.sequenceLength * run.config.gradAccumulation
        let each = precisions.count > 1 ? " per precision (\(precisions.map(\.rawValue).joined(separator: ", ")), alternating)" : ""
        progress("train: \(warmup) warm-up + \(steps) timed steps\(each), each after three sgemm products of 1024³")
        let probe = try MachinePeak.SGEMMProbe()
        var timers = Array(repeating: RunTimer(), count: precisions.count)
        var peaks = Array(repeating: [Double](), count: precisions.count)
        for round in 0..<(warmup + steps) {
            for turn in 0..<precisions.count {
                let i = (round + turn) % precisions.count
                let rate = probe.gflops(repeats: 3)
                if round < warmup {
                    _ = try run.trainer.trainStep(precision: precisions[i])
                } else {
                    peaks[i].append(rate)
                    try timers[i].time { _ = try run.trainer.trainStep(precision: precisions[i]) }
                }
            }
        }
        progress("train: measuring the sgemm peak")
        let peak = try MachinePeak.measureSGEMM()
        let flops = run.accounting.trainingFlopsPerToken
        var results: [TrainingThroughput] = []
        for (i, precision) in precisions.enumerated() {
            let timing = timers[i].summary
            let tps = Double(tokens) / (timing.medianMS / 1e3)
            let achieved = flops * tps / 1e9
            let paired = try MachinePeak.pairedModelFLOPsUtilization(flops: flops * Double(tokens), stepMS: timing.runsMS, peakGFLOPS: peaks[i])
            results.append(TrainingThroughput(
                model: preset, precision: precision.rawValue, threads: Threads.count, steps: steps, tokensPerStep: tokens,
                stepMS: timing.medianMS, tokensPerSecond: tps,
                meanTokensPerSecond: Double(tokens * steps) / (timing.runsMS.reduce(0, +) / 1e3),
                trainingFLOPsPerToken: flops, achievedGFLOPS: achieved, peakGFLOPS: peak,
                modelFLOPsUtilization: achieved / peak, pairedModelFLOPsUtilization: paired,
                pairedPeakGFLOPS: percentileOf(peaks[i], 0.5), stepSpread: timing.spread))
        }
        let ratios = timers.map { t in zip(timers[0].summary.runsMS, t.summary.runsMS).map { $0 / $1 } }
        return (results, ratios)
    }
}

/// The bf16 speed-up over float32 training steps measured round by round
/// (`TrainingThroughput.measure(preset:steps:warmup:precisions:progress:)` with `[.float32, .bfloat16]`):
/// each ratio is a float32 step's time ÷ the bf16 step's next to it.
public struct PrecisionSpeedup: Codable, Sendable {
    public var model: String
    public var threads: Int
    public var stepRatios: [Double]
    public var median: Double { percentileOf(stepRatios, 0.5) }
    public var lowerQuartile: Double { percentileOf(stepRatios, 0.25) }
    public var upperQuartile: Double { percentileOf(stepRatios, 0.75) }

    public init(model: String, threads: Int, stepRatios: [Double]) {
        self.model = model
        self.threads = threads
        self.stepRatios = stepRatios
    }

    enum CodingKeys: String, CodingKey {
        case model, threads, median
        case stepRatios = "step_ratios"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(model: try c.decode(String.self, forKey: .model), threads: try c.decode(Int.self, forKey: .threads),
                  stepRatios: try c.decode([Double].self, forKey: .stepRatios))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(threads, forKey: .threads)
        try c.encode(median, forKey: .median)
        try c.encode(stepRatios, forKey: .stepRatios)
    }
}
