import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoETraining
import SparseMoEDistributed

/// Data-parallel training over the in-process communicator against single-process training
/// on the same global batch. The rank threads share the process-wide kernel thread count,
/// so the tests run every kernel on one thread (results do not depend on the count).
final class DataParallelTrainingTests: XCTestCase {
    static func modelConfig(router: RouterKind, auxLoss: Float) -> TransformerConfig {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 16)
        m.router = router
        m.auxLossCoefficient = auxLoss
        m.biasUpdateRate = 0.01
        return TransformerConfig(vocabSize: ByteTokenizer.vocabularySize, hiddenSize: 16, numLayers: 2, numHeads: 2,
                                 maxSequenceLength: 16, intermediateSize: 32, moe: m)
    }

    static func trainingConfig(steps: Int = 20, batchSize: Int = 8) -> TrainingConfig {
        var t = TrainingConfig()
        t.steps = steps
        t.batchSize = batchSize
        t.sequenceLength = 8
        t.learningRate = 3e-3
        t.warmupSteps = 2
        t.evalBatches = 1
        return t
    }

    static func dataset() throws -> TextDataset {
        var cc = SyntheticCorpusConfig(seed: 5, targetBytes: 20_000)
        cc.maxOperand = 20
        return try TextDataset(tokens: try SyntheticCorpus(config: cc).tokens, sequenceLength: 8)
    }

    struct Run: Sendable { var losses: [Double]; var auxLosses: [Double]; var parameters: [[Float]] }

    /// Trains `steps` steps; `seed` differs per rank so that the broadcast of rank 0's
    /// initial parameters is exercised.
    static func train(_ model: TransformerConfig, _ config: TrainingConfig, communicator: (any Communicator)?, seed: UInt64) throws -> Run {
        let lm = try TransformerLM(config: model, seed: seed)
        let trainer = try Trainer(model: lm, dataset: try Self.dataset(), config: config, communicator: communicator)
        var run = Run(losses: [], auxLosses: [], parameters: [])
        for _ in 0..<config.steps {
            let r = try trainer.trainStep()
            run.losses.append(r.loss); run.auxLosses.append(r.auxLoss)
        }
        run.parameters = lm.namedParameters().map { t in (0..<t.tensor.count).map { t.tensor.floats[$0] } }
        return run
    }

    func assertEquivalent(router: RouterKind, auxLoss: Float, ranks: Int, sequenceLevel: Bool = false, accumulate: Int = 1,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        var m = Self.modelConfig(router: router, auxLoss: auxLoss)
        m.moe!.sequenceLevelAuxLoss = sequenceLevel
        var c = Self.trainingConfig()
        c.gradAccumulation = accumulate
        let (model, config) = (m, c)
        try Threads.with(1) {
            let single = try Self.train(model, config, communicator: nil, seed: 7)
            let runs = try LocalCommunicatorGroup.run(size: ranks, timeout: 60) { comm in
                try Self.train(model, config, communicator: comm, seed: 7 + UInt64(comm.rank))
            }.map { try $0.get() }
            for (r, run) in runs.enumerated() {
                let what = "\(router) aux \(auxLoss) N=\(ranks) rank \(r)"
                for s in 0..<config.steps {
                    XCTAssertEqual(run.losses[s], single.losses[s], accuracy: 1e-5 * abs(single.losses[s]), "\(what) step \(s + 1) loss", file: file, line: line)
                    XCTAssertEqual(run.auxLosses[s], single.auxLosses[s], accuracy: 1e-5 * abs(single.auxLosses[s]) + 1e-9, "\(what) step \(s + 1) aux loss", file: file, line: line)
                }
                var worst: Float = 0
                for (p, q) in zip(run.parameters, single.parameters) { for (a, b) in zip(p, q) { worst = max(worst, abs(a - b)) } }
                XCTAssertLessThanOrEqual(worst, 1e-4, "\(what): final parameters differ by \(worst)", file: file, line: line)
                // Replicas are bit-identical (the sums run once, in rank order).
                XCTAssertEqual(run.parameters.map { $0.map(\.bitPattern) }, runs[0].parameters.map { $0.map(\.bitPattern) }, "\(what) vs rank 0", file: file, line: line)
            }
        }
    }

    func testTwoAndFourRanksTrainLikeOneProcessWithTheBalanceLoss() throws {
        // A large balance coefficient: per-rank expert counts would move the losses beyond 1e-5.
        for ranks in [2, 4] { try assertEquivalent(router: .softmaxTopK, auxLoss: 0.5, ranks: ranks) }
    }

    func testSequenceLevelBalanceLossAndGradientAccumulation() throws {
        try assertEquivalent(router: .softmaxTopK, auxLoss: 0.5, ranks: 2, sequenceLevel: true)
        try assertEquivalent(router: .softmaxTopK, auxLoss: 0.5, ranks: 4, accumulate: 2)
    }

    func testARankThatStopsEndsTheOthersStepWithATimeout() throws {
        let results = try LocalCommunicatorGroup.run(size: 2, timeout: 0.5) { comm -> Int in
            let lm = try TransformerLM(config: Self.modelConfig(router: .softmaxTopK, auxLoss: 0.01), seed: 1)
            let trainer = try Trainer(model: lm, dataset: try Self.dataset(), config: Self.trainingConfig(), communicator: comm)
            if comm.rank == 1 { return 0 }  // dies before its first step
            return try trainer.trainStep().step
        }
        XCTAssertEqual(try results[1].get(), 0)
        guard case .failure(let error) = results[0] else { return XCTFail("rank 0 finished a step alone") }
        guard case .timeout = error as? CommunicatorError else { return XCTFail("\(error)") }
        XCTAssertTrue("\(error)".contains("rank 0") && "\(error)".contains("timed out"), "\(error)")
    }

    func testAuxLossFreeBiasUpdateUsesTheGlobalLoads() throws {
        try assertEquivalent(router: .sigmoidBias, auxLoss: 0, ranks: 2)
    }

    /// The claim behind the global balance loss, op by op: replicas holding halves of a batch,
    /// each with the counts averaged over both, have a mean loss and mean gradient equal to the
    /// whole batch's; with their own counts they do not.
    func testReplicaBalanceLossWithAveragedCountsEqualsTheGlobalBatchLoss() throws {
        var rng = RandomGenerator(seed: 11)
        let (t, e, k) = (12, 4, 2)
        let logits = (0..<(t * e)).map { _ in Float(rng.normal()) }
        // Top-k of each row by logits (the selection the counts see).
        let selected: [Int32] = (0..<t).flatMap { i in
            (0..<e).sorted { logits[i * e + $0] > logits[i * e + $1] }.prefix(k).map(Int32.init)
        }
        func sel(_ rows: Range<Int>) -> Tensor { Tensor(indices: Array(selected[(rows.lowerBound * k)..<(rows.upperBound * k)]), shape: [rows.count, k]) }
        // Whole batch.
        let wholeLogits = Tensor(logits, shape: [t, e], requiresGrad: true)
        let whole = loadBalancingLoss(probs: softmax(wholeLogits), selected: sel(0..<t))
        whole.backward()
        // Two replicas of 6 rows: the replica mean of the counts is computed by hand.
        let halves = [0..<6, 6..<12]
        let countsPerHalf: [[Float]] = halves.map { rows in
            var c = [Float](repeating: 0, count: e)
            for i in rows { for s in 0..<k { c[Int(selected[i * k + s])] += 1 } }
            return c
        }
        let meanCounts = (0..<e).map { (countsPerHalf[0][$0] + countsPerHalf[1][$0]) / 2 }
        var replicaLoss = 0.0, localLoss = 0.0
        var replicaGrad = [Float](), localGrad = [Float]()
        for rows in halves {
            let l = Tensor(Array(logits[(rows.lowerBound * e)..<(rows.upperBound * e)]), shape: [rows.count, e], requiresGrad: true)
            let loss = try loadBalancingLoss(probs: softmax(l), selected: sel(rows)) { buffer in
                for j in 0..<e { buffer[j] = meanCounts[j] }
            }
            loss.backward()
            replicaLoss += Double(loss.item) / 2
            replicaGrad += (0..<l.count).map { l.grad!.floats[$0] / 2 }
            let l2 = Tensor(Array(logits[(rows.lowerBound * e)..<(rows.upperBound * e)]), shape: [rows.count, e], requiresGrad: true)
            let own = loadBalancingLoss(probs: softmax(l2), selected: sel(rows))
            own.backward()
            localLoss += Double(own.item) / 2
            localGrad += (0..<l2.count).map { l2.grad!.floats[$0] / 2 }
        }
        // The trainer averages over replicas: loss and gradient (each token's lives on one replica) / N.
        let wholeGrad = (0..<wholeLogits.count).map { wholeLogits.grad!.floats[$0] }
        XCTAssertEqual(replicaLoss, Double(whole.item), accuracy: 1e-6)
        for (a, b) in zip(replicaGrad, wholeGrad) { XCTAssertEqual(a, b, accuracy: 1e-7) }
        // Own counts: the loss or the gradient moves (so the test above can fail).
        let lossMoved = abs(localLoss - Double(whole.item)) > 1e-4
        let gradMoved = zip(localGrad, wholeGrad).contains { abs($0 - $1) > 1e-5 }
        XCTAssertTrue(lossMoved || gradMoved, "per-replica counts gave the global loss \(localLoss) and gradient: the batch does not discriminate")
    }

    func testBatchSizeMustDivideByTheRanks() throws {
        let results = try LocalCommunicatorGroup.run(size: 3, timeout: 10) { comm in
            _ = try Trainer(model: try TransformerLM(config: Self.modelConfig(router: .softmaxTopK, auxLoss: 0.01), seed: 1),
                            dataset: try Self.dataset(), config: Self.trainingConfig(batchSize: 8), communicator: comm)
        }
        for result in results {
            guard case .failure(let error) = result else { XCTFail("batch 8 over 3 ranks accepted"); continue }
            XCTAssertTrue("\(error)".contains("batch_size") && "\(error)".contains("3 data-parallel ranks"), "\(error)")
        }
    }

    func testReplicaCheckDetectsADifferingParameter() throws {
        let results = try LocalCommunicatorGroup.run(size: 2, timeout: 10) { comm -> [Bool] in
            let t = Tensor([1, 2, 3], shape: [3])
            let dp = DataParallel(communicator: comm, parameters: [t])
            let same = try dp.replicasIdentical([t])
            if comm.rank == 1 { t.floats[2] = 3.0000002 }
            return [same, try dp.replicasIdentical([t])]
        }.map { try $0.get() }
        XCTAssertEqual(results[0], [true, true])
        XCTAssertEqual(results[1], [true, false])
    }
}
