import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoEAnalysis
@testable import SparseMoETraining
@testable import SparseMoERuns
@testable import SparseMoEDistributed

/// Communication accounting: the counting communicator against bytes worked out by hand,
/// `CommunicationModel`'s data-parallel prediction against what in-process data-parallel
/// training hands to its collectives, and the startup check of the ranks' settings.
final class CommunicationAccountingTests: XCTestCase {
    func testCountingCommunicatorCountsPayloadBytesByKind() throws {
        // 3 ranks, an all-reduce of 10 floats: chunks ⌊10(r+1)/3⌋ − ⌊10r/3⌋ = 3, 3, 4; rank r sends the
        // 10 − c_r floats of the others' chunks, then its own chunk to the 2 others.
        let chunks = [3, 3, 4]
        let tallies = try LocalCommunicatorGroup.run(size: 3, timeout: 10) { base -> CommunicationTally in
            let c = CountingCommunicator(base)
            var v = [Float](repeating: 1, count: 10)
            try c.allReduceSum(&v)
            try c.accounted(as: .gradients) {
                try c.allReduceSum(&v)
                try c.accounted(as: .statistics) { try c.allReduceSum(&v) }  // the inner tag wins
            }
            var b = [Float](repeating: 2, count: 5)
            try c.broadcast(&b, root: 1)
            // Rank s sends s + d rows of width 2 to rank d (rows to itself are not counted).
            let counts = (0..<3).map { c.rank + $0 }
            _ = try c.allToAllv([Float](repeating: 0, count: 2 * counts.reduce(0, +)), sendCounts: counts, rowLength: 2)
            try c.barrier()
            return c.tally
        }.map { try $0.get() }
        for (r, t) in tallies.enumerated() {
            let allReduce = 4 * (10 - chunks[r] + 2 * chunks[r])
            for kind in [CommunicationKind.allReduce, .gradients, .statistics] {
                XCTAssertEqual(t[kind].calls, 1, "rank \(r) \(kind)")
                XCTAssertEqual(t[kind].bytesSent, allReduce, "rank \(r) \(kind)")
                XCTAssertEqual(t[kind].bytesReceived, allReduce, "rank \(r) \(kind)")
            }
            XCTAssertEqual(t[.broadcast].bytesSent, r == 1 ? 4 * 5 * 2 : 0)
            XCTAssertEqual(t[.broadcast].bytesReceived, r == 1 ? 0 : 4 * 5)
            let sentRows = (0..<3).filter { $0 != r }.reduce(0) { $0 + r + $1 }
            let receivedRows = (0..<3).filter { $0 != r }.reduce(0) { $0 + $1 + r }
            XCTAssertEqual(t[.allToAll].bytesSent, 4 * 2 * sentRows)
            XCTAssertEqual(t[.allToAll].bytesReceived, 4 * 2 * receivedRows)
            XCTAssertEqual(t[.barrier].calls, 1)
            XCTAssertEqual(t[.barrier].bytesSent, 0)
            XCTAssertEqual(t.kinds.count, 6)
            XCTAssertGreaterThan(t.totalSeconds, 0)
        }
        // The mean over the ranks of an all-reduce is the ring volume 2(N−1)/N · 4n.
        let mean = Double(chunks.indices.map { 4 * (10 - chunks[$0] + 2 * chunks[$0]) }.reduce(0, +)) / 3
        XCTAssertEqual(mean, CommunicationModel.allReduceBytes(floats: 10, ranks: 3), accuracy: 1e-9)
        // Differences between readings.
        var a = CommunicationTally(), b = CommunicationTally()
        a.add(.gradients, sent: 10, received: 8, seconds: 1)
        b = a
        b.add(.gradients, sent: 5, received: 4, seconds: 0.5)
        b.add(.barrier, sent: 0, received: 0, seconds: 0.25)
        let d = b - a
        XCTAssertEqual(d[.gradients], .init(calls: 1, bytesSent: 5, bytesReceived: 4, seconds: 0.5))
        XCTAssertEqual(d[.barrier].calls, 1)
        XCTAssertEqual((a + d), b)
    }

    /// Per-step traffic of every rank of an in-process data-parallel run.
    static func measuredSteps(_ model: TransformerConfig, _ config: TrainingConfig, ranks: Int) throws -> [[CommunicationTally]] {
        let saved = Threads.count
        Threads.count = 1
        defer { Threads.count = saved }
        return try LocalCommunicatorGroup.run(size: ranks, timeout: 60) { comm -> [CommunicationTally] in
            let lm = try TransformerLM(config: model, seed: 3)
            let trainer = try Trainer(model: lm, dataset: try DataParallelTrainingTests.dataset(), config: config, communicator: comm)
            return try (0..<config.steps).map { _ in try trainer.trainStep().communication }
        }.map { try $0.get() }
    }

    func assertPredictionMatches(router: RouterKind, auxLoss: Float, sequenceLevel: Bool = false, accumulate: Int = 1, ranks: Int,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        var m = DataParallelTrainingTests.modelConfig(router: router, auxLoss: auxLoss)
        m.moe!.sequenceLevelAuxLoss = sequenceLevel
        var c = DataParallelTrainingTests.trainingConfig(steps: 2)
        c.gradAccumulation = accumulate
        let trained = try TransformerLM(config: m, seed: 0).namedParameters().filter { $0.tensor.requiresGrad }
        var workload = try CommunicationModel.Workload(transformer: m, parameterTensors: trained.count, batchSize: c.batchSize,
                                                       sequenceLength: c.sequenceLength, microBatches: accumulate)
        workload.gradientBuckets = CommunicationModel.gradientBuckets(tensorSizes: trained.map(\.tensor.count))
        let predicted = try CommunicationModel(workload, ranks: ranks).traffic
        let measured = try Self.measuredSteps(m, c, ranks: ranks)
        let what = "\(router) aux \(auxLoss) seq-level \(sequenceLevel) accumulate \(accumulate) N=\(ranks)"
        for step in 0..<c.steps {
            for kind in [CommunicationKind.gradients, .statistics] {
                let perRank = measured.map { $0[step][kind] }
                let meanSent = Double(perRank.map(\.bytesSent).reduce(0, +)) / Double(ranks)
                let meanReceived = Double(perRank.map(\.bytesReceived).reduce(0, +)) / Double(ranks)
                let p = try XCTUnwrap(predicted[kind], what, file: file, line: line)
                XCTAssertEqual(meanSent, p.bytes, accuracy: 1e-9 * p.bytes, "\(what) step \(step + 1) \(kind) sent", file: file, line: line)
                XCTAssertEqual(meanReceived, p.bytes, accuracy: 1e-9 * p.bytes, "\(what) step \(step + 1) \(kind) received", file: file, line: line)
                for t in perRank { XCTAssertEqual(Double(t.calls), p.calls, "\(what) step \(step + 1) \(kind) calls", file: file, line: line) }
            }
            // Nothing else but the debug builds' replica check.
            let others = Set(measured.flatMap { $0[step].kinds }).subtracting([.gradients, .statistics, .replicaCheck])
            XCTAssertEqual(others, [], what, file: file, line: line)
        }
        // The gradient payload is the trainable parameters, independently of the model: 2(N−1)/N · 4 · P.
        let p = try TransformerLM(config: m, seed: 0).namedParameters().filter { $0.tensor.requiresGrad }.reduce(0) { $0 + $1.tensor.count }
        XCTAssertEqual(predicted[.gradients]!.bytes, 2 * Double(ranks - 1) / Double(ranks) * 4 * Double(p), accuracy: 1e-6, what, file: file, line: line)
    }

    func testDataParallelPredictionEqualsTheMeasuredPayloadAtTwoAndFourRanks() throws {
        for ranks in [2, 4] {
            try assertPredictionMatches(router: .softmaxTopK, auxLoss: 0.5, ranks: ranks)
        }
        try assertPredictionMatches(router: .softmaxTopK, auxLoss: 0.5, accumulate: 2, ranks: 2)
        try assertPredictionMatches(router: .softmaxTopK, auxLoss: 0.5, sequenceLevel: true, ranks: 2)
        try assertPredictionMatches(router: .sigmoidBias, auxLoss: 0, ranks: 4)
    }

    func testGradientBucketsAreTheTrainersBuckets() throws {
        // Tensors of 3, 3, 5, 1, 1 and 2 Mi floats in 4 Mi-float buckets: [3] [3] [5] [1 1 2], more than ⌈15/4⌉ = 4.
        let mi = 1 << 20
        let tensors = [3, 3, 5, 1, 1, 2].map { Tensor(zeros: [$0 * mi]) }
        let dp = DataParallel(communicator: try LocalCommunicatorGroup(size: 1).communicator(rank: 0), parameters: tensors)
        XCTAssertEqual(dp.buckets.map { $0.count }, [1, 1, 1, 3])
        XCTAssertEqual(CommunicationModel.gradientBuckets(tensorSizes: tensors.map(\.count)), 4)
        XCTAssertEqual(CommunicationModel.gradientBuckets(tensorSizes: [3, 3, 5, 1], bucketFloats: 4), 4)  // [3] [3] [5] [1]
        XCTAssertEqual(CommunicationModel.gradientBuckets(tensorSizes: [], bucketFloats: 4), 0)
    }

    func testExpertParallelAndTimePredictionsByHand() throws {
        // 2 MoE layers of 8 experts, top-2, width 4; 64 tokens per micro-batch over N = 4 ranks, experts over M = 2.
        let w = CommunicationModel.Workload(parameters: 1000, expertParameters: 600, parameterTensors: 10, moeLayers: [(8, 2), (8, 2)],
                                            hiddenSize: 4, tokensPerMicroBatch: 64, microBatches: 1, balanceCounts: true, loadSums: false)
        let model = try CommunicationModel(w, ranks: 4, expertRanks: 2)
        let t = model.traffic
        // T_local = 16, rows sent = 16 · 2 · 1/2 = 16 per layer, 16 · 4 floats · 4 bytes = 256 bytes per layer, 2 layers.
        for kind in [CommunicationKind.dispatchForward, .combineForward, .dispatchBackward, .combineBackward] {
            XCTAssertEqual(t[kind]?.bytes, 512, "\(kind)")
            XCTAssertEqual(t[kind]?.calls, 2, "\(kind)")
        }
        // Non-expert 400 floats over 4 ranks: 2·3/4·1600 = 2400; experts 600/2 = 300 floats over 2 replicas: 2·1/2·1200 = 1200.
        XCTAssertEqual(t[.gradients]?.bytes, 3600)
        // Statistics: 10 flags + 2 losses + 2 layers × 8 counts = 28 floats over 4 ranks: 2·3/4·112 = 168.
        XCTAssertEqual(t[.statistics]?.bytes, 168)
        XCTAssertEqual(t[.statistics]?.calls, 4)
        // Time, α = 1 s, β = 1 B/s: gradients 2·3 messages over 4 ranks + 2·1 over the 2 expert replicas; statistics
        // 4 calls · 6; all-to-alls 4 kinds · 2 calls · 1 message (M − 1).
        let seconds = model.seconds(latency: 1, bandwidth: 1)
        let gradients: Double = 6 + 2 + 3600, statistics: Double = 4 * 6 + 168, allToAll: Double = 4 * (2 * 1 + 512)
        XCTAssertEqual(seconds, gradients + statistics + allToAll)
        XCTAssertThrowsError(try CommunicationModel(w, ranks: 4, expertRanks: 3))
        XCTAssertThrowsError(try CommunicationModel(w, ranks: 16, expertRanks: 16)) { XCTAssertTrue("\($0)".contains("8 experts")) }
        XCTAssertEqual(try CommunicationModel(w, ranks: 1).traffic.count, 0)
    }

    func testRanksWithDifferentSettingsFailOnEveryRankNamingTheFields() throws {
        let results = try LocalCommunicatorGroup.run(size: 3, timeout: 10) { c -> Void in
            var fields: [(name: String, value: String)] = [("steps", "6"), ("learning_rate", "0.001"), ("seed", "0")]
            if c.rank == 2 { fields[1].value = "0.002"; fields.append(("only_here", "x")) }
            try SettingsAgreement.check(fields, communicator: c)
        }
        for (r, result) in results.enumerated() {
            guard case .failure(let error) = result, let mismatch = error as? SettingsMismatch else { XCTFail("rank \(r): \(result)"); continue }
            XCTAssertTrue(mismatch.names.contains("learning_rate"), "rank \(r): \(mismatch)")
            XCTAssertFalse(mismatch.names.contains("steps") || mismatch.names.contains("seed"), "rank \(r): \(mismatch)")
            XCTAssertTrue("\(mismatch)".contains("rank 0: 0.001"), "\(mismatch)")
            if r == 2 { XCTAssertTrue("\(mismatch)".contains("rank 2: 0.002") && mismatch.names.contains("only_here"), "\(mismatch)") }
        }
        // The same settings pass, values with newlines and '=' included.
        let same = try LocalCommunicatorGroup.run(size: 2, timeout: 10) { c -> Void in
            try SettingsAgreement.check([("a", "x=1\ny\\"), ("b", "")], communicator: c)
        }
        for r in same { XCTAssertNoThrow(try r.get()) }
    }

    func testTrainingRunsWithDifferentLearningRatesEndBeforeTraining() throws {
        let saved = Threads.count
        Threads.count = 1
        defer { Threads.count = saved }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-settings-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let results = try LocalCommunicatorGroup.run(size: 2, timeout: 30) { c -> Void in
            var o = TrainingRunOptions()
            o.outputDirectory = folder
            o.training.steps = 2
            o.training.batchSize = 2
            o.training.sequenceLength = 16
            o.syntheticCorpusBytes = 20_000
            o.training.learningRate = c.rank == 0 ? 1e-3 : 2e-3
            _ = try TrainingRun(options: o, communicator: c, settings: [("flags.parallel", "data")])
        }
        for (r, result) in results.enumerated() {
            guard case .failure(let error) = result else { XCTFail("rank \(r) accepted another learning rate"); continue }
            XCTAssertEqual((error as? SettingsMismatch)?.names, ["run.training.learning_rate"], "rank \(r): \(error)")
        }
    }
}
