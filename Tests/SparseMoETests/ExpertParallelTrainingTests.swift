import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoETraining
import SparseMoEDistributed

/// Expert-parallel training over the in-process communicator against single-process training on
/// the same global batch: one expert group of N ranks (`.expert`) and groups of M within N
/// (`.dataExpert`), dropless and with a capacity limit (the single process applying it per
/// group of T/N tokens, `CapacityLimit.groups`). Kernels run on one thread while ranks run.
final class ExpertParallelTrainingTests: XCTestCase {
    static func modelConfig(experts: Int = 4, kind: FeedForwardKind = .swiglu, capacity: Double? = nil,
                            shared: Bool = false) -> TransformerConfig {
        var m = MoEConfig(numExperts: experts, topK: 2, expertIntermediateSize: 16)
        m.expertKind = kind
        m.auxLossCoefficient = 0.5  // large: per-rank expert counts would move the losses beyond 1e-5
        m.capacityFactor = capacity
        m.dropPolicy = .position
        if shared { m.sharedExperts = 1; m.sharedExpertIntermediateSize = 16 }
        return TransformerConfig(vocabSize: ByteTokenizer.vocabularySize, hiddenSize: 16, numLayers: 2, numHeads: 2,
                                 maxSequenceLength: 16, intermediateSize: 32, moe: m)
    }

    struct Run: Sendable {
        var losses: [Double] = []
        var auxLosses: [Double] = []
        var dropped = 0
        /// Rank 0 after `gatherExperts`: the full model. Other ranks: their copy.
        var parameters: [String: [Float]] = [:]
    }

    /// Trains `steps` steps; with a communicator, rank 0's model is gathered whole at the end.
    /// `capacityGroups`: the single process's capacity groups (N ranks' worth of token groups).
    static func train(_ model: TransformerConfig, _ config: TrainingConfig, communicator: (any Communicator)?,
                      parallel: ParallelLayout = .data, capacityGroups: Int = 1) throws -> Run {
        var model = model
        model.moe?.capacityGroups = capacityGroups  // the config field (`capacity_groups`), as a user would set it
        let lm = try TransformerLM(config: model, seed: 7 + UInt64(communicator?.rank ?? 0))
        for layer in lm.moeLayers {
            precondition((layer.router as? TopKRouter)?.capacity.map { $0.groups == capacityGroups } ?? true, "capacity_groups did not reach the router")
        }
        let trainer = try Trainer(model: lm, dataset: try DataParallelTrainingTests.dataset(), config: config,
                                  communicator: communicator, parallel: parallel)
        var run = Run()
        for _ in 0..<config.steps {
            let r = try trainer.trainStep()
            run.losses.append(r.loss); run.auxLosses.append(r.auxLoss)
            run.dropped += r.routing.compactMap { $0?.dropped }.reduce(0, +)
        }
        try trainer.gatherExperts()
        for (name, t) in lm.namedParameters() { run.parameters[name] = (0..<t.count).map { t.floats[$0] } }
        return run
    }

    func assertEquivalent(_ model: TransformerConfig, ranks: Int, parallel: ParallelLayout, expectDrops: Bool = false,
                          checkpointing: ActivationCheckpointing = .none,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let config = { var c = DataParallelTrainingTests.trainingConfig(); c.checkpointing = checkpointing; return c }()
        let what = "\(parallel) N=\(ranks) E=\(model.moe!.numExperts) \(model.moe!.expertKind) capacity \(model.moe!.capacityFactor.map { "\($0)" } ?? "none") checkpointing \(checkpointing)"
        try Threads.with(1) {
            let single = try Self.train(model, config, communicator: nil, capacityGroups: ranks)
            if expectDrops { XCTAssertGreaterThan(single.dropped, 0, "\(what): the capacity dropped nothing", file: file, line: line) }
            let runs = try LocalCommunicatorGroup.run(size: ranks, timeout: 60) { comm in
                try Self.train(model, config, communicator: comm, parallel: parallel)
            }.map { try $0.get() }
            for (r, run) in runs.enumerated() {
                for s in 0..<config.steps {
                    XCTAssertEqual(run.losses[s], single.losses[s], accuracy: 1e-5 * abs(single.losses[s]), "\(what) rank \(r) step \(s + 1) loss", file: file, line: line)
                    XCTAssertEqual(run.auxLosses[s], single.auxLosses[s], accuracy: 1e-5 * abs(single.auxLosses[s]) + 1e-9, "\(what) rank \(r) step \(s + 1) aux loss", file: file, line: line)
                }
            }
            // Rank 0 holds the full model after the gather.
            var worst: Float = 0, worstName = ""
            for (name, q) in single.parameters {
                guard let p = runs[0].parameters[name] else { XCTFail("\(what): no \(name)", file: file, line: line); continue }
                for (a, b) in zip(p, q) where abs(a - b) > worst { worst = abs(a - b); worstName = name }
            }
            XCTAssertLessThanOrEqual(worst, 1e-4, "\(what): final parameters differ by \(worst) (\(worstName))", file: file, line: line)
            // The replicated parameters are bit-identical on every rank.
            for run in runs.dropFirst() {
                for (name, p) in run.parameters where !name.contains(".mlp.experts.") {
                    XCTAssertEqual(p.map(\.bitPattern), runs[0].parameters[name]!.map(\.bitPattern), "\(what): \(name)", file: file, line: line)
                }
            }
        }
    }

    func testExpertParallelOverTwoAndFourRanksTrainsLikeOneProcess() throws {
        try assertEquivalent(Self.modelConfig(), ranks: 2, parallel: .expert)
        try assertEquivalent(Self.modelConfig(kind: .gelu), ranks: 4, parallel: .expert)
    }

    func testDataAndExpertParallelTrainsLikeOneProcess() throws {
        try assertEquivalent(Self.modelConfig(experts: 8, shared: true), ranks: 4, parallel: .dataExpert(expertRanks: 2))
    }

    func testExpertParallelWithACapacityLimitTrainsLikeOneProcessWithCapacityGroups() throws {
        try assertEquivalent(Self.modelConfig(capacity: 1), ranks: 2, parallel: .expert, expectDrops: true)
        try assertEquivalent(Self.modelConfig(experts: 8, capacity: 1), ranks: 4, parallel: .dataExpert(expertRanks: 2), expectDrops: true)
    }

    /// Block checkpointing recomputes each block, MoE layer and its all-to-alls included, in
    /// backward: every rank must recompute the same collectives in the same order.
    func testExpertParallelWithBlockCheckpointingTrainsLikeOneProcess() throws {
        try assertEquivalent(Self.modelConfig(), ranks: 2, parallel: .expert, checkpointing: .block)
        try assertEquivalent(Self.modelConfig(experts: 8, capacity: 1), ranks: 4, parallel: .dataExpert(expertRanks: 2),
                             expectDrops: true, checkpointing: .block)
    }

    /// The differentiable all-to-all: forward delivers rows by destination, backward sends each
    /// output row's gradient back to the row it came from (the reverse permutation).
    func testAllToAllRowsBackwardIsTheReversePermutation() throws {
        let (n, c) = (3, 2)
        // sendCounts[s][d]: rows rank s sends to rank d; row values encode (source, index).
        let counts = [[1, 0, 2], [2, 1, 0], [0, 3, 1]]
        @Sendable func value(_ s: Int, _ i: Int, _ j: Int) -> Float { Float(100 * s + 10 * i + j) }
        @Sendable func gradient(_ d: Int, _ i: Int, _ j: Int) -> Float { Float(1000 * (d + 1) + 10 * i + j) }
        let results = try LocalCommunicatorGroup.run(size: n, timeout: 10) { comm -> ([Float], [Float], [Int]) in
            let s = comm.rank
            let rows = counts[s].reduce(0, +)
            let x = Tensor((0..<(rows * c)).map { value(s, $0 / c, $0 % c) }, shape: [rows, c], requiresGrad: true)
            let group = ExpertParallelGroup(communicator: comm)
            let (y, received) = try allToAllRows(x, sendCounts: counts[s], group: group)
            let dy = Tensor((0..<y.count).map { gradient(s, $0 / c, $0 % c) }, shape: y.shape)
            y.backward(gradient: dy)
            try group.throwIfFailed()
            return ((0..<y.count).map { y.floats[$0] }, (0..<x.count).map { x.grad!.floats[$0] }, received)
        }.map { try $0.get() }
        // Reference: enumerate the global permutation.
        for d in 0..<n {
            var expected: [Float] = []
            for s in 0..<n {
                let first = counts[s].prefix(d).reduce(0, +)
                for i in first..<(first + counts[s][d]) { expected += (0..<c).map { value(s, i, $0) } }
            }
            XCTAssertEqual(results[d].0, expected, "rows received by rank \(d)")
            XCTAssertEqual(results[d].2, (0..<n).map { counts[$0][d] }, "counts received by rank \(d)")
        }
        for s in 0..<n {
            var expected: [Float] = []
            for d in 0..<n {
                // Rank s's rows to d sit in d's output after the rows of sources before s.
                let at = (0..<s).map { counts[$0][d] }.reduce(0, +)
                for i in 0..<counts[s][d] { expected += (0..<c).map { gradient(d, at + i, $0) } }
            }
            XCTAssertEqual(results[s].1, expected, "gradient of rank \(s)'s rows")
        }
    }

    /// One MoE layer, expert parallel over 2 ranks, each with its half of the tokens, against the
    /// layer on all tokens: outputs, input gradients, gate gradients (through the router weight)
    /// and expert weight gradients (summed over the ranks) agree.
    func testExpertParallelLayerMatchesTheLocalLayerWithGradients() throws {
        let (t, c) = (12, 8)
        @Sendable func layer() throws -> MoELayer {
            var rng = RandomGenerator(seed: 3)
            let router = try TopKRouter(hiddenSize: c, numExperts: 4, topK: 2, rng: &rng)
            let experts = try Experts(kind: .swiglu, numExperts: 4, hiddenSize: c, intermediateSize: 6, rng: &rng)
            return try MoELayer(router: router, experts: experts, losses: MoELossConfig(balanceCoefficient: 0), rng: &rng)
        }
        var rng = RandomGenerator(seed: 9)
        let input = (0..<(t * c)).map { _ in Float(rng.normal()) }
        let upstream = (0..<(t * c)).map { _ in Float(rng.normal()) }
        @Sendable func run(_ l: MoELayer, rows: Range<Int>) throws -> (y: [Float], dx: [Float]) {
            let x = Tensor(Array(input[(rows.lowerBound * c)..<(rows.upperBound * c)]), shape: [rows.count, c], requiresGrad: true)
            var context = RoutingContext(training: true)
            let y = try l(x, context: &context).output
            y.backward(gradient: Tensor(Array(upstream[(rows.lowerBound * c)..<(rows.upperBound * c)]), shape: y.shape))
            try l.expertParallel?.throwIfFailed()
            return ((0..<y.count).map { y.floats[$0] }, (0..<x.count).map { x.grad!.floats[$0] })
        }
        let whole = try layer()
        let reference = try run(whole, rows: 0..<t)
        @Sendable func grad(_ p: Tensor) -> [Float] { (0..<p.count).map { p.grad?.floats[$0] ?? 0 } }
        let parts = try Threads.with(1) {
            try LocalCommunicatorGroup.run(size: 2, timeout: 10) { comm -> ([Float], [Float], [Float], [Float]) in
                let l = try layer()
                try l.setExpertParallel(ExpertParallelGroup(communicator: comm))
                let half = t / 2
                let (y, dx) = try run(l, rows: (comm.rank * half)..<((comm.rank + 1) * half))
                return (y, dx, grad(l.router.namedParameters()[0].tensor), grad(l.experts.w2))
            }.map { try $0.get() }
        }
        let close = { (a: [Float], b: [Float], what: String) in
            XCTAssertEqual(a.count, b.count, what)
            for (i, (p, q)) in zip(a, b).enumerated() { XCTAssertEqual(p, q, accuracy: 1e-5 * max(1, abs(q)), "\(what) [\(i)]") }
        }
        close(parts[0].0 + parts[1].0, reference.y, "output")
        close(parts[0].1 + parts[1].1, reference.dx, "input gradient")
        close(zip(parts[0].2, parts[1].2).map(+), grad(whole.router.namedParameters()[0].tensor), "router weight gradient")
        // w2 [E, C, F]: rank 0 holds experts 0-1, rank 1 experts 2-3; each has zeros elsewhere.
        let w2 = grad(whole.experts.w2), perRank = w2.count / 2
        close(Array(parts[0].3[0..<perRank]) + Array(parts[1].3[perRank...]), w2, "expert weight gradient")
        XCTAssertEqual(Array(parts[0].3[perRank...]), [Float](repeating: 0, count: perRank), "rank 0 has no gradient for experts it does not hold")
    }

    /// With a counting communicator, the all-to-alls of one layer land under their four kinds,
    /// with the bytes of the rows that cross ranks: a (token, slot) routed to an expert another
    /// rank holds sends its C floats there (dispatch forward), gets its output back (combine
    /// forward), sends the output's gradient (combine backward) and gets the input's gradient
    /// back (dispatch backward); the per-expert counts (E/M floats to each other rank) go with
    /// the dispatch. Rows for this rank's own experts cost nothing.
    func testExpertParallelTrafficIsCountedByKind() throws {
        let (t, c, e, m) = (10, 8, 4, 2)
        let results = try Threads.with(1) {
            try LocalCommunicatorGroup.run(size: m, timeout: 10) { comm -> (CommunicationTally, Int) in
                var rng = RandomGenerator(seed: 3)
                let router = try TopKRouter(hiddenSize: c, numExperts: e, topK: 2, rng: &rng)
                let experts = try Experts(kind: .swiglu, numExperts: e, hiddenSize: c, intermediateSize: 6, rng: &rng)
                let l = try MoELayer(router: router, experts: experts, losses: MoELossConfig(balanceCoefficient: 0), rng: &rng)
                let counting = CountingCommunicator(comm)
                let group = ExpertParallelGroup(communicator: try counting.split(color: 0, key: comm.rank))
                try l.setExpertParallel(group)
                var data = RandomGenerator(seed: UInt64(11 + comm.rank))
                let x = Tensor((0..<(t * c)).map { _ in Float(data.normal()) }, shape: [t, c], requiresGrad: true)
                var context = RoutingContext(training: true)
                let before = counting.tally
                let y = try l(x, context: &context).output
                y.backward(gradient: Tensor(repeating: 1, shape: y.shape))
                try group.throwIfFailed()
                let ids = l.lastExperts!.indexScalars.map { Int($0) }
                let crossing = ids.filter { $0 >= 0 && $0 / (e / m) != comm.rank }.count
                return (counting.tally - before, crossing)
            }.map { try $0.get() }
        }
        for (rank, (tally, crossing)) in results.enumerated() {
            XCTAssertGreaterThan(crossing, 0, "rank \(rank): some rows must cross for the check to mean anything")
            let rows = 4 * c * crossing, counts = 4 * (e / m) * (m - 1)
            XCTAssertEqual(tally[.dispatchForward].bytesSent, rows + counts, "rank \(rank) dispatch forward")
            XCTAssertEqual(tally[.combineForward].bytesReceived, rows, "rank \(rank) combine forward")
            XCTAssertEqual(tally[.combineBackward].bytesSent, rows, "rank \(rank) combine backward")
            XCTAssertEqual(tally[.dispatchBackward].bytesReceived, rows, "rank \(rank) dispatch backward")
            XCTAssertEqual(tally[.dispatchForward].calls, 2, "rank \(rank): counts, then rows")
            XCTAssertEqual(tally[.allToAll].calls, 0, "rank \(rank): no untagged all-to-all")
        }
        // What one rank sends, the other receives.
        XCTAssertEqual(results[0].0[.combineForward].bytesSent, results[1].0[.combineForward].bytesReceived)
    }

    func testBadSetupsThrowNamingTheField() throws {
        let config = DataParallelTrainingTests.trainingConfig(batchSize: 12)
        func failures(ranks: Int, model: TransformerConfig, parallel: ParallelLayout) throws -> [String] {
            try LocalCommunicatorGroup.run(size: ranks, timeout: 10) { comm in
                _ = try Trainer(model: try TransformerLM(config: model, seed: 1), dataset: try DataParallelTrainingTests.dataset(),
                                config: config, communicator: comm, parallel: parallel)
            }.map { result in
                guard case .failure(let error) = result else { return "accepted" }
                return "\(error)"
            }
        }
        // 4 experts over 3 ranks.
        for message in try failures(ranks: 3, model: Self.modelConfig(), parallel: .expert) {
            XCTAssertTrue(message.contains("num_experts") && message.contains("multiple of 3"), message)
        }
        // Groups of 3 in 4 ranks.
        for message in try failures(ranks: 4, model: Self.modelConfig(), parallel: .dataExpert(expertRanks: 3)) {
            XCTAssertTrue(message.contains("expert_ranks") && message.contains("1, 2, 4"), message)
        }
        // A dense model.
        var dense = Self.modelConfig()
        dense.moe = nil
        for message in try failures(ranks: 2, model: dense, parallel: .expert) {
            XCTAssertTrue(message.contains("moe") && message.contains("dense"), message)
        }
        // No communicator.
        XCTAssertThrowsError(try Trainer(model: try TransformerLM(config: Self.modelConfig(), seed: 1), dataset: try DataParallelTrainingTests.dataset(),
                                         config: config, parallel: .expert)) { XCTAssertTrue("\($0)".contains("parallel"), "\($0)") }
    }

    /// Capacity by groups, by hand: 4 tokens all choosing expert 0 of 2, factor 1, position policy.
    /// One group: capacity ⌈4·1/2⌉ = 2 keeps tokens 0, 1. Two groups of 2 tokens: capacity
    /// ⌈2·1/2⌉ = 1 per group keeps tokens 0 and 2.
    func testCapacityGroupsApplyTheLimitPerGroupOfTokens() throws {
        let indices = Tensor(indices: [0, 0, 0, 0], shape: [4, 1])
        let weights = Tensor([0.9, 0.8, 0.7, 0.6], shape: [4, 1])
        let one = try CapacityLimit(factor: 1, policy: .position).apply(indices: indices, weights: weights, numExperts: 2)
        XCTAssertEqual(one.indices.indexScalars, [0, 0, -1, -1])
        XCTAssertEqual(one.dropped, 2)
        let two = try CapacityLimit(factor: 1, policy: .position, groups: 2).apply(indices: indices, weights: weights, numExperts: 2)
        XCTAssertEqual(two.indices.indexScalars, [0, -1, 0, -1])
        XCTAssertEqual(two.dropped, 2)
        XCTAssertThrowsError(try CapacityLimit(factor: 1, groups: 0)) { XCTAssertTrue("\($0)".contains("capacity_groups"), "\($0)") }
        // Older encodings without groups decode as one group.
        let decoded = try JSONDecoder().decode(CapacityLimit.self, from: Data(#"{"factor": 1.5, "minimum": 2, "policy": "position"}"#.utf8))
        XCTAssertEqual(decoded, try CapacityLimit(factor: 1.5, minimum: 2, policy: .position, groups: 1))
    }

    /// Sub-communicators: ranks of one color sum among themselves only, ranked by key.
    func testSplitMakesSubCommunicatorsByColorAndKey() throws {
        let results = try LocalCommunicatorGroup.run(size: 4, timeout: 10) { comm -> [Float] in
            let sub = try comm.split(color: comm.rank % 2, key: -comm.rank)
            var v = [Float(comm.rank + 1)]
            try sub.allReduceSum(&v)
            return [Float(sub.rank), Float(sub.size), v[0]]
        }.map { try $0.get() }
        // Color 0: world ranks 0, 2 (keys 0, -2: rank 2 first); color 1: ranks 1, 3.
        XCTAssertEqual(results, [[1, 2, 4], [1, 2, 6], [0, 2, 4], [0, 2, 6]])
    }
}
