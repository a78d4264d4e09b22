import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import SparseMoEServer
import SparseMoE

/// The HTTP API through Hummingbird's router test client, over the scripted backend. The
/// model's text codec is the byte tokenizer (token = UTF-8 byte, eos 258), so scripts are
/// written as text.
final class ServingHTTPTests: XCTestCase {
    static let codec = TextCodec(kind: .byteTokenizer, vocabSize: ByteTokenizer.vocabularySize, stopTokens: [ByteTokenizer.eos])

    static func server(_ backend: FakeBackend, context: Int = 128, maxTokens: Int = 64, maxPromptTokens: Int = 100,
                       metrics: ServerMetrics = ServerMetrics()) -> CompletionServer {
        CompletionServer(backend: backend, codec: codec,
                         options: ServerOptions(modelName: "tiny", contextLength: context, maxTokens: maxTokens, maxPromptTokens: maxPromptTokens),
                         metrics: metrics)
    }

    /// Runs `test` against `server`'s routes.
    func withClient(_ server: CompletionServer, _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await Application(router: server.router()).test(.router) { client in try await test(client) }
    }

    static func post(_ client: any TestClientProtocol, _ json: String) async throws -> TestResponse {
        try await client.execute(uri: "/v1/completions", method: .post, headers: [.contentType: "application/json"],
                                 body: ByteBuffer(string: json))
    }

    static func object(_ response: TestResponse) throws -> [String: Any] {
        let any = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))
        return try XCTUnwrap(any as? [String: Any], "\(String(buffer: response.body))")
    }

    /// The `data:` payloads of an event stream, checking the framing (every event is one
    /// `data: …` line followed by a blank line).
    static func events(_ body: ByteBuffer) throws -> [String] {
        let text = String(buffer: body)
        XCTAssertTrue(text.hasSuffix("\n\n"), text)
        return try text.components(separatedBy: "\n\n").dropLast().map { event in
            XCTAssertTrue(event.hasPrefix("data: "), event)
            XCTAssertFalse(event.contains("\n"), event)
            return try XCTUnwrap(event.hasPrefix("data: ") ? String(event.dropFirst(6)) : nil)
        }
    }

    static func chunk(_ payload: String) throws -> (text: String, finish: Any?, object: [String: Any]) {
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any], payload)
        let choice = try XCTUnwrap((o["choices"] as? [[String: Any]])?.first, payload)
        return (try XCTUnwrap(choice["text"] as? String), choice["finish_reason"], o)
    }

    // MARK: Endpoints

    func testModelsHealthAndMetricsEndpoints() async throws {
        let backend = FakeBackend(load: (queue: 3, running: 2))
        let server = Self.server(backend)
        try await withClient(server) { client in
            let models = try await client.execute(uri: "/v1/models", method: .get)
            XCTAssertEqual(models.status, .ok)
            XCTAssertEqual(models.headers[.contentType], "application/json")
            let list = try Self.object(models)
            XCTAssertEqual(list["object"] as? String, "list")
            let card = try XCTUnwrap((list["data"] as? [[String: Any]])?.first)
            XCTAssertEqual(card["id"] as? String, "tiny")
            XCTAssertEqual(card["object"] as? String, "model")
            XCTAssertEqual(card["owned_by"] as? String, "sparsemoe")
            XCTAssertEqual(card["created"] as? Int, server.options.created)

            let one = try await client.execute(uri: "/v1/models/tiny", method: .get)
            XCTAssertEqual(try Self.object(one)["id"] as? String, "tiny")
            let missing = try await client.execute(uri: "/v1/models/gpt-4", method: .get)
            XCTAssertEqual(missing.status, .notFound)
            let error = try XCTUnwrap(try Self.object(missing)["error"] as? [String: Any])
            XCTAssertEqual(error["code"] as? String, "model_not_found")

            let health = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(health.status, .ok)
            let h = try Self.object(health)
            XCTAssertEqual(h["status"] as? String, "ok")
            XCTAssertEqual(h["queue_length"] as? Int, 3)
            XCTAssertEqual(h["running"] as? Int, 2)

            let metrics = try await client.execute(uri: "/metrics", method: .get)
            XCTAssertEqual(metrics.status, .ok)
            XCTAssertTrue(metrics.headers[.contentType]?.hasPrefix("text/plain") ?? false)
            XCTAssertTrue(String(buffer: metrics.body).contains("moe_queue_length 3.0\n"), String(buffer: metrics.body))
        }
    }

    func testCompletionAnswerHasOpenAIsShape() async throws {
        let backend = FakeBackend(bytesOf: "Hello")
        try await withClient(Self.server(backend)) { client in
            let response = try await Self.post(client, #"{"model": "tiny", "prompt": "hi"}"#)
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(response.headers[.contentType], "application/json")
            let o = try Self.object(response)
            XCTAssertTrue((o["id"] as? String)?.hasPrefix("cmpl-") ?? false)
            XCTAssertEqual(o["object"] as? String, "text_completion")
            XCTAssertEqual(o["model"] as? String, "tiny")
            XCTAssertLessThanOrEqual(abs((o["created"] as? Int ?? 0) - Int(Date().timeIntervalSince1970)), 60)
            let choices = try XCTUnwrap(o["choices"] as? [[String: Any]])
            XCTAssertEqual(choices.count, 1)
            XCTAssertEqual(choices[0]["index"] as? Int, 0)
            XCTAssertEqual(choices[0]["text"] as? String, "Hello")
            XCTAssertEqual(choices[0]["finish_reason"] as? String, "length")
            XCTAssertTrue(choices[0]["logprobs"] is NSNull, "logprobs is null, not absent")
            let usage = try XCTUnwrap(o["usage"] as? [String: Int])
            XCTAssertEqual(usage, ["prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7])
        }
        // What reached the engine: the prompt's tokens, OpenAI's defaults, the model's eos.
        let request = try XCTUnwrap(backend.submitted.first)
        XCTAssertEqual(request.prompt, [104, 105])
        XCTAssertEqual(request.maxNewTokens, 16)
        XCTAssertEqual(request.sampling, SamplingOptions(temperature: 1))
        XCTAssertEqual(request.stopTokens, [ByteTokenizer.eos])
    }

    func testSamplingFieldsAndPromptFormsReachTheEngine() async throws {
        let backend = FakeBackend(bytesOf: "ok")
        try await withClient(Self.server(backend)) { client in
            for body in [#"{"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0, "top_p": 0.5, "top_k": 3, "seed": 42}"#,
                         #"{"prompt": ["hi"], "temperature": 0.7}"#,
                         #"{"prompt": [[7, 8]], "seed": 1}"#,
                         #"{"prompt": "x", "ignore_eos": true}"#] {
                let response = try await Self.post(client, body)
                XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            }
        }
        let r = backend.submitted
        XCTAssertEqual(r.map(\.prompt), [[1, 2, 3], [104, 105], [7, 8], [120]])
        XCTAssertEqual(r.map(\.stopTokens), [[ByteTokenizer.eos], [ByteTokenizer.eos], [ByteTokenizer.eos], []], "ignore_eos drops the eos stop")
        XCTAssertEqual(r[0].maxNewTokens, 5)
        XCTAssertEqual(r[0].sampling, SamplingOptions(temperature: 0, topK: 3, topP: 0.5))
        XCTAssertEqual(r[0].seed, 42)
        XCTAssertEqual(r[1].sampling, SamplingOptions(temperature: 0.7))
        XCTAssertEqual(r[2].seed, 1)
    }

    func testEndOfSequenceEndsTheCompletionWithoutText() async throws {
        let backend = FakeBackend(.events([.token(111), .token(107), .token(ByteTokenizer.eos), .finished(.stop)]))
        try await withClient(Self.server(backend)) { client in
            let o = try Self.object(try await Self.post(client, #"{"prompt": "hi"}"#))
            let choice = try XCTUnwrap((o["choices"] as? [[String: Any]])?.first)
            XCTAssertEqual(choice["text"] as? String, "ok")
            XCTAssertEqual(choice["finish_reason"] as? String, "stop")
            XCTAssertEqual((o["usage"] as? [String: Int])?["completion_tokens"], 3, "the eos token counts")
        }
    }

    // MARK: Streaming

    func testStreamingFraming() async throws {
        let backend = FakeBackend(bytesOf: "Hi!")
        try await withClient(Self.server(backend)) { client in
            let response = try await Self.post(client, #"{"prompt": "x", "stream": true}"#)
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(response.headers[.contentType], "text/event-stream")
            let events = try Self.events(response.body)
            XCTAssertEqual(events.last, "[DONE]")
            let chunks = try events.dropLast().map(Self.chunk)
            XCTAssertEqual(chunks.map(\.text), ["H", "i", "!", ""], "one chunk per token, then the finishing one")
            for c in chunks.dropLast() { XCTAssertTrue(c.finish is NSNull, "finish_reason is null until the last chunk") }
            XCTAssertEqual(chunks.last?.finish as? String, "length")
            let ids = Set(chunks.map { $0.object["id"] as? String })
            XCTAssertEqual(ids.count, 1, "every chunk carries the completion's id")
            XCTAssertEqual(chunks[0].object["object"] as? String, "text_completion")
            XCTAssertNil(chunks.last?.object["usage"])
        }
    }

    func testStreamingWithUsage() async throws {
        let backend = FakeBackend(bytesOf: "ab")
        try await withClient(Self.server(backend)) { client in
            let response = try await Self.post(client, #"{"prompt": "xyz", "stream": true, "stream_options": {"include_usage": true}}"#)
            let events = try Self.events(response.body)
            XCTAssertEqual(events.count, 5)
            let usage = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(events[3].utf8)) as? [String: Any])
            XCTAssertEqual((usage["choices"] as? [Any])?.count, 0)
            XCTAssertEqual(usage["usage"] as? [String: Int], ["prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5])
        }
    }

    func testMultiByteCharactersSplitAcrossTokensStreamWhole() async throws {
        let text = "é€😀x"  // 2, 3, 4 and 1 bytes: one token per byte
        let backend = FakeBackend(bytesOf: text)
        try await withClient(Self.server(backend)) { client in
            let chunks = try Self.events(try await Self.post(client, #"{"prompt": "x", "stream": true}"#).body).dropLast().map(Self.chunk)
            XCTAssertEqual(chunks.map(\.text), ["é", "€", "😀", "x", ""])
            let whole = try Self.object(try await Self.post(client, #"{"prompt": "x"}"#))
            XCTAssertEqual((whole["choices"] as? [[String: Any]])?.first?["text"] as? String, text)
        }
        // A character cut off by max_tokens ends as U+FFFD, as a one-shot decode would have it.
        backend.script = .events([.token(0x61), .token(0xE2), .token(0x82), .finished(.length)])
        try await withClient(Self.server(backend)) { client in
            let chunks = try Self.events(try await Self.post(client, #"{"prompt": "x", "stream": true}"#).body).dropLast().map(Self.chunk)
            XCTAssertEqual(chunks.map(\.text).joined(), "a\u{FFFD}")
            XCTAssertEqual(chunks.last?.finish as? String, "length")
        }
    }

    // MARK: Stop strings

    func testStopStringsTruncateAndCancel() async throws {
        let cases: [(stop: String, text: String)] = [
            (#""\n""#, "abc"),
            (#""bc""#, "a"),                  // spans two tokens
            (#"["zz", "c\nx"]"#, "ab"),       // the array form; the earliest match wins
            (#"["yz", "\n"]"#, "abc"),
            (#""€""#, "abc\nxyz"),            // absent: the whole completion, finish_reason length
        ]
        for (stop, expected) in cases {
            for stream in [false, true] {
                let backend = FakeBackend(bytesOf: "abc\nxyz")
                try await withClient(Self.server(backend)) { client in
                    let response = try await Self.post(client, #"{"prompt": "p", "stop": \#(stop), "stream": \#(stream)}"#)
                    let text: String, finish: String?
                    if stream {
                        let chunks = try Self.events(response.body).dropLast().map(Self.chunk)
                        (text, finish) = (chunks.map(\.text).joined(), chunks.last?.finish as? String)
                    } else {
                        let choice = try XCTUnwrap((try Self.object(response)["choices"] as? [[String: Any]])?.first)
                        (text, finish) = (choice["text"] as? String ?? "", choice["finish_reason"] as? String)
                    }
                    XCTAssertEqual(text, expected, "stop \(stop), stream \(stream)")
                    XCTAssertEqual(finish, expected == "abc\nxyz" ? "length" : "stop", "stop \(stop)")
                }
                XCTAssertEqual(backend.cancelled.isEmpty, expected == "abc\nxyz", "a stop string cancels the sequence (\(stop))")
            }
        }
    }

    // MARK: Bad input

    func testBadInputIsAnsweredWithAnErrorNamingTheField() async throws {
        let backend = FakeBackend(bytesOf: "ok")
        let tooLong = "[" + Array(repeating: "1", count: 101).joined(separator: ",") + "]"
        let overContext = "[" + Array(repeating: "1", count: 50).joined(separator: ",") + "]"
        let cases: [(body: String, status: HTTPResponse.Status, param: String?)] = [
            (#"{"prompt": "#, .badRequest, nil),                         // malformed JSON
            ("[1, 2]", .badRequest, nil),                                 // not an object
            (#"{"max_tokens": 4}"#, .badRequest, "prompt"),               // no prompt
            (#"{"prompt": 5}"#, .badRequest, "prompt"),
            (#"{"prompt": ""}"#, .badRequest, "prompt"),
            (#"{"prompt": []}"#, .badRequest, "prompt"),
            (#"{"prompt": ["a", "b"]}"#, .badRequest, "prompt"),          // a batch
            (#"{"prompt": [1, 300]}"#, .badRequest, "prompt"),            // outside the vocabulary
            (#"{"prompt": [-1]}"#, .badRequest, "prompt"),
            (#"{"prompt": [1.5]}"#, .badRequest, "prompt"),
            (#"{"prompt": \#(tooLong)}"#, .badRequest, "prompt"),        // over --max-prompt-tokens
            (#"{"prompt": \#(overContext)}"#, .badRequest, "prompt"),    // fills the context (50)
            (#"{"prompt": "hi", "max_tokens": 0}"#, .badRequest, "max_tokens"),
            (#"{"prompt": "hi", "max_tokens": 65}"#, .badRequest, "max_tokens"),   // over --max-tokens
            (#"{"prompt": "hi", "max_tokens": "8"}"#, .badRequest, "max_tokens"),
            (#"{"prompt": "hi", "model": "gpt-4"}"#, .notFound, "model"),
            (#"{"prompt": "hi", "model": 3}"#, .badRequest, "model"),
            (#"{"prompt": "hi", "temperature": -0.1}"#, .badRequest, "temperature"),
            (#"{"prompt": "hi", "temperature": "hot"}"#, .badRequest, "temperature"),
            (#"{"prompt": "hi", "top_p": 0}"#, .badRequest, "top_p"),
            (#"{"prompt": "hi", "top_p": 1.5}"#, .badRequest, "top_p"),
            (#"{"prompt": "hi", "top_k": 0}"#, .badRequest, "top_k"),
            (#"{"prompt": "hi", "top_k": 2.5}"#, .badRequest, "top_k"),
            (#"{"prompt": "hi", "seed": -1}"#, .badRequest, "seed"),
            (#"{"prompt": "hi", "stop": 5}"#, .badRequest, "stop"),
            (#"{"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}"#, .badRequest, "stop"),
            (#"{"prompt": "hi", "stop": [""]}"#, .badRequest, "stop"),
            (#"{"prompt": "hi", "stream": "yes"}"#, .badRequest, "stream"),
            (#"{"prompt": "hi", "ignore_eos": 1}"#, .badRequest, "ignore_eos"),
            (#"{"prompt": "hi", "n": 2}"#, .badRequest, "n"),
        ]
        try await withClient(Self.server(backend, context: 50)) { client in
            for c in cases {
                let response = try await Self.post(client, c.body)
                XCTAssertEqual(response.status, c.status, c.body)
                XCTAssertEqual(response.headers[.contentType], "application/json")
                let error = try XCTUnwrap(try Self.object(response)["error"] as? [String: Any], c.body)
                XCTAssertEqual(error["type"] as? String, "invalid_request_error", c.body)
                XCTAssertFalse((error["message"] as? String ?? "").isEmpty, c.body)
                XCTAssertTrue(error.keys.contains("param") && error.keys.contains("code"), "param and code are present (maybe null)")
                XCTAssertEqual(error["param"] as? String, c.param, c.body)
                if let p = c.param {
                    XCTAssertTrue((error["message"] as? String ?? "").contains(p), "the message names the field: \(c.body): \(error)")
                }
            }
        }
        XCTAssertTrue(backend.submitted.isEmpty, "no bad request reaches the engine")
    }

    func testTextPromptOutsideTheModelsVocabularyAndOversizedBodies() async throws {
        let backend = FakeBackend(bytesOf: "ok")
        // A tokenizer whose ids run past the model's embedding (byte fallback on a 100-row model).
        var server = CompletionServer(backend: backend, codec: TextCodec(kind: .byteFallback, vocabSize: 100, stopTokens: []),
                                      options: ServerOptions(modelName: "tiny", contextLength: 128, maxTokens: 64, maxPromptTokens: 100),
                                      metrics: ServerMetrics())
        try await withClient(server) { client in
            let response = try await Self.post(client, #"{"prompt": "Ab"}"#)  // 65 fits, 98 fits; "z" = 122 does not
            XCTAssertEqual(response.status, .ok)
            let bad = try await Self.post(client, #"{"prompt": "Az"}"#)
            XCTAssertEqual(bad.status, .badRequest)
            let error = try XCTUnwrap(try Self.object(bad)["error"] as? [String: Any])
            XCTAssertEqual(error["param"] as? String, "prompt")
            XCTAssertTrue((error["message"] as? String ?? "").contains("122"), "\(error)")
        }
        XCTAssertEqual(backend.submitted.map(\.prompt), [[65, 98]])
        var options = server.options
        options.maxBodyBytes = 64
        server = CompletionServer(backend: backend, codec: server.codec, options: options, metrics: server.metrics)
        try await withClient(server) { client in
            let response = try await Self.post(client, #"{"prompt": "\#(String(repeating: "a", count: 100))"}"#)
            XCTAssertEqual(response.status, .contentTooLarge)
            XCTAssertNotNil(try Self.object(response)["error"] as? [String: Any])
        }
    }

    /// Mutated request bodies (`JSONMutator`): each is answered 200 with a completion or 4xx
    /// with an error body; none is a 500, and the server keeps answering.
    func testFuzzedBodiesAreAnsweredNeverCrashed() async throws {
        let backend = FakeBackend(bytesOf: "ok")
        let seeds: [JSONValue] = [
            .object(["model": .string("tiny"), "prompt": .string("hello"), "max_tokens": .int(4), "temperature": .double(0.5),
                     "top_p": .double(0.9), "top_k": .int(5), "seed": .int(3), "stop": .array([.string("x"), .string("k")]), "stream": .bool(false)]),
            .object(["prompt": .array([.int(1), .int(2), .int(3)]), "stream": .bool(true), "stream_options": .object(["include_usage": .bool(true)])]),
            .object(["prompt": .array([.string("hi")]), "stop": .string("o"), "n": .int(1), "logprobs": .null, "echo": .bool(false)]),
        ]
        try await withClient(Self.server(backend)) { client in
            var mutator = JSONMutator(seed: 31)
            var counts = FuzzCounts()
            for i in 0..<600 {
                let body = mutator.mutate(seeds[i % seeds.count])
                let response = try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(bytes: body))
                let shown = String(decoding: body, as: UTF8.self)
                if response.status == .ok {
                    counts.accepted += 1
                    XCTAssertTrue(String(buffer: response.body).contains("text_completion"), shown)
                } else {
                    counts.rejected += 1
                    XCTAssertTrue((400..<500).contains(response.status.code), "\(response.status) for \(shown)")
                    let error = try XCTUnwrap(try Self.object(response)["error"] as? [String: Any], shown)
                    XCTAssertEqual(error["type"] as? String, "invalid_request_error", shown)
                }
            }
            print("fuzz /v1/completions: \(counts)")
            XCTAssertGreaterThan(counts.accepted, 50)
            XCTAssertGreaterThan(counts.rejected, 50)
            let health = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(health.status, .ok)
        }
    }

    func testEngineRefusalsMapToStatusCodes() async throws {
        let backend = FakeBackend(bytesOf: "ok")
        let refusals: [(ServingError, HTTPResponse.Status, String, String?, String)] = [
            (.queueFull(limit: 4), .tooManyRequests, "rate_limit_error", nil, ServingError.queueFull(limit: 4).description),
            (.shuttingDown, .serviceUnavailable, "server_error", nil, ServingError.shuttingDown.description),
            (.invalidRequest(field: "prompt", message: "too long for the cache"), .badRequest, "invalid_request_error", "prompt", "too long for the cache"),
        ]
        try await withClient(Self.server(backend)) { client in
            for (refusal, status, type, param, message) in refusals {
                backend.refusal = refusal
                for stream in [false, true] {
                    let response = try await Self.post(client, #"{"prompt": "hi", "stream": \#(stream)}"#)
                    XCTAssertEqual(response.status, status, "\(refusal)")
                    let error = try XCTUnwrap(try Self.object(response)["error"] as? [String: Any])
                    XCTAssertEqual(error["type"] as? String, type)
                    XCTAssertEqual(error["param"] as? String, param)
                    XCTAssertEqual(error["message"] as? String, message)
                }
            }
        }
    }

    func testAFailedGenerationIsAServerError() async throws {
        let backend = FakeBackend(.events([.token(65), .failed("the step threw")]))
        try await withClient(Self.server(backend)) { client in
            let whole = try await Self.post(client, #"{"prompt": "hi"}"#)
            XCTAssertEqual(whole.status, .internalServerError)
            let error = try XCTUnwrap(try Self.object(whole)["error"] as? [String: Any])
            XCTAssertEqual(error["type"] as? String, "server_error")
            XCTAssertTrue((error["message"] as? String ?? "").contains("the step threw"))
            // Streaming: the status line went out already, so the error is the last event before [DONE].
            let events = try Self.events(try await Self.post(client, #"{"prompt": "hi", "stream": true}"#).body)
            XCTAssertEqual(events.count, 3)
            XCTAssertEqual(try Self.chunk(events[0]).text, "A")
            XCTAssertTrue(events[1].contains(#""type":"server_error""#), events[1])
            XCTAssertEqual(events[2], "[DONE]")
        }
    }

    // MARK: Cancellation and metrics

    /// A client that goes away shows up as a failed write: the run cancels the sequence.
    func testFailedWriteCancelsTheSequence() async throws {
        struct Gone: Error {}
        let backend = FakeBackend(.endless(interval: .milliseconds(1), modulo: 26))
        let stream = try backend.submit(GenerationRequest(prompt: [1], maxNewTokens: 1000))
        let run = CompletionRun(codec: Self.codec, metrics: ServerMetrics(), stops: [])
        var writes = 0
        do {
            _ = try await run.run(stream) { _ in
                writes += 1
                if writes == 3 { throw Gone() }
            }
            XCTFail("the write error propagates")
        } catch is Gone {}
        XCTAssertEqual(backend.cancelled, [stream.id])
        XCTAssertEqual(writes, 3)
    }

    func testMetricsAfterRequests() async throws {
        let backend = FakeBackend(bytesOf: "Hello")
        let metrics = ServerMetrics()
        try await withClient(Self.server(backend, metrics: metrics)) { client in
            _ = try await Self.post(client, #"{"prompt": "hi"}"#)
            _ = try await Self.post(client, #"{"prompt": "hi", "stream": true}"#)
            _ = try await Self.post(client, #"{"prompt": "hi", "top_k": 0}"#)
            var step = SchedulerStepReport()
            step.decodeSequences = 2
            step.queueLength = 1
            step.running = 2
            step.expertLoad = [3, 0, 5]
            step.team = 1
            metrics.record(step: step)
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            for line in [#"moe_requests_total{status="200"} 2"#, #"moe_requests_total{status="400"} 1"#,
                         "moe_prompt_tokens_total 4", "moe_completion_tokens_total 10",
                         #"moe_batch_size_bucket{le="2.0"} 1"#, "moe_batch_size_count 1",
                         "moe_time_to_first_token_seconds_count 2", "moe_inter_token_latency_seconds_count 8",
                         "moe_queue_length 1.0", "moe_requests_running 2.0", "moe_decode_threads 1.0",
                         #"moe_expert_tokens_total{expert="0"} 3"#, #"moe_expert_tokens_total{expert="1"} 0"#,
                         #"moe_expert_tokens_total{expert="2"} 5"#] {
                XCTAssertTrue(text.contains(line + "\n"), "missing '\(line)' in\n\(text)")
            }
        }
    }
}
