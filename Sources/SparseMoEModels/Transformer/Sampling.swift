import Foundation
import SparseMoECore
import SparseMoENN

/// How the next token is drawn from a row of logits.
///
/// In the order transformers applies them: logits / temperature → softmax → keep the
/// `topK` most probable → keep the smallest most-probable prefix whose mass reaches
/// `topP` (always at least one token) → renormalise → draw. Temperature 0 is greedy
/// (argmax, ties to the lower id) and ignores the rest.
public struct SamplingOptions: Sendable, Equatable {
    /// 0 = greedy; otherwise > 0.
    public var temperature: Float
    /// Keep the k most probable tokens (nil = all).
    public var topK: Int?
    /// Nucleus threshold in (0, 1] (nil = 1, no filtering).
    public var topP: Float?

    public init(temperature: Float = 1, topK: Int? = nil, topP: Float? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
    }

    public static let greedy = SamplingOptions(temperature: 0)

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else {
            throw SparseMoEError.invalidArgument(op: "sampling", message: "temperature must be ≥ 0 and finite, got \(temperature)")
        }
        if let k = topK, k < 1 { throw SparseMoEError.invalidArgument(op: "sampling", message: "top-k must be ≥ 1, got \(k)") }
        if let p = topP, !(p > 0 && p <= 1) { throw SparseMoEError.invalidArgument(op: "sampling", message: "top-p must be in (0, 1], got \(p)") }
    }
}

/// A seeded token sampler (same seed and logits, same tokens).
public struct Sampler: Sendable {
    public let options: SamplingOptions
    public var rng: RandomGenerator

    public init(options: SamplingOptions, seed: UInt64 = 0) throws {
        try options.validate()
        self.options = options
        self.rng = RandomGenerator(seed: seed)
    }

    /// The index of the largest value (the first of equal ones); NaN never wins.
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in 1..<max(logits.count, 1) where logits[i] > logits[best] || (logits[best].isNaN && !logits[i].isNaN) { best = i }
        return best
    }

    /// The distribution a draw uses: probabilities over the vocabulary, zero outside the
    /// kept set, summing to 1. Greedy gives a one-hot vector. O(V log V).
    public static func distribution(_ logits: [Float], options: SamplingOptions) -> [Float] {
        let v = logits.count
        var p = [Float](repeating: 0, count: v)
        guard v > 0 else { return p }
        if options.temperature == 0 {
            p[argmax(logits)] = 1
            return p
        }
        // Softmax at temperature T in double precision.
        let scaled = logits.map { Double($0) / Double(options.temperature) }
        let m = scaled.max() ?? 0
        var e = scaled.map { Foundation.exp($0 - m) }
        // Most probable first; ties to the lower id.
        var order = Array(0..<v)
        order.sort { e[$0] != e[$1] ? e[$0] > e[$1] : $0 < $1 }
        var keep = v
        if let k = options.topK { keep = min(keep, k) }
        if let top = options.topP, top < 1 {
            let total = order.prefix(keep).reduce(0.0) { $0 + e[$1] }
            var cumulative = 0.0
            var n = 0
            for i in order.prefix(keep) {
                n += 1
                cumulative += e[i] / total
                if cumulative >= Double(top) { break }
            }
            keep = n
        }
        for i in order.dropFirst(keep) { e[i] = 0 }
        let sum = e.reduce(0, +)
        for i in 0..<v { p[i] = Float(e[i] / sum) }
        return p
    }

    /// Draws the next token from `logits` `[V]`.
    public mutating func sample(_ logits: [Float]) -> Int {
        if options.temperature == 0 { return Self.argmax(logits) }
        let p = Self.distribution(logits, options: options)
        let u = Double(rng.uniform())
        var cumulative = 0.0
        var last = 0
        for (i, x) in p.enumerated() where x > 0 {
            cumulative += Double(x)
            last = i
            if u < cumulative { return i }
        }
        return last
    }
}

extension TransformerLM {
    /// Generates up to `maxNewTokens` tokens after `prompt` (batch 1), decoding one token at a
    /// time with a `KVCache` (the prompt is run once). Stops early at any of `stopTokens` (which
    /// is included) or at `max_position_embeddings`. `onToken` sees each new token as it comes.
    /// Returns the new tokens only.
    public func generate(prompt: [Int32], maxNewTokens: Int, sampler: inout Sampler, stopTokens: Set<Int32> = [],
                         onToken: (Int32) throws -> Void = { _ in }) throws -> [Int32] {
        guard !prompt.isEmpty else { throw SparseMoEError.invalidArgument(op: "generate", message: "the prompt needs at least one token") }
        guard maxNewTokens >= 0 else { throw SparseMoEError.invalidArgument(op: "generate", message: "max new tokens must be ≥ 0, got \(maxNewTokens)") }
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            throw SparseMoEError.invalidArgument(op: "generate", message: "token \(bad) outside the vocabulary 0..<\(config.vocabSize)")
        }
        guard prompt.count <= config.maxSequenceLength else {
            throw SparseMoEError.invalidArgument(op: "generate", message: "prompt of \(prompt.count) tokens exceeds max_position_embeddings = \(config.maxSequenceLength)")
        }
        // The cache holds only the positions this call can reach; its size is checked
        // against the memory available before it is allocated.
        let capacity = min(config.maxSequenceLength, MemoryBudget.sum([prompt.count, maxNewTokens]))
        try MemoryBudget.check(MemoryBudget.product(capacity, max(config.numLayers, 0), config.kvCacheFloatsPerPosition, 4),
                               for: "the KV cache for \(capacity) positions (prompt \(prompt.count) + \(maxNewTokens) new tokens, at most max_position_embeddings)",
                               field: "max_new_tokens")
        let cache = KVCache(capacity: capacity)
        let v = config.vocabSize
        var input = prompt
        var out: [Int32] = []
        while out.count < maxNewTokens && cache.length + input.count <= config.maxSequenceLength {
            let logits = try forward(Tensor(indices: input, shape: [1, input.count]),
                                     options: ForwardOptions(cache: cache, lastPositionLogitsOnly: true)).logits
            let last = Array(UnsafeBufferPointer(start: logits.floats, count: v))
            let next = Int32(sampler.sample(last))
            out.append(next)
            try onToken(next)
            if stopTokens.contains(next) { break }
            input = [next]
        }
        return out
    }
}
