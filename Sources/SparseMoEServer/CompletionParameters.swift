import Foundation
import SparseMoE

/// The fields of a `POST /v1/completions` body (OpenAI's legacy completions API), read from
/// JSON with an error naming the field for each wrong type or value. Unknown fields are
/// ignored: OpenAI clients send extras.
///
/// Limits that depend on the model and the server (prompt length, vocabulary, max_tokens
/// ceiling, model name) are checked by `CompletionServer`, not here.
public struct CompletionParameters: Sendable, Equatable {
    /// A prompt as text or as token ids.
    public enum Prompt: Sendable, Equatable {
        case text(String)
        case tokens([Int32])
    }

    /// `model` (nil when absent: the served model).
    public var model: String?
    /// `prompt`: a string, an array of token ids, or a one-element array of either.
    public var prompt: Prompt
    /// `max_tokens`, default 16.
    public var maxTokens: Int = 16
    /// `temperature` ≥ 0, default 1 (0 = greedy).
    public var temperature: Float = 1
    /// `top_p` in (0, 1].
    public var topP: Float?
    /// `top_k` ≥ 1.
    public var topK: Int?
    /// `seed` (nil: a random one).
    public var seed: UInt64?
    /// `stop`: up to 4 non-empty strings.
    public var stop: [String] = []
    /// `stream`: answer as server-sent events.
    public var stream = false
    /// `ignore_eos` (an extension llama.cpp's and vLLM's servers share): do not stop at the
    /// model's end-of-sequence tokens; generate `max_tokens` (benchmarks use it).
    public var ignoreEOS = false
    /// `stream_options.include_usage`: a last chunk with the token counts before `[DONE]`.
    public var includeUsage = false

    public init(model: String? = nil, prompt: Prompt) {
        self.model = model
        self.prompt = prompt
    }

    /// The sampling options the fields ask for.
    public var sampling: SamplingOptions { SamplingOptions(temperature: temperature, topK: topK, topP: topP) }

    /// Reads a request body. Throws a 400 `OpenAIError` whose `param` names the field.
    public static func parse(_ body: Data) throws(OpenAIError) -> CompletionParameters {
        let json: JSONValue
        do { json = try JSONDecoder().decode(JSONValue.self, from: body) } catch {
            throw .invalid(nil, "the body is not valid JSON: \(Self.reason(error))")
        }
        guard case let .object(o) = json else { throw .invalid(nil, "the body must be a JSON object, got \(Self.kind(json))") }
        func field(_ name: String) -> JSONValue? {
            if let v = o[name], v != .null { return v }
            return nil
        }

        var model: String?
        if let v = field("model") {
            guard case let .string(s) = v else { throw .invalid("model", "model must be a string, got \(Self.kind(v))") }
            model = s
        }
        guard let p = field("prompt") else { throw .invalid("prompt", "prompt is required (a string or an array of token ids)") }
        var params = CompletionParameters(model: model, prompt: try Self.prompt(p))

        if let v = field("max_tokens") {
            guard let n = Self.integer(v) else { throw .invalid("max_tokens", "max_tokens must be an integer, got \(Self.kind(v))") }
            guard n >= 1 else { throw .invalid("max_tokens", "max_tokens must be at least 1, got \(n)") }
            params.maxTokens = n
        }
        if let v = field("temperature") {
            guard let t = v.number else { throw .invalid("temperature", "temperature must be a number, got \(Self.kind(v))") }
            // Checked as the Float the sampler uses: 1e300 is finite as a Double, not as a Float.
            guard Float(t) >= 0, Float(t).isFinite else { throw .invalid("temperature", "temperature must be ≥ 0 and finite, got \(t)") }
            params.temperature = Float(t)
        }
        if let v = field("top_p") {
            guard let t = v.number else { throw .invalid("top_p", "top_p must be a number, got \(Self.kind(v))") }
            guard Float(t) > 0, Float(t) <= 1 else { throw .invalid("top_p", "top_p must be in (0, 1], got \(t)") }
            params.topP = Float(t)
        }
        if let v = field("top_k") {
            guard let k = Self.integer(v) else { throw .invalid("top_k", "top_k must be an integer, got \(Self.kind(v))") }
            guard k >= 1 else { throw .invalid("top_k", "top_k must be at least 1, got \(k)") }
            params.topK = k
        }
        if let v = field("seed") {
            guard let s = Self.integer(v) else { throw .invalid("seed", "seed must be an integer, got \(Self.kind(v))") }
            guard s >= 0 else { throw .invalid("seed", "seed must be ≥ 0, got \(s)") }
            params.seed = UInt64(s)
        }
        if let v = field("stop") {
            switch v {
            case let .string(s): params.stop = [s]
            case let .array(a):
                guard a.count <= 4 else { throw .invalid("stop", "stop holds at most 4 strings, got \(a.count)") }
                params.stop = try a.map { (e) throws(OpenAIError) -> String in
                    guard case let .string(s) = e else { throw .invalid("stop", "stop must be a string or an array of strings, got an element \(Self.kind(e))") }
                    return s
                }
            default: throw .invalid("stop", "stop must be a string or an array of strings, got \(Self.kind(v))")
            }
            guard !params.stop.contains("") else { throw .invalid("stop", "stop strings must not be empty") }
        }
        if let v = field("stream") {
            guard case let .bool(b) = v else { throw .invalid("stream", "stream must be true or false, got \(Self.kind(v))") }
            params.stream = b
        }
        if let v = field("ignore_eos") {
            guard case let .bool(b) = v else { throw .invalid("ignore_eos", "ignore_eos must be true or false, got \(Self.kind(v))") }
            params.ignoreEOS = b
        }
        if let v = field("stream_options") {
            guard case let .object(so) = v else { throw .invalid("stream_options", "stream_options must be an object, got \(Self.kind(v))") }
            if let u = so["include_usage"], u != .null {
                guard case let .bool(b) = u else { throw .invalid("stream_options.include_usage", "include_usage must be true or false, got \(Self.kind(u))") }
                params.includeUsage = b
            }
        }
        // Known OpenAI fields this server cannot honour are refused rather than ignored.
        if let v = field("n"), Self.integer(v) != 1 { throw .invalid("n", "only n = 1 is supported, got \(v)") }
        if let v = field("best_of"), Self.integer(v) != 1 { throw .invalid("best_of", "only best_of = 1 is supported, got \(v)") }
        if let v = field("echo"), v != .bool(false) { throw .invalid("echo", "echo is not supported") }
        if let v = field("logprobs"), v != .int(0), v != .bool(false) { throw .invalid("logprobs", "logprobs are not supported") }
        if let v = field("suffix"), v != .string("") { throw .invalid("suffix", "suffix is not supported") }
        return params
    }

    private static func prompt(_ v: JSONValue) throws(OpenAIError) -> Prompt {
        switch v {
        case let .string(s):
            guard !s.isEmpty else { throw .invalid("prompt", "prompt is empty") }
            return .text(s)
        case let .array(a):
            guard !a.isEmpty else { throw .invalid("prompt", "prompt is empty") }
            // A one-element batch: ["text"] or [[1, 2, 3]].
            if a.count == 1, case .string = a[0] { return try prompt(a[0]) }
            if a.count == 1, case .array = a[0] { return try prompt(a[0]) }
            var ids: [Int32] = []
            ids.reserveCapacity(a.count)
            for (i, e) in a.enumerated() {
                switch e {
                case .string, .array:
                    throw .invalid("prompt", "a batch of \(a.count) prompts is not supported; send one prompt per request")
                default:
                    guard let n = integer(e), let id = Int32(exactly: n) else {
                        throw .invalid("prompt", "prompt[\(i)] must be a token id (an integer), got \(kind(e))")
                    }
                    ids.append(id)
                }
            }
            return .tokens(ids)
        default:
            throw .invalid("prompt", "prompt must be a string or an array of token ids, got \(kind(v))")
        }
    }

    /// An integer, or a floating-point number with an integral value.
    private static func integer(_ v: JSONValue) -> Int? {
        switch v {
        case let .int(i): return i
        case let .double(d) where d.rounded() == d && abs(d) < 9.0e18: return Int(d)
        default: return nil
        }
    }

    /// "a string", "an array", … with the value, for messages.
    private static func kind(_ v: JSONValue) -> String {
        let shown = v.description.count > 40 ? String(v.description.prefix(40)) + "…" : v.description
        switch v {
        case .null: return "null"
        case .bool: return "a boolean (\(shown))"
        case .int, .double: return "a number (\(shown))"
        case .string: return "a string (\(shown))"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    private static func reason(_ error: Error) -> String {
        if case let DecodingError.dataCorrupted(c) = error {
            return (c.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? c.debugDescription
        }
        return "\(error)"
    }
}
