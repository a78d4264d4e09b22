import SparseMoECore
import SparseMoEModels

/// One completion asked of a `BatchScheduler` / `GenerationEngine`: a prompt, how many
/// tokens at most, how to sample them. The same request given to `TransformerLM.generate`
/// with a `Sampler(options: sampling, seed: seed)` yields the same tokens.
public struct GenerationRequest: Sendable, Equatable {
    /// Prompt token ids (at least one, each inside the vocabulary).
    public var prompt: [Int32]
    /// Most new tokens (≥ 1); generation also ends at a stop token or a full context.
    public var maxNewTokens: Int
    public var sampling: SamplingOptions
    /// Seed of this request's own sampler.
    public var seed: UInt64
    /// Tokens that end the completion (included in it), e.g. the model's eos.
    public var stopTokens: Set<Int32>

    public init(prompt: [Int32], maxNewTokens: Int, sampling: SamplingOptions = .greedy, seed: UInt64 = 0,
                stopTokens: Set<Int32> = []) {
        self.prompt = prompt
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.seed = seed
        self.stopTokens = stopTokens
    }
}

/// Why a completion ended (the strings are OpenAI's `finish_reason` where one exists).
public enum FinishReason: String, Sendable, Equatable, Codable {
    /// `maxNewTokens` reached, or the context (max_position_embeddings) is full.
    case length
    /// A stop token was generated.
    case stop
    /// `cancel` was called (a client went away); the sequence's cache is freed.
    case cancelled
}

/// What a running request reports, in order: its tokens one by one, then exactly one
/// `finished` or `failed`.
public enum GenerationEvent: Sendable, Equatable {
    case token(Int32)
    case finished(FinishReason)
    /// The step that ran this request threw (the message says why); the request is gone.
    case failed(String)
}

/// A request's identity inside one scheduler (increasing in submission order).
public typealias RequestID = Int

/// Errors of submitting work: what the caller (an HTTP layer, say) turns into 4xx answers.
public enum ServingError: Error, Equatable, CustomStringConvertible {
    /// The waiting queue holds `limit` requests already (HTTP 429).
    case queueFull(limit: Int)
    /// The request is unusable as given; `field` names what to fix (HTTP 400).
    case invalidRequest(field: String, message: String)
    /// The engine is draining or stopped and takes no new work (HTTP 503).
    case shuttingDown

    public var description: String {
        switch self {
        case let .queueFull(limit): return "the queue is full (\(limit) requests waiting); retry later"
        case let .invalidRequest(field, message): return "\(field): \(message)"
        case .shuttingDown: return "the server is shutting down and takes no new requests"
        }
    }
}

/// How a scheduler batches.
public struct SchedulerOptions: Sendable, Equatable {
    /// Most sequences decoding together (each holds its own KV cache).
    public var maxBatch: Int = 16
    /// Most requests waiting for admission; one more is refused with `ServingError.queueFull`.
    public var maxQueue: Int = 64
    /// Most prompt tokens prefilled in one step, over all admitted prompts (chunked prefill:
    /// a long prompt takes several steps, and running sequences keep decoding meanwhile).
    public var prefillChunk: Int = 256
    /// KV-cache positions held by all sequences together. A request reserves
    /// min(prompt + max new tokens, max_position_embeddings) positions when admitted and
    /// gives them back when it leaves. nil = maxBatch × max_position_embeddings.
    public var cachePositions: Int?
    /// Measure which team size runs decode steps fastest, and use it (`TeamTuner`: the
    /// numbers do not change, only how many threads compute them).
    public var tuneTeams: Bool = true

    public init(maxBatch: Int = 16, maxQueue: Int = 64, prefillChunk: Int = 256, cachePositions: Int? = nil,
                tuneTeams: Bool = true) {
        self.maxBatch = maxBatch
        self.maxQueue = maxQueue
        self.prefillChunk = prefillChunk
        self.cachePositions = cachePositions
        self.tuneTeams = tuneTeams
    }
}

/// What one scheduler step did (for metrics and tests).
public struct SchedulerStepReport: Sendable {
    /// Events per request, in the order they happened.
    public var events: [(id: RequestID, event: GenerationEvent)] = []
    /// Sequences that decoded one token in this step's forward.
    public var decodeSequences = 0
    /// Prompt tokens prefilled in this step's forward (chunks included).
    public var prefillTokens = 0
    /// Requests admitted this step, in admission order.
    public var admitted: [RequestID] = []
    /// Requests still waiting after the step, and sequences still running.
    public var queueLength = 0
    public var running = 0
    /// KV-cache positions reserved by running sequences after the step.
    public var reservedPositions = 0
    /// Tokens routed to each expert in this step, summed over MoE layers (empty for a dense model).
    public var expertLoad: [Int] = []
    /// Experts that ran (had at least one row) in this step, summed over MoE layers.
    public var activeExperts = 0
    /// Wall time of the step's forward, seconds (by the scheduler's clock).
    public var seconds: Double = 0
    /// Largest team of threads the forward's parallel regions could get: the tuner's choice
    /// for a decode-only step (`SchedulerOptions.tuneTeams`), else `Threads.count` (0 without
    /// a forward).
    public var team = 0

    public init() {}
}
