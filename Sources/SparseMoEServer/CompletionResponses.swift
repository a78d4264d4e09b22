/// The JSON shapes the server answers with (OpenAI's completions and models APIs).

/// `usage` of a completion.
public struct CompletionUsage: Codable, Equatable, Sendable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = promptTokens + completionTokens
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }
}

/// One element of `choices`: the whole text (non-streaming) or a delta (a stream chunk);
/// `finish_reason` is null until the last chunk, `logprobs` always null.
public struct CompletionChoice: Codable, Equatable, Sendable {
    public var index = 0
    public var text: String
    public var finishReason: String?

    public init(text: String, finishReason: String?) {
        self.text = text
        self.finishReason = finishReason
    }

    enum CodingKeys: String, CodingKey { case index, text, finishReason = "finish_reason", logprobs }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        text = try c.decode(String.self, forKey: .text)
        finishReason = try c.decodeIfPresent(String.self, forKey: .finishReason)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encode(finishReason, forKey: .finishReason)  // null, not absent
        try c.encodeNil(forKey: .logprobs)
    }
}

/// A `text_completion` object: the answer, or one chunk of a stream (`usage` only where due).
public struct CompletionResponse: Codable, Equatable, Sendable {
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [CompletionChoice]
    public var usage: CompletionUsage?

    public init(id: String, created: Int, model: String, choices: [CompletionChoice], usage: CompletionUsage?) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}

/// `GET /v1/models` entries.
public struct ModelCard: Codable, Equatable, Sendable {
    public var id: String
    public var object = "model"
    public var created: Int
    public var ownedBy = "sparsemoe"

    public init(id: String, created: Int) {
        self.id = id
        self.created = created
    }

    enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by" }
}

public struct ModelList: Codable, Equatable, Sendable {
    public var object = "list"
    public var data: [ModelCard]

    public init(data: [ModelCard]) { self.data = data }
}

/// `GET /health`.
public struct HealthStatus: Codable, Equatable, Sendable {
    public var status = "ok"
    public var queueLength: Int
    public var running: Int

    public init(queueLength: Int, running: Int) {
        self.queueLength = queueLength
        self.running = running
    }

    enum CodingKeys: String, CodingKey { case status, queueLength = "queue_length", running }
}
