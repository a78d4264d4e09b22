import Foundation
import SparseMoE

/// Turns one request's `GenerationStream` into completion text: tokens → UTF-8 bytes →
/// whole characters → stop-string check → text deltas handed to `emit` as they become safe
/// to send.
///
/// - The model's stop tokens (eos) end the completion and add no text.
/// - A stop string ends it too: the text stops before the string, the sequence is cancelled,
///   and `finish_reason` is "stop".
/// - If `emit` throws (the client went away) or the task is cancelled, the sequence is
///   cancelled before the error propagates.
/// - A `failed` event throws a 500 `OpenAIError`.
struct CompletionRun {
    let codec: TextCodec
    let metrics: ServerMetrics
    let stops: [String]

    struct Outcome {
        /// OpenAI's finish_reason ("stop", "length"; "cancelled" if the engine cancelled it).
        var finishReason: String
        /// Tokens generated (a stop token counts; so do tokens after a stop string's start).
        var completionTokens: Int
    }

    /// Consumes `stream`, calling `emit` with each non-empty text delta in order.
    func run(_ stream: GenerationStream, emit: (String) async throws -> Void) async throws -> Outcome {
        var decoder = UTF8StreamDecoder()
        var matcher = StopStringMatcher(stops: stops)
        var tokens = 0
        var finish: String?
        let start = ContinuousClock.now
        var last: ContinuousClock.Instant?
        defer { metrics.completion(tokens: tokens) }
        do {
            try await withTaskCancellationHandler {
                events: for await event in stream {
                    switch event {
                    case let .token(t):
                        let now = ContinuousClock.now
                        if let last { metrics.interToken(seconds: Self.seconds(now - last)) } else {
                            metrics.firstToken(after: Self.seconds(now - start))
                        }
                        last = now
                        tokens += 1
                        if codec.stopTokens.contains(t) { continue }
                        let delta = matcher.append(decoder.append(codec.bytes(of: t)))
                        if !delta.isEmpty { try await emit(delta) }
                        if matcher.stopped {
                            stream.cancel()
                            finish = FinishReason.stop.rawValue
                            break events
                        }
                    case let .finished(reason):
                        finish = reason.rawValue
                        break events
                    case let .failed(message):
                        throw OpenAIError(status: .internalServerError, message: "generation failed: \(message)", type: "server_error")
                    }
                }
            } onCancel: {
                stream.cancel()
            }
        } catch {
            stream.cancel()
            throw error
        }
        // Held-back bytes and text: an incomplete character at the end, or a stop string's start.
        var tail = matcher.append(decoder.finish())
        if matcher.stopped { finish = FinishReason.stop.rawValue }
        tail += matcher.finish()
        if !tail.isEmpty { try await emit(tail) }
        return Outcome(finishReason: finish ?? FinishReason.cancelled.rawValue, completionTokens: tokens)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
