import Foundation
import Hummingbird
import SparseMoE

/// What the server serves and the limits it holds requests to.
public struct ServerOptions: Sendable {
    /// The `model` name clients use (and `/v1/models` lists).
    public var modelName: String
    /// The model's context (max_position_embeddings): a prompt must leave room for one token.
    public var contextLength: Int
    /// The largest `max_tokens` a request may ask for.
    public var maxTokens: Int
    /// The longest prompt, in tokens.
    public var maxPromptTokens: Int
    /// The largest request body, bytes.
    public var maxBodyBytes = 8 << 20
    /// `created` of the model card (Unix seconds; when the server started).
    public var created = Int(Date().timeIntervalSince1970)

    public init(modelName: String, contextLength: Int, maxTokens: Int, maxPromptTokens: Int) {
        self.modelName = modelName
        self.contextLength = contextLength
        self.maxTokens = maxTokens
        self.maxPromptTokens = maxPromptTokens
    }
}

/// An OpenAI-compatible HTTP API over a `CompletionBackend`:
///
/// - `POST /v1/completions`: a completion, whole or streamed as server-sent events
///   (`data: {chunk}` per text delta, a last chunk with `finish_reason`, then `data: [DONE]`);
/// - `GET /v1/models`, `GET /v1/models/{id}`: the one served model;
/// - `GET /health`: `{"status": "ok", "queue_length": …, "running": …}`;
/// - `GET /metrics`: Prometheus text (`ServerMetrics`).
///
/// Bad input is answered 400 with OpenAI's error body naming the field; an unknown model
/// 404 (`model_not_found`); a full queue 429; a draining engine 503.
public struct CompletionServer: Sendable {
    public let backend: any CompletionBackend
    public let codec: TextCodec
    public let options: ServerOptions
    public let metrics: ServerMetrics

    public init(backend: any CompletionBackend, codec: TextCodec, options: ServerOptions, metrics: ServerMetrics) {
        self.backend = backend
        self.codec = codec
        self.options = options
        self.metrics = metrics
    }

    /// The routes.
    public func router() -> Hummingbird.Router<BasicRequestContext> {
        let router = Hummingbird.Router()
        router.get("health") { _, _ in
            let (q, r) = (backend.queueLength, backend.running)
            metrics.load(queueLength: q, running: r)
            return Response.json(HealthStatus(queueLength: q, running: r))
        }
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.exposition())))
        }
        router.get("v1/models") { _, _ in
            Response.json(ModelList(data: [ModelCard(id: options.modelName, created: options.created)]))
        }
        router.get("v1/models/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard id == options.modelName else { throw modelNotFound(id) }
            return Response.json(ModelCard(id: id, created: options.created))
        }
        router.post("v1/completions") { request, _ in
            do {
                let response = try await complete(request)
                metrics.request(status: Int(response.status.code))
                return response
            } catch let e as OpenAIError {
                metrics.request(status: Int(e.status.code))
                throw e
            } catch {
                metrics.request(status: 500)
                throw OpenAIError(status: .internalServerError, message: "\(error)", type: "server_error")
            }
        }
        return router
    }

    /// Reads, checks and submits one completion request.
    func complete(_ request: Request) async throws -> Response {
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: options.maxBodyBytes) } catch let e as any HTTPResponseError where e.status == .contentTooLarge {
            throw OpenAIError(status: .contentTooLarge, message: "the body is larger than \(options.maxBodyBytes) bytes", type: "invalid_request_error")
        }
        let params = try CompletionParameters.parse(Data(body.readableBytesView))
        let generation = try generationRequest(params)
        let stream: GenerationStream
        do { stream = try backend.submit(generation) } catch let e as ServingError { throw OpenAIError(e) }
        metrics.prompt(tokens: generation.prompt.count)
        let id = "cmpl-\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        let created = Int(Date().timeIntervalSince1970)
        let run = CompletionRun(codec: codec, metrics: metrics, stops: params.stop)
        let promptTokens = generation.prompt.count

        guard params.stream else {
            var text = ""
            let outcome = try await run.run(stream) { text += $0 }
            let answer = CompletionResponse(id: id, created: created, model: options.modelName,
                                            choices: [CompletionChoice(text: text, finishReason: outcome.finishReason)],
                                            usage: CompletionUsage(promptTokens: promptTokens, completionTokens: outcome.completionTokens))
            return Response.json(answer)
        }

        let model = options.modelName
        let includeUsage = params.includeUsage
        let textChunk = StreamChunkEncoder(id: id, created: created, model: model)
        let events = ResponseBody { writer in
            func send(_ chunk: some Encodable) async throws {
                try await writer.write(ByteBuffer(string: "data: " + Self.json(chunk) + "\n\n"))
            }
            func chunk(_ text: String, _ finish: String?) -> CompletionResponse {
                CompletionResponse(id: id, created: created, model: model, choices: [CompletionChoice(text: text, finishReason: finish)], usage: nil)
            }
            do {
                let outcome = try await run.run(stream) { try await writer.write(ByteBuffer(string: "data: " + textChunk.json($0) + "\n\n")) }
                try await send(chunk("", outcome.finishReason))
                if includeUsage {
                    try await send(CompletionResponse(id: id, created: created, model: model, choices: [],
                                                      usage: CompletionUsage(promptTokens: promptTokens, completionTokens: outcome.completionTokens)))
                }
            } catch let e as OpenAIError {
                try await send(e.body)  // the status line is gone already: the error travels as an event
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: events)
    }

    /// The engine request `params` ask for, checked against the model and the limits.
    func generationRequest(_ params: CompletionParameters) throws(OpenAIError) -> GenerationRequest {
        if let model = params.model, model != options.modelName { throw modelNotFound(model) }
        let ids: [Int32]
        switch params.prompt {
        case let .text(text):
            do { ids = try codec.encode(text) } catch { throw .invalid("prompt", "the prompt cannot be tokenized: \(error)") }
            guard !ids.isEmpty else { throw .invalid("prompt", "the prompt encodes to no tokens") }
        case let .tokens(t):
            ids = t
        }
        // Token ids from the client, or from a tokenizer.json larger than the model's embedding.
        if let (i, bad) = ids.enumerated().first(where: { $0.element < 0 || Int($0.element) >= codec.vocabSize }) {
            throw .invalid("prompt", "prompt token \(i) is \(bad), outside the model's vocabulary (0..<\(codec.vocabSize))")
        }
        guard ids.count <= options.maxPromptTokens else {
            throw .invalid("prompt", "the prompt has \(ids.count) tokens; this server takes at most \(options.maxPromptTokens) (--max-prompt-tokens)")
        }
        guard ids.count < options.contextLength else {
            throw .invalid("prompt", "the prompt has \(ids.count) tokens; the model's context is \(options.contextLength), which leaves no room for a new token",
                           code: "context_length_exceeded")
        }
        guard params.maxTokens <= options.maxTokens else {
            throw .invalid("max_tokens", "max_tokens is \(params.maxTokens); this server allows at most \(options.maxTokens) (--max-tokens)")
        }
        return GenerationRequest(prompt: ids, maxNewTokens: params.maxTokens, sampling: params.sampling,
                                 seed: params.seed ?? UInt64.random(in: 0...UInt64.max), stopTokens: params.ignoreEOS ? [] : codec.stopTokens)
    }

    func modelNotFound(_ name: String) -> OpenAIError {
        OpenAIError(status: .notFound, message: "the model '\(name)' does not exist; this server serves '\(options.modelName)'",
                    type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
