import Foundation
import SparseMoECore
import SparseMoEModels

/// A `BatchScheduler` running on its own thread, for callers in Swift concurrency (an HTTP
/// server): `submit` returns at once with a `GenerationStream` of the request's events; the
/// engine thread steps the scheduler while there is work and sleeps when there is none.
///
/// Submissions and cancellations go through an inbox under a lock, so no caller ever waits
/// for a forward to finish. `onStep` sees every step's report (metrics), on the engine thread.
public final class GenerationEngine: @unchecked Sendable {
    public let scheduler: BatchScheduler
    let onStep: @Sendable (SchedulerStepReport) -> Void
    let condition = NSCondition()
    // Guarded by `condition`:
    var inbox: [(RequestID, GenerationRequest)] = []
    var cancels: [RequestID] = []
    var streams: [RequestID: AsyncStream<GenerationEvent>.Continuation] = [:]
    var nextID: RequestID = 0
    var waiting = 0, active = 0
    var draining = false, stopped = false
    var stopWaiters: [CheckedContinuation<Void, Never>] = []
    var thread: Thread?

    /// Starts the engine thread. `options` as for `BatchScheduler`.
    public init(model: TransformerLM, options: SchedulerOptions = SchedulerOptions(),
                onStep: @escaping @Sendable (SchedulerStepReport) -> Void = { _ in }) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        scheduler = try BatchScheduler(model: model, options: options,
                                       clock: { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 })
        self.onStep = onStep
        let t = Thread { [unowned self] in self.loop() }
        t.name = "sparsemoe-engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Requests waiting for admission (submitted, not yet running).
    public var queueLength: Int { condition.withLock { waiting } }
    /// Sequences being prefilled or decoded.
    public var running: Int { condition.withLock { active } }

    /// Queues `request`. Throws `ServingError.invalidRequest` (the field to fix),
    /// `.queueFull` when `maxQueue` requests wait, `.shuttingDown` after `shutdown()`.
    public func submit(_ request: GenerationRequest) throws -> GenerationStream {
        try scheduler.validate(request)
        var continuation: AsyncStream<GenerationEvent>.Continuation!
        let events = AsyncStream<GenerationEvent>(bufferingPolicy: .unbounded) { continuation = $0 }
        let id: RequestID = try condition.withLock {
            guard !draining else { throw ServingError.shuttingDown }
            guard waiting < scheduler.options.maxQueue else { throw ServingError.queueFull(limit: scheduler.options.maxQueue) }
            let id = nextID
            nextID += 1
            waiting += 1
            inbox.append((id, request))
            streams[id] = continuation
            condition.signal()
            return id
        }
        continuation.onTermination = { [weak self] reason in
            if case .cancelled = reason { self?.cancel(id) }
        }
        return GenerationStream(id: id, events: events, cancel: { [weak self] in self?.cancel(id) })
    }

    /// Cancels a request (queued or running); its stream ends with `.finished(.cancelled)`.
    public func cancel(_ id: RequestID) {
        condition.withLock {
            cancels.append(id)
            condition.signal()
        }
    }

    /// Stops taking requests, lets every queued and running one finish, then stops the thread.
    public func shutdown() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            condition.withLock {
                if stopped { c.resume(); return }
                draining = true
                stopWaiters.append(c)
                condition.signal()
            }
        }
    }

    func loop() {
        while true {
            condition.lock()
            while inbox.isEmpty && cancels.isEmpty && scheduler.isIdle && !draining { condition.wait() }
            let newRequests = inbox, newCancels = cancels
            inbox = []
            cancels = []
            condition.unlock()

            for (id, r) in newRequests {
                do { try scheduler.submit(r, id: id) } catch {
                    // Validated and counted at submit; only a changed limit could land here.
                    deliver([(id, .failed("\(error)"))])
                }
            }
            for id in newCancels { scheduler.cancel(id) }
            let report = scheduler.step()
            condition.withLock {
                waiting = scheduler.queueLength + inbox.count
                active = scheduler.runningCount
            }
            deliver(report.events)
            if !report.events.isEmpty || report.decodeSequences + report.prefillTokens > 0 { onStep(report) }

            let done: [CheckedContinuation<Void, Never>]? = condition.withLock {
                guard draining, inbox.isEmpty, cancels.isEmpty, scheduler.isIdle else { return nil }
                stopped = true
                defer { stopWaiters = [] }
                return stopWaiters
            }
            if let done {
                done.forEach { $0.resume() }
                return
            }
        }
    }

    func deliver(_ events: [(id: RequestID, event: GenerationEvent)]) {
        for (id, event) in events {
            let c = condition.withLock { streams[id] }
            c?.yield(event)
            switch event {
            case .finished, .failed:
                c?.finish()
                condition.withLock { _ = streams.removeValue(forKey: id) }
            case .token:
                break
            }
        }
    }
}
