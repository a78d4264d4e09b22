import Foundation
import SparseMoE
import SparseMoEServer

/// A scripted `CompletionBackend` for the HTTP tests: each submitted request gets the
/// script's tokens (optionally paced, or endless until cancelled), then its finish reason.
/// It records every request and every cancel, and refuses with `refusal` when set.
/// Like the engine, a cancelled stream ends with `.finished(.cancelled)`.
final class FakeBackend: CompletionBackend, @unchecked Sendable {
    enum Script {
        /// These events, in order (tokens then one `finished`/`failed`).
        case events([GenerationEvent])
        /// These events, one every `interval`.
        case paced([GenerationEvent], interval: Duration)
        /// Tokens 0, 1, 2, … (mod `modulo`) every `interval` until cancelled.
        case endless(interval: Duration, modulo: Int32)
    }

    private let lock = NSLock()
    private var _script: Script
    private var _refusal: ServingError?
    private var _submitted: [GenerationRequest] = []
    private var _cancelled: Set<RequestID> = []
    private var _shutdownCalls = 0
    private var nextID = 0
    /// Reported by `queueLength` and `running`.
    let load: (queue: Int, running: Int)

    init(_ script: Script = .events([.finished(.length)]), load: (queue: Int, running: Int) = (0, 0)) {
        _script = script
        self.load = load
    }

    /// Tokens of `text`'s UTF-8 bytes (the byte tokenizer's ids), then `finish`.
    convenience init(bytesOf text: String, finish: FinishReason = .length) {
        self.init(.events(text.utf8.map { GenerationEvent.token(Int32($0)) } + [.finished(finish)]))
    }

    var script: Script {
        get { lock.withLock { _script } }
        set { lock.withLock { _script = newValue } }
    }
    var refusal: ServingError? {
        get { lock.withLock { _refusal } }
        set { lock.withLock { _refusal = newValue } }
    }
    var submitted: [GenerationRequest] { lock.withLock { _submitted } }
    var cancelled: Set<RequestID> { lock.withLock { _cancelled } }
    var shutdownCalls: Int { lock.withLock { _shutdownCalls } }

    var queueLength: Int { load.queue }
    var running: Int { load.running }

    func submit(_ request: GenerationRequest) throws -> GenerationStream {
        let (id, script): (Int, Script) = try lock.withLock {
            if let refusal = _refusal { throw refusal }
            _submitted.append(request)
            nextID += 1
            return (nextID, _script)
        }
        let (events, continuation) = AsyncStream<GenerationEvent>.makeStream()
        let producer = Task {
            switch script {
            case let .events(list):
                for e in list {
                    if isCancelled(id) { break }
                    continuation.yield(e)
                }
            case let .paced(list, interval):
                for e in list {
                    if isCancelled(id) { break }
                    continuation.yield(e)
                    try? await Task.sleep(for: interval)
                }
            case let .endless(interval, modulo):
                var t: Int32 = 0
                while !isCancelled(id) {
                    continuation.yield(.token(t % modulo))
                    t += 1
                    try? await Task.sleep(for: interval)
                }
            }
            if isCancelled(id) { continuation.yield(.finished(.cancelled)) }
            continuation.finish()
        }
        _ = producer
        return GenerationStream(id: id, events: events) { [weak self] in
            guard let self else { return }
            self.lock.withLock { _ = self._cancelled.insert(id) }
        }
    }

    private func isCancelled(_ id: RequestID) -> Bool { lock.withLock { _cancelled.contains(id) } }

    func shutdown() async {
        lock.withLock { _shutdownCalls += 1 }
    }

    /// Waits (up to `timeout`) until `condition` holds.
    func wait(timeout: Duration = .seconds(5), until condition: (FakeBackend) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return condition(self)
    }
}
