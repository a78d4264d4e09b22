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
/// machine whose speed drifts it moves far less from run to run.
public struct TrainingThroughput: Codable, Sendable {
    public var model: String
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
        case model, threads, steps
        case tokensPerStep = "tokens_per_step", stepMS = "step_ms", tokensPerSecond = "tokens_per_second"
        case meanTokensPerSecond = "mean_tokens_per_second", trainingFLOPsPerToken = "training_flops_per_token"
        case achievedGFLOPS = "achieved_gflops", peakGFLOPS = "peak_gflops", modelFLOPsUtilization = "mfu"
        case pairedModelFLOPsUtilization = "mfu_paired", pairedPeakGFLOPS = "peak_gflops_paired"
        case stepSpread = "step_spread"
    }

    /// Builds `preset` (default `moe train`'s `tiny-moe`, batch 16 × 128 tokens, AdamW 2e-3)
    /// and times its training steps.
    public static func measure(preset: String = "tiny-moe", steps: Int = 20, warmup: Int = 3,
                               progress: (String) -> Void = { _ in }) throws -> TrainingThroughput {
        guard steps >= 1, warmup >= 0 else {
            throw SparseMoEError.invalidArgument(op: "TrainingThroughput", message: "steps must be ≥ 1 and warmup ≥ 0, got \(steps), \(warmup)")
        }
        var options = TrainingRunOptions()
        options.model = .config(preset)
        options.training.steps = warmup + steps
        options.training.warmupSteps = 0
        options.training.evalEvery = 0
        progress("train: building \(preset)")
        let run = try TrainingRun(options: options)
        let tokens = run.config.batchSize * run.config.sequenceLength * run.config.gradAccumulation
        progress("train: \(warmup) warm-up + \(steps) timed steps, each after three sgemm products of 1024³")
        let probe = try MachinePeak.SGEMMProbe()
        var calls = 0
        var roundPeaks: [Double] = []
        let timing = try TimingSummary.measure(warmup: warmup, runs: steps, setup: {
            calls += 1
            let rate = probe.gflops(repeats: 3)
            if calls > warmup { roundPeaks.append(rate) }
        }) { _ = try run.trainer.trainStep() }
        progress("train: measuring the sgemm peak")
        let peak = try MachinePeak.measureSGEMM()
        let tps = Double(tokens) / (timing.medianMS / 1e3)
        let flops = run.accounting.trainingFlopsPerToken
        let achieved = flops * tps / 1e9
        let paired = try MachinePeak.pairedModelFLOPsUtilization(flops: flops * Double(tokens), stepMS: timing.runsMS, peakGFLOPS: roundPeaks)
        return TrainingThroughput(
            model: preset, threads: Threads.count, steps: steps, tokensPerStep: tokens, stepMS: timing.medianMS,
            tokensPerSecond: tps, meanTokensPerSecond: Double(tokens * steps) / (timing.runsMS.reduce(0, +) / 1e3),
            trainingFLOPsPerToken: flops, achievedGFLOPS: achieved, peakGFLOPS: peak,
            modelFLOPsUtilization: achieved / peak, pairedModelFLOPsUtilization: paired,
            pairedPeakGFLOPS: percentileOf(roundPeaks, 0.5), stepSpread: timing.spread)
    }
}
