import Foundation
import SparseMoE

/// Decode throughput of continuous batching: B requests decoding together through one
/// `BatchScheduler` (one forward per step, every chosen expert runs once on all its rows),
/// for each B in turn, in one process, so the batching gain is a ratio measured in the same run.
public enum BatchedDecodeBenchmark {
    /// One batch size (`moe bench --model DIR --batch …` prints these, `--json` one per line).
    public struct Point: Codable, Sendable {
        public var batch: Int
        public var prompt_tokens: Int
        public var new_tokens: Int
        public var threads: Int
        /// Tokens decoded per second over the steps where all B sequences decoded (no prefill).
        public var decode_tokens_per_second: Double
        /// Median and 95th percentile of those steps, milliseconds.
        public var step_ms_p50: Double
        public var step_ms_p95: Double
        /// decode_tokens_per_second ÷ that of batch 1 (the first point when batch 1 was not run).
        public var speedup: Double
        /// Distinct experts run per MoE layer per step, mean (batching spreads rows over more experts).
        public var experts_per_layer_per_step: Double
        /// Milliseconds from the start of the first step until every sequence had its first
        /// token (the B prompts prefilled together in one step): a burst's time to first token
        /// without HTTP.
        public var burst_first_token_ms: Double
    }

    /// Runs B = each of `batches` requests of `promptTokens` random tokens and `newTokens` greedy
    /// new tokens each (no stop token). `progress` gets one line per batch size.
    public static func run(model: TransformerLM, batches: [Int], promptTokens: Int, newTokens: Int, seed: UInt64 = 0,
                           progress: (String) -> Void = { _ in }) throws -> [Point] {
        let config = model.config
        guard promptTokens + newTokens <= config.maxSequenceLength else {
            throw SparseMoEError.invalidArgument(op: "bench", message: "prompt \(promptTokens) + new tokens \(newTokens) exceed max_position_embeddings = \(config.maxSequenceLength)")
        }
        var rng = RandomGenerator(seed: seed)
        var points: [Point] = []
        let start = DispatchTime.now().uptimeNanoseconds
        let clock = { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        let moeLayers = max(model.moeLayers.count, 1)
        for b in batches {
            // The full team throughout: the steps measure the kernels, not the team tuning.
            let options = SchedulerOptions(maxBatch: b, maxQueue: b, prefillChunk: max(promptTokens, 1) * b,
                                           cachePositions: b * (promptTokens + newTokens), tuneTeams: false)
            let scheduler = try BatchScheduler(model: model, options: options, clock: clock)
            for _ in 0..<b {
                let prompt = (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
                try scheduler.submit(GenerationRequest(prompt: prompt, maxNewTokens: newTokens))
            }
            Threads.park()
            var stepSeconds: [Double] = [], experts = 0
            var firstTokens = 0, burstSeconds = 0.0
            while !scheduler.isIdle {
                let r = scheduler.step()
                if firstTokens < b {
                    burstSeconds += r.seconds
                    firstTokens += r.events.filter { if case .token = $0.event { true } else { false } }.count
                }
                if case let .failed(m)? = r.events.first?.event { throw SparseMoEError.invalidArgument(op: "bench", message: m) }
                if r.decodeSequences == b && r.prefillTokens == 0 {
                    stepSeconds.append(r.seconds)
                    experts += r.activeExperts
                }
            }
            guard !stepSeconds.isEmpty else {
                throw SparseMoEError.invalidArgument(op: "bench", message: "--new-tokens \(newTokens) leaves no step where all \(b) sequences decode; use at least 2")
            }
            let sorted = stepSeconds.sorted()
            let rate = Double(b * stepSeconds.count) / stepSeconds.reduce(0, +)
            let base = points.first { $0.batch == 1 }?.decode_tokens_per_second ?? points.first?.decode_tokens_per_second ?? rate
            let p = Point(batch: b, prompt_tokens: promptTokens, new_tokens: newTokens, threads: Threads.count,
                          decode_tokens_per_second: rate, step_ms_p50: 1000 * sorted[sorted.count / 2],
                          step_ms_p95: 1000 * sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.95).rounded(.up)) - 1)],
                          speedup: rate / base,
                          experts_per_layer_per_step: Double(experts) / Double(stepSeconds.count * moeLayers),
                          burst_first_token_ms: 1000 * burstSeconds)
            points.append(p)
            progress(String(format: "batch %d: %.1f tokens/s (%.2f× batch %d), step p50 %.1f ms, first tokens of all %d after %.1f ms", b, rate, p.speedup,
                            points.first { $0.batch == 1 }?.batch ?? points[0].batch, p.step_ms_p50, b, p.burst_first_token_ms))
        }
        return points
    }
}
