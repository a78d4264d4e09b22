import Foundation
import ServiceLifecycle
import XCTest
@testable import SparseMoEServer
import SparseMoE
#if canImport(Glibc)
import Glibc
#endif

/// `moe serve`'s pieces together: the real HTTP server over the real continuous-batching
/// engine and a small byte-tokenizer model, several clients at once over loopback. Each
/// completion must be what `TransformerLM.generate` gives that request alone.
final class ServingEndToEndTests: XCTestCase {
    func testConcurrentClientsGetTheTokensOfGenerate() async throws {
        var moe = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 16)
        moe.firstDense = 0
        var config = TransformerConfig(vocabSize: ByteTokenizer.vocabularySize, hiddenSize: 16, numLayers: 2, numHeads: 4,
                                       numKVHeads: 2, maxSequenceLength: 64, intermediateSize: 32, moe: moe)
        config.initStd = 0.4
        let model = try TransformerLM(config: config, seed: 3)
        let codec = TextCodec(kind: .byteTokenizer, vocabSize: config.vocabSize, stopTokens: [ByteTokenizer.eos])
        let steps = BatchSizes()
        let engine = try GenerationEngine(model: model, options: SchedulerOptions(maxBatch: 4, maxQueue: 16), onStep: { steps.add($0) })
        let server = CompletionServer(backend: engine, codec: codec,
                                      options: ServerOptions(modelName: "tiny", contextLength: 64, maxTokens: 40, maxPromptTokens: 40),
                                      metrics: ServerMetrics())
        let requests: [(prompt: String, maxTokens: Int, temperature: Float, seed: UInt64)] = [
            ("Hello", 12, 0, 0), ("ab", 20, 1, 7), ("The quick brown fox", 9, 0.8, 3), ("x", 30, 1.3, 11),
            ("moe", 16, 0, 0), ("serve", 8, 1, 2),
        ]
        var expected: [(text: String, tokens: Int)] = []
        for r in requests {
            var sampler = try Sampler(options: SamplingOptions(temperature: r.temperature), seed: r.seed)
            let tokens = try model.generate(prompt: ByteTokenizer().encode(r.prompt), maxNewTokens: r.maxTokens, sampler: &sampler,
                                            stopTokens: [ByteTokenizer.eos])
            expected.append((ByteTokenizer().decode(tokens.filter { $0 != ByteTokenizer.eos }), tokens.count))
        }
        let bodies = requests.enumerated().map { i, r in
            #"{"model": "tiny", "prompt": "\#(r.prompt)", "max_tokens": \#(r.maxTokens), "temperature": \#(r.temperature), "seed": \#(r.seed), "stream": \#(i % 2 == 0)}"#
        }
        try await ServingLiveServerTests.withLiveServer(server) { port in
            let answers = await Self.fetchConcurrently(port: port, bodies: bodies)
            for (i, answer) in answers.enumerated() {
                XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), "request \(i): \(answer)")
                if i % 2 == 0 {
                    // Streamed: concatenate the text deltas; the last chunk before [DONE] has usage only if asked.
                    let events = Self.body(of: answer).components(separatedBy: "data: ").dropFirst().map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                    XCTAssertEqual(events.last, "[DONE]", "request \(i)")
                    var text = ""
                    for e in events.dropLast() {
                        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any], e)
                        text += ((o["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
                    }
                    XCTAssertEqual(text, expected[i].text, "request \(i) (streamed)")
                } else {
                    let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(Self.body(of: answer).utf8)) as? [String: Any], answer)
                    XCTAssertEqual((o["choices"] as? [[String: Any]])?.first?["text"] as? String, expected[i].text, "request \(i)")
                    XCTAssertEqual((o["usage"] as? [String: Any])?["completion_tokens"] as? Int, expected[i].tokens, "request \(i)")
                }
            }
        }
        XCTAssertEqual(engine.running, 0)
        XCTAssertEqual(engine.scheduler.reservedPositions, 0, "every sequence's cache was given back")
        XCTAssertGreaterThan(steps.largest, 1, "concurrent requests decoded in one batch")
    }

    /// The body of a raw HTTP/1.1 answer, its chunked transfer coding undone.
    static func body(of answer: String) -> String {
        let bytes = Array(answer.utf8)
        guard let end = (0..<max(bytes.count - 3, 0)).first(where: { bytes[$0..<($0 + 4)].elementsEqual("\r\n\r\n".utf8) }) else { return "" }
        let head = String(decoding: bytes[..<end], as: UTF8.self).lowercased()
        var rest = Array(bytes[(end + 4)...])
        guard head.contains("transfer-encoding: chunked") else { return String(decoding: rest, as: UTF8.self) }
        var out: [UInt8] = []
        while let lineEnd = (0..<max(rest.count - 1, 0)).first(where: { rest[$0] == 13 && rest[$0 + 1] == 10 }),
              let size = Int(String(decoding: rest[..<lineEnd], as: UTF8.self), radix: 16), size > 0,
              lineEnd + 2 + size <= rest.count {
            out += rest[(lineEnd + 2)..<(lineEnd + 2 + size)]
            rest = Array(rest[min(rest.count, lineEnd + 4 + size)...])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Sends every body as its own POST /v1/completions on its own connection and thread, all
    /// at once; returns the raw answers in order.
    static func fetchConcurrently(port: Int, bodies: [String]) async -> [String] {
        final class Answers: @unchecked Sendable {
            let lock = NSLock()
            var values: [String]
            init(_ n: Int) { values = [String](repeating: "", count: n) }
        }
        return await withCheckedContinuation { continuation in
            let answers = Answers(bodies.count)
            let group = DispatchGroup()
            for (i, body) in bodies.enumerated() {
                group.enter()
                Thread {
                    var answer = "no connection"
                    if let fd = try? ServingLiveServerTests.connect(port) {
                        ServingLiveServerTests.send(fd, ServingLiveServerTests.request("POST", "/v1/completions", json: body))
                        answer = ServingLiveServerTests.receive(fd)
                        close(fd)
                    }
                    answers.lock.withLock { answers.values[i] = answer }
                    group.leave()
                }.start()
            }
            group.notify(queue: .global()) { continuation.resume(returning: answers.lock.withLock { answers.values }) }
        }
    }

    final class BatchSizes: @unchecked Sendable {
        let lock = NSLock()
        var largest = 0
        func add(_ r: SchedulerStepReport) { lock.withLock { largest = max(largest, r.decodeSequences) } }
    }
}
