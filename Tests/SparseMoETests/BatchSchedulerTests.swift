import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels
@testable import SparseMoEServing

/// The continuous-batching scheduler driven step by step with a fake clock, against
/// `TransformerLM.generate` run on each request alone.
final class BatchSchedulerTests: XCTestCase {
    static func model() throws -> TransformerLM {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 12)
        m.firstDense = 0
        var c = TransformerConfig(vocabSize: 40, hiddenSize: 16, numLayers: 2, numHeads: 4, numKVHeads: 2,
                                  maxSequenceLength: 40, intermediateSize: 24, moe: m)
        c.initStd = 0.5
        return try TransformerLM(config: c, seed: 7)
    }

    /// A clock that advances one second per reading.
    final class FakeClock: @unchecked Sendable {
        var now = 0.0
        func read() -> Double { now += 1; return now }
    }

    /// Steps until idle; returns each request's tokens and finish reason, and the reports.
    func drain(_ s: BatchScheduler, maxSteps: Int = 1000) -> (tokens: [RequestID: [Int32]], finish: [RequestID: FinishReason], reports: [SchedulerStepReport]) {
        var tokens: [RequestID: [Int32]] = [:], finish: [RequestID: FinishReason] = [:], reports: [SchedulerStepReport] = []
        var steps = 0
        while !s.isIdle && steps < maxSteps {
            let r = s.step()
            reports.append(r)
            for (id, e) in r.events {
                switch e {
                case let .token(t): tokens[id, default: []].append(t)
                case let .finished(f): finish[id] = f
                case let .failed(m): XCTFail("request \(id) failed: \(m)")
                }
            }
            steps += 1
        }
        XCTAssertTrue(s.isIdle, "scheduler still busy after \(maxSteps) steps")
        return (tokens, finish, reports)
    }

    let requests: [GenerationRequest] = [
        GenerationRequest(prompt: [1, 2, 3], maxNewTokens: 6),
        GenerationRequest(prompt: Array(1...13).map { Int32($0) }, maxNewTokens: 5, sampling: SamplingOptions(temperature: 0.9, topK: 10), seed: 3),
        GenerationRequest(prompt: [7], maxNewTokens: 9, sampling: SamplingOptions(temperature: 1.2, topP: 0.8), seed: 11),
        GenerationRequest(prompt: [5, 9, 30, 2, 2], maxNewTokens: 4, seed: 5),
        GenerationRequest(prompt: [33, 34], maxNewTokens: 40, sampling: SamplingOptions(temperature: 1), seed: 2),
    ]

    func generated(_ model: TransformerLM, _ r: GenerationRequest) throws -> [Int32] {
        var sampler = try Sampler(options: r.sampling, seed: r.seed)
        return try model.generate(prompt: r.prompt, maxNewTokens: r.maxNewTokens, sampler: &sampler, stopTokens: r.stopTokens)
    }

    /// With team tuning, decode steps run on teams of 1 and 2 while it measures, steps with
    /// prefill on the full team, and every token is the one the untuned scheduler gives.
    func testTeamTuningChangesNoToken() throws {
        let model = try Self.model()
        let wasAdaptive = Threads.adaptive
        defer { Threads.adaptive = wasAdaptive }
        Threads.adaptive = false
        try Threads.with(2) {
            var runs: [[RequestID: [Int32]]] = []
            for tune in [false, true] {
                var now = 0.0 // 0.1 ms per reading: steps short enough to be tuned
                let s = try BatchScheduler(model: model, options: SchedulerOptions(maxBatch: 5, tuneTeams: tune), clock: { now += 1e-4; return now })
                for r in requests { try s.submit(r) }
                let (tokens, _, reports) = drain(s)
                runs.append(tokens)
                let decodeTeams = Set(reports.filter { $0.decodeSequences > 0 && $0.prefillTokens == 0 }.map(\.team))
                XCTAssertEqual(decodeTeams, tune ? [1, 2] : [2])
                XCTAssertEqual(Set(reports.filter { $0.prefillTokens > 0 }.map(\.team)), [2])
            }
            XCTAssertEqual(runs[0], runs[1])
        }
    }

    func testTokensEqualGenerateForEveryRequestAndBatching() throws {
        let model = try Self.model()
        let expected = try requests.map { try generated(model, $0) }
        // Batch sizes 1 (one at a time), 2 and 5; prefill chunks that split prompts and that do not.
        for (maxBatch, chunk) in [(1, 256), (2, 4), (5, 3), (5, 64)] {
            let s = try BatchScheduler(model: model, options: SchedulerOptions(maxBatch: maxBatch, maxQueue: 10, prefillChunk: chunk), clock: FakeClock().read)
            let ids = try requests.map { try s.submit($0) }
            let (tokens, finish, reports) = drain(s)
            for (i, id) in ids.enumerated() {
                XCTAssertEqual(tokens[id], expected[i], "request \(i), max batch \(maxBatch), prefill chunk \(chunk)")
                XCTAssertNotNil(finish[id])
            }
            XCTAssertLessThanOrEqual(reports.map(\.running).max() ?? 0, maxBatch)
            XCTAssertLessThanOrEqual(reports.map(\.prefillTokens).max() ?? 0, chunk)
            if maxBatch == 5 && chunk == 64 { XCTAssertEqual(reports.map(\.decodeSequences).max(), 5, "all five decode in one forward") }
            XCTAssertEqual(s.reservedPositions, 0, "every cache given back")
        }
        // The context limit ends request 4 (prompt 2 + 40 > 40 positions) as generate does.
        XCTAssertEqual(expected[4].count, 39)
    }

    func testStopTokensEndARequestWithReasonStop() throws {
        let model = try Self.model()
        let free = try generated(model, GenerationRequest(prompt: [1, 2, 3], maxNewTokens: 8))
        let stop = free[2]
        let r = GenerationRequest(prompt: [1, 2, 3], maxNewTokens: 8, stopTokens: [stop])
        let s = try BatchScheduler(model: model, clock: FakeClock().read)
        let id = try s.submit(r)
        let (tokens, finish, _) = drain(s)
        XCTAssertEqual(tokens[id], try generated(model, r))
        XCTAssertEqual(tokens[id]?.last, stop)
        XCTAssertEqual(finish[id], .stop)
    }

    func testAdmissionIsInOrderWithinBatchAndCacheLimits() throws {
        let model = try Self.model()
        // Reservations: 3+6=9, 13+5=18, 1+9=10, 5+4=9. 30 positions: first two (27), then the
        // third waits for room although a batch slot is free, and the fourth waits behind it.
        let s = try BatchScheduler(model: model, options: SchedulerOptions(maxBatch: 3, maxQueue: 10, cachePositions: 30), clock: FakeClock().read)
        let ids = try requests.prefix(4).map { try s.submit($0) }
        let first = s.step()
        XCTAssertEqual(first.admitted, [ids[0], ids[1]])
        XCTAssertEqual(first.reservedPositions, 27)
        XCTAssertEqual(first.queueLength, 2)
        var admissions = first.admitted
        var reports = [first]
        while !s.isIdle {
            let r = s.step()
            admissions += r.admitted
            reports.append(r)
            XCTAssertLessThanOrEqual(r.reservedPositions, 30)
        }
        XCTAssertEqual(admissions, ids, "admitted in submission order")
        // Request 2 was admitted only once request 0 or 1 had left (a step admits before it decodes).
        let firstFinish = reports.firstIndex { $0.events.contains { [ids[0], ids[1]].contains($0.id) && $0.event == .finished(.length) } }!
        let admitted2 = reports.firstIndex { $0.admitted.contains(ids[2]) }!
        XCTAssertEqual(admitted2, firstFinish + 1)
    }

    func testCancellationFreesTheCacheAndTheOthersAreUnchanged() throws {
        let model = try Self.model()
        let s = try BatchScheduler(model: model, options: SchedulerOptions(maxBatch: 4, maxQueue: 10), clock: FakeClock().read)
        let a = try s.submit(requests[0]), b = try s.submit(requests[4]), c = try s.submit(requests[2])
        _ = s.step()
        _ = s.step()
        XCTAssertEqual(s.reservedPositions, 9 + 40 + 10)
        s.cancel(b)
        let r = s.step()
        XCTAssertTrue(r.events.contains { $0.id == b && $0.event == .finished(.cancelled) })
        XCTAssertFalse(r.events.contains { $0.id == b && $0.event != .finished(.cancelled) })
        XCTAssertEqual(r.running, 2)
        XCTAssertLessThanOrEqual(r.reservedPositions, 9 + 10)
        let queued = try s.submit(requests[3])
        s.cancel(queued)  // cancelled before admission: never runs
        var tokens: [RequestID: [Int32]] = [:]
        for event in [r] + drain(s).reports {
            for (id, e) in event.events { if case let .token(t) = e { tokens[id, default: []].append(t) } }
        }
        XCTAssertNil(tokens[queued])
        // The others' tokens are generate's (2 tokens each came before the cancel).
        XCTAssertEqual(tokens[a].map { Array($0.suffix(4)) }, Array(try generated(model, requests[0]).suffix(4)))
        XCTAssertEqual(tokens[c].map { Array($0.suffix(7)) }, Array(try generated(model, requests[2]).suffix(7)))
        XCTAssertEqual(s.reservedPositions, 0)
    }

    func testBadRequestsAndAFullQueueThrowNamingTheField() throws {
        let model = try Self.model()
        let s = try BatchScheduler(model: model, options: SchedulerOptions(maxBatch: 1, maxQueue: 2, cachePositions: 30), clock: FakeClock().read)
        let cases: [(GenerationRequest, String)] = [
            (GenerationRequest(prompt: [], maxNewTokens: 1), "prompt"),
            (GenerationRequest(prompt: Array(repeating: 1, count: 41), maxNewTokens: 1), "prompt"),
            (GenerationRequest(prompt: [40], maxNewTokens: 1), "prompt"),
            (GenerationRequest(prompt: [1], maxNewTokens: 0), "max_tokens"),
            (GenerationRequest(prompt: [1], maxNewTokens: 35), "max_tokens"),
            (GenerationRequest(prompt: [1], maxNewTokens: 2, sampling: SamplingOptions(temperature: -1)), "sampling"),
        ]
        for (r, field) in cases {
            XCTAssertThrowsError(try s.submit(r)) { e in
                guard case let ServingError.invalidRequest(f, _) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(f, field, "\(e)")
            }
        }
        try s.submit(requests[0]); try s.submit(requests[0])
        XCTAssertThrowsError(try s.submit(requests[0])) { XCTAssertEqual($0 as? ServingError, .queueFull(limit: 2)) }
        XCTAssertThrowsError(try BatchScheduler(model: model, options: SchedulerOptions(maxBatch: 0), clock: FakeClock().read))
    }

    func testStepsAreTimedByTheClockAndCountExpertLoad() throws {
        let model = try Self.model()
        let s = try BatchScheduler(model: model, clock: FakeClock().read)
        try s.submit(requests[0])
        let r = s.step()
        XCTAssertEqual(r.seconds, 1, "two clock readings one second apart")
        XCTAssertEqual(r.prefillTokens, 3)
        // 3 prompt rows, top-2, 2 MoE layers.
        XCTAssertEqual(r.expertLoad.reduce(0, +), 3 * 2 * 2)
        let decode = s.step()
        XCTAssertEqual(decode.expertLoad.reduce(0, +), 1 * 2 * 2)
        XCTAssertEqual(decode.activeExperts, 2 * 2, "one token: top-2 experts in each of 2 layers")
    }

    func testTheEngineServesConcurrentRequestsLikeGenerate() async throws {
        let model = try Self.model()
        let steps = StepCounter()
        let engine = try GenerationEngine(model: model, options: SchedulerOptions(maxBatch: 4, maxQueue: 8), onStep: { steps.add($0) })
        let expected = try requests.map { try generated(model, $0) }
        let results = try await withThrowingTaskGroup(of: (Int, [Int32], FinishReason?).self) { group in
            for (i, r) in requests.enumerated() {
                let stream = try engine.submit(r)
                group.addTask {
                    var tokens: [Int32] = [], finish: FinishReason?
                    for await e in stream {
                        switch e {
                        case let .token(t): tokens.append(t)
                        case let .finished(f): finish = f
                        case let .failed(m): XCTFail(m)
                        }
                    }
                    return (i, tokens, finish)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = ($1.1, $1.2) }
        }
        for i in requests.indices {
            XCTAssertEqual(results[i]?.0, expected[i], "request \(i)")
            XCTAssertNotNil(results[i]?.1)
        }
        XCTAssertLessThanOrEqual(steps.maxBatch, 4)
        XCTAssertGreaterThan(steps.maxBatch, 1, "requests were batched")

        // A consumer that stops listening cancels its request; the engine frees it.
        let long = try engine.submit(GenerationRequest(prompt: [1], maxNewTokens: 39))
        for await e in long { if case .token = e { break } }
        long.cancel()
        await engine.shutdown()
        XCTAssertEqual(engine.running, 0)
        XCTAssertEqual(engine.scheduler.reservedPositions, 0)
        XCTAssertThrowsError(try engine.submit(requests[0])) { XCTAssertEqual($0 as? ServingError, .shuttingDown) }
    }

    final class StepCounter: @unchecked Sendable {
        let lock = NSLock()
        var maxBatch = 0
        func add(_ r: SchedulerStepReport) { lock.withLock { maxBatch = max(maxBatch, r.decodeSequences) } }
    }
}
