import SparseMoECore
import SparseMoENN
import SparseMoEModels

/// Continuous (iteration-level) batching of generation requests over one model.
///
/// Each `step()` is one forward of a ragged batch (`TransformerLM.forward(chunks:)`):
/// 1. cancelled requests leave (queued or running) and give back their cache;
/// 2. waiting requests are admitted in submission order while fewer than `maxBatch` run and
///    their KV-cache reservation fits in `cachePositions` (the first that does not fit waits,
///    and so do all behind it: no request overtakes another);
/// 3. every running sequence that has its whole prompt cached decodes one token, and prompts
///    still being prefilled take up to `prefillChunk` tokens together, oldest first;
/// 4. the new tokens are sampled with each request's own `Sampler` (its seed), and a request
///    that reaches a stop token, its `maxNewTokens` or a full context finishes at once.
///
/// With `options.tuneTeams` the decode-only steps run through a `TeamTuner`, which picks the
/// team size that decodes fastest on this machine under its present load; steps with prefill
/// run on the full team (a burst of prompts prefilled on one thread delayed its first tokens
/// by a third). The tokens do not depend on it.
///
/// The scheduler is synchronous and single-threaded: `GenerationEngine` runs it on its own
/// thread; tests drive it step by step. `clock` (seconds) times steps and the tuner.
public final class BatchScheduler {
    public let model: TransformerLM
    public let options: SchedulerOptions
    /// KV-cache positions all sequences may reserve together.
    public let cachePositions: Int
    let clock: () -> Double
    let tuner: TeamTuner?

    final class Sequence {
        let id: RequestID
        let request: GenerationRequest
        var sampler: Sampler
        /// Positions reserved: min(prompt + max new tokens, max_position_embeddings).
        let reservation: Int
        var cache: KVCache?
        /// Prompt tokens already in the cache.
        var prefilled = 0
        /// The last sampled token, fed at the next decode step.
        var pending: Int32?
        var generated = 0

        init(id: RequestID, request: GenerationRequest, sampler: Sampler, reservation: Int) {
            self.id = id
            self.request = request
            self.sampler = sampler
            self.reservation = reservation
        }
    }

    var queue: [Sequence] = []
    var running: [Sequence] = []
    var cancelled: Set<RequestID> = []
    var nextID: RequestID = 0

    public init(model: TransformerLM, options: SchedulerOptions = SchedulerOptions(), clock: @escaping () -> Double) throws {
        let maxSeq = model.config.maxSequenceLength
        guard options.maxBatch >= 1 else { throw ServingError.invalidRequest(field: "max_batch", message: "must be ≥ 1, got \(options.maxBatch)") }
        guard options.maxQueue >= 0 else { throw ServingError.invalidRequest(field: "max_queue", message: "must be ≥ 0, got \(options.maxQueue)") }
        guard options.prefillChunk >= 1 else { throw ServingError.invalidRequest(field: "prefill_chunk", message: "must be ≥ 1, got \(options.prefillChunk)") }
        let positions = options.cachePositions ?? MemoryBudget.product(options.maxBatch, maxSeq)
        guard positions >= 1 else { throw ServingError.invalidRequest(field: "cache_positions", message: "must be ≥ 1, got \(positions)") }
        let bytes = MemoryBudget.product(positions, max(model.config.numLayers, 0), model.config.kvCacheFloatsPerPosition, 4)
        try MemoryBudget.check(bytes, for: "the KV cache of \(positions) positions (\(options.maxBatch) sequences)", field: "cache_positions")
        self.model = model
        self.options = options
        self.cachePositions = positions
        self.clock = clock
        self.tuner = options.tuneTeams ? TeamTuner(clock: clock) : nil
    }

    /// Requests waiting for admission.
    public var queueLength: Int { queue.count }
    /// Sequences admitted and not finished.
    public var runningCount: Int { running.count }
    /// KV-cache positions reserved by running sequences.
    public var reservedPositions: Int { running.reduce(0) { $0 + $1.reservation } }
    /// True when nothing waits and nothing runs.
    public var isIdle: Bool { queue.isEmpty && running.isEmpty }

    /// Checks a request against the model without queueing it: the `ServingError` names the field.
    public func validate(_ r: GenerationRequest) throws {
        let maxSeq = model.config.maxSequenceLength, v = model.config.vocabSize
        guard !r.prompt.isEmpty else { throw ServingError.invalidRequest(field: "prompt", message: "the prompt needs at least one token") }
        guard r.prompt.count <= maxSeq else {
            throw ServingError.invalidRequest(field: "prompt", message: "\(r.prompt.count) tokens exceed the model's context of \(maxSeq) (max_position_embeddings)")
        }
        if let bad = r.prompt.first(where: { $0 < 0 || Int($0) >= v }) {
            throw ServingError.invalidRequest(field: "prompt", message: "token \(bad) is outside the vocabulary 0..<\(v)")
        }
        guard r.maxNewTokens >= 1 else { throw ServingError.invalidRequest(field: "max_tokens", message: "must be ≥ 1, got \(r.maxNewTokens)") }
        do { try r.sampling.validate() } catch let e as SparseMoEError {
            throw ServingError.invalidRequest(field: "sampling", message: "\(e)")
        }
        let need = reservation(of: r)
        guard need <= cachePositions else {
            throw ServingError.invalidRequest(field: "max_tokens", message: "prompt + max_tokens needs \(need) KV-cache positions, more than the \(cachePositions) the server holds")
        }
    }

    func reservation(of r: GenerationRequest) -> Int {
        min(model.config.maxSequenceLength, MemoryBudget.sum([r.prompt.count, r.maxNewTokens]))
    }

    /// Queues a request; returns its id (`id` if given, else the next free one). Throws
    /// `ServingError.queueFull` when `maxQueue` requests wait, `.invalidRequest` for a bad one.
    @discardableResult
    public func submit(_ r: GenerationRequest, id: RequestID? = nil) throws -> RequestID {
        try validate(r)
        guard queue.count < options.maxQueue else { throw ServingError.queueFull(limit: options.maxQueue) }
        let rid = id ?? nextID
        nextID = max(nextID, rid + 1)
        let sampler = try Sampler(options: r.sampling, seed: r.seed)
        queue.append(Sequence(id: rid, request: r, sampler: sampler, reservation: reservation(of: r)))
        return rid
    }

    /// Asks for a request to stop; it leaves at the next step with `.finished(.cancelled)`
    /// and its cache is freed. Unknown or finished ids are ignored.
    public func cancel(_ id: RequestID) { cancelled.insert(id) }

    /// One scheduling iteration (see the type's description). A step with nothing to run
    /// returns a report with no events and does no forward.
    public func step() -> SchedulerStepReport {
        var report = SchedulerStepReport()
        // 1. Cancellations.
        if !cancelled.isEmpty {
            for s in queue + running where cancelled.contains(s.id) { report.events.append((s.id, .finished(.cancelled))) }
            queue.removeAll { cancelled.contains($0.id) }
            running.removeAll { cancelled.contains($0.id) }
            cancelled = []
        }
        // 2. Admission, in order.
        var reserved = reservedPositions
        while let head = queue.first, running.count < options.maxBatch, reserved + head.reservation <= cachePositions {
            queue.removeFirst()
            head.cache = KVCache(capacity: head.reservation)
            running.append(head)
            reserved += head.reservation
            report.admitted.append(head.id)
        }
        // 3. The batch: decodes first, then prompt chunks within the prefill budget.
        var chunks: [SequenceChunk] = []
        var members: [(Sequence, completesPrompt: Bool)] = []
        for s in running where s.pending != nil {
            chunks.append(SequenceChunk(tokens: [s.pending!], cache: s.cache!))
            members.append((s, true))
        }
        report.decodeSequences = chunks.count
        var budget = options.prefillChunk
        for s in running where s.pending == nil && budget > 0 {
            let n = min(budget, s.request.prompt.count - s.prefilled)
            chunks.append(SequenceChunk(tokens: Array(s.request.prompt[s.prefilled..<(s.prefilled + n)]), cache: s.cache!))
            members.append((s, s.prefilled + n == s.request.prompt.count))
            s.prefilled += n
            budget -= n
            report.prefillTokens += n
        }
        if !chunks.isEmpty {
            let t0 = clock()
            do {
                let out: RaggedBatchOutput
                if let tuner, report.prefillTokens == 0 {
                    out = try tuner.run(kind: 0, work: chunks.count) { try model.forward(chunks: chunks) }
                    report.team = tuner.lastTeam
                } else {
                    out = try tuner.map { try $0.runOnFullTeam { try model.forward(chunks: chunks) } } ?? model.forward(chunks: chunks)
                    report.team = Threads.count
                }
                report.seconds = clock() - t0
                (report.expertLoad, report.activeExperts) = Self.expertLoad(out.moe)
                let v = model.config.vocabSize
                var finished: Set<RequestID> = []
                for (row, (s, completes)) in members.enumerated() where completes {
                    let logits = Array(UnsafeBufferPointer(start: out.logits.floats + row * v, count: v))
                    let token = Int32(s.sampler.sample(logits))
                    s.generated += 1
                    report.events.append((s.id, .token(token)))
                    // As `generate`: stop token, enough tokens, or no room to feed this one.
                    let contextFull = s.cache!.length + 1 > model.config.maxSequenceLength
                    if s.request.stopTokens.contains(token) {
                        report.events.append((s.id, .finished(.stop)))
                        finished.insert(s.id)
                    } else if s.generated >= s.request.maxNewTokens || contextFull {
                        report.events.append((s.id, .finished(.length)))
                        finished.insert(s.id)
                    } else {
                        s.pending = token
                    }
                }
                running.removeAll { finished.contains($0.id) }
            } catch {
                // The whole batch failed together; each of its requests hears why and leaves.
                report.seconds = clock() - t0
                let failed = Set(members.map { $0.0.id })
                for id in failed.sorted() { report.events.append((id, .failed("\(error)"))) }
                running.removeAll { failed.contains($0.id) }
            }
        }
        report.queueLength = queue.count
        report.running = running.count
        report.reservedPositions = reservedPositions
        return report
    }

    /// Tokens per expert summed over the MoE layers of one forward, and the experts with
    /// rows summed over layers.
    static func expertLoad(_ outputs: [MoEOutput?]) -> (load: [Int], active: Int) {
        var load: [Int] = []
        var active = 0
        for case let out? in outputs {
            let idx = out.routing.experts
            let p = idx.int32s
            var seen = Set<Int32>()
            for i in 0..<idx.count where p[i] >= 0 {
                let e = Int(p[i])
                if e >= load.count { load += [Int](repeating: 0, count: e + 1 - load.count) }
                load[e] += 1
                seen.insert(p[i])
            }
            active += seen.count
        }
        return (load, active)
    }
}
