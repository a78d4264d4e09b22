import Foundation
import SparseMoE
internal import CMoEBenchReference

/// Prefill and decode speed of a model folder loaded in one weight dtype (`moe bench --model`).
///
/// One process, one dtype: load the folder (`ModelLoader`, weights converted as asked), run a
/// prompt of `promptTokens` random ids once (prefill: logits of the last position only, as
/// decoding needs), then decode `newTokens` greedily one at a time with the KV cache. The
/// prefill is timed once after an untimed warm-up prompt; decode tokens/s is over all new
/// tokens. Peak RSS is the process's high-water mark (`VmHWM`), which includes loading.
///
/// The bandwidth bound: decoding one token reads every weight outside the routed experts and
/// top-k experts per MoE layer (`decodeBytesPerToken`, from the storage dtypes); divided into
/// the machine's read bandwidth (measured here, `ReadBandwidth`, just before and just after
/// the decode; the faster of the two) it gives the most tokens/s any engine can decode with
/// these weights.
public enum InferenceBenchmark {
    public struct Result: Codable, Sendable {
        public var model: String
        public var dtype: String
        public var threads: Int
        public var prompt_tokens: Int
        public var new_tokens: Int
        public var load_seconds: Double
        public var prefill_tokens_per_second: Double
        public var time_to_first_token_ms: Double
        public var decode_tokens_per_second: Double
        public var peak_rss_bytes: Int
        public var weights_bytes: Int
        public var decode_bytes_per_token: Int
        public var read_bandwidth_bytes_per_second: Double
        /// decode tokens/s ÷ (read bandwidth ÷ decode bytes per token).
        public var decode_bandwidth_fraction: Double
    }

    /// Runs the benchmark on the folder at `directory`. `progress` gets one line per phase.
    public static func run(directory: URL, dtypes: WeightDTypeChoice, promptTokens: Int = 128, newTokens: Int = 64,
                           seed: UInt64 = 0, progress: (String) -> Void = { _ in }) throws -> Result {
        let started = Date()
        progress("loading \(directory.path) as \(dtypes.dtype?.rawValue ?? "stored dtypes")")
        let lm = try ModelLoader.load(directory: directory, dtypes: dtypes)
        let loadSeconds = Date().timeIntervalSince(started)
        let config = lm.config
        guard promptTokens + newTokens <= config.maxSequenceLength else {
            throw SparseMoEError.invalidArgument(op: "bench", message: "prompt \(promptTokens) + new tokens \(newTokens) exceed max_position_embeddings = \(config.maxSequenceLength)")
        }
        var rng = RandomGenerator(seed: seed)
        let prompt = (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        progress(String(format: "loaded in %.1f s; prefill of %d tokens", loadSeconds, promptTokens))
        func prefill(_ cache: KVCache) throws -> Int32 {
            let logits = try lm.forward(Tensor(indices: prompt, shape: [1, prompt.count]),
                                        options: ForwardOptions(cache: cache, lastPositionLogitsOnly: true)).logits
            return logits.withUnsafeFloats { argmax($0) }
        }
        _ = try withNoGrad { try prefill(KVCache(capacity: promptTokens + newTokens)) }
        Threads.park()
        let cache = KVCache(capacity: promptTokens + newTokens)
        let t0 = Date()
        var next = try withNoGrad { try prefill(cache) }
        let prefillSeconds = Date().timeIntervalSince(t0)
        progress(String(format: "prefill %.1f tokens/s; decoding %d tokens", Double(promptTokens) / prefillSeconds, newTokens))
        // The probes' own 1 GiB is not the model's: the peak is taken before the first probe,
        // and again over the decode after resetting the high-water mark (where Linux allows it).
        var peak = ProcessMemory.peakResidentBytes
        let bandwidthBefore = ReadBandwidth.measure()
        let peakReset = ProcessMemory.resetPeak()
        Threads.park()
        let t1 = Date()
        for _ in 0..<newTokens {
            next = try withNoGrad {
                let logits = try lm.forward(Tensor(indices: [next], shape: [1, 1]), options: ForwardOptions(cache: cache)).logits
                return logits.withUnsafeFloats { argmax($0) }
            }
        }
        let decodeSeconds = Date().timeIntervalSince(t1)
        if peakReset { peak = max(peak, ProcessMemory.peakResidentBytes) }
        // The faster of the probes just before and just after the decode: this host's
        // bandwidth drifts over seconds, and the faster one gives the stricter limit.
        let bandwidth = max(bandwidthBefore, ReadBandwidth.measure())
        let perToken = decodeBytesPerToken(lm)
        let decodeRate = Double(newTokens) / decodeSeconds
        return Result(model: directory.path, dtype: dtypes.dtype?.rawValue ?? "stored", threads: Threads.count,
                      prompt_tokens: promptTokens, new_tokens: newTokens, load_seconds: loadSeconds,
                      prefill_tokens_per_second: Double(promptTokens) / prefillSeconds,
                      time_to_first_token_ms: prefillSeconds * 1000, decode_tokens_per_second: decodeRate,
                      peak_rss_bytes: peak, weights_bytes: lm.weightStorage.bytes,
                      decode_bytes_per_token: perToken, read_bandwidth_bytes_per_second: bandwidth,
                      decode_bandwidth_fraction: decodeRate / (bandwidth / Double(max(perToken, 1))))
    }

    /// Bytes of weights one decode step reads: everything but the routed experts, plus top-k
    /// of E experts per MoE layer (the token embedding counts one row).
    public static func decodeBytesPerToken(_ lm: TransformerLM) -> Int {
        var bytes = 0
        let k = lm.config.moe?.topK ?? 0
        for (name, t) in lm.namedParameters() {
            if t === lm.embedTokens && lm.lmHead != nil { bytes += t.storageBytes / max(t.shape[0], 1); continue }
            if name.contains(".mlp.experts."), t.rank == 3 { bytes += t.storageBytes / t.shape[0] * min(k, t.shape[0]); continue }
            bytes += t.storageBytes
        }
        return bytes
    }

    static func argmax(_ p: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        for i in p.indices where p[i] > p[best] { best = i }
        return Int32(best)
    }
}

/// The process's memory high-water mark.
public enum ProcessMemory {
    /// `VmHWM` of /proc/self/status in bytes (0 where unavailable).
    public static var peakResidentBytes: Int { status("VmHWM:") }

    /// Resets `VmHWM` to the memory resident now (`/proc/self/clear_refs`); false where the
    /// system does not allow it.
    public static func resetPeak() -> Bool {
        guard let f = fopen("/proc/self/clear_refs", "w") else { return false }
        defer { fclose(f) }
        return fputs("5", f) >= 0 && fflush(f) == 0
    }

    /// `VmRSS` of /proc/self/status in bytes, resident now (0 where unavailable).
    public static var residentBytes: Int { status("VmRSS:") }

    /// A "kB" line of /proc/self/status in bytes.
    static func status(_ key: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            // "VmHWM:\t 7967772 kB": a tab, then right-aligned digits.
            let kb = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { Int($0) } ?? 0
            return kb * 1024
        }
        return 0
    }
}

/// Read bandwidth of main memory with the kernel threads: the sum of a 1 GiB float32 array
/// (far larger than any cache; C `moe_bench_stream_sum`), best of 5 passes after a warm-up.
/// The array is the probe's own allocation, handed back to the system when it returns.
public enum ReadBandwidth {
    public static func measure(bytes: Int = 1 << 30) -> Double {
        let count = bytes / 4
        let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { p.deallocate() }
        p.initialize(repeating: 1, count: count)
        _ = moe_bench_stream_sum(p, Int64(count))
        var best = Double.infinity
        for _ in 0..<5 {
            Threads.park()
            let start = Date()
            _ = moe_bench_stream_sum(p, Int64(count))
            best = min(best, Date().timeIntervalSince(start))
        }
        return Double(bytes) / best
    }
}
