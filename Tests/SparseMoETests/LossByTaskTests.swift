import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels
@testable import SparseMoETraining

/// `LanguageModelEvaluation.causalLossByGroup` against the library's cross-entropy kernel:
/// the groups' losses, weighted by their token counts, are the overall validation loss.
extension TrainerTests {
    func testLossByGroupAddsUpToTheOverallLoss() throws {
        let corpus = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 4, targetBytes: 20_000))
        let dataset = try TextDataset(tokens: corpus.tokens, sequenceLength: 16)
        let trainer = try Trainer(model: try TransformerLM(config: tinyModelConfig(), seed: 7), dataset: dataset, config: trainingConfig(steps: 3))
        for _ in 0..<3 { _ = try trainer.trainStep() }
        let overall = try LanguageModelEvaluation.causalLoss(trainer.model, dataset: dataset, batchSize: 4, maxBatches: 3)
        let tasks = SyntheticTask.allCases.count
        let batches = try dataset.evaluationBatches(.validation, batchSize: 4, maxBatches: 3)
        // Every position in a group: the five tasks, and bytes of no task as group `tasks`.
        let groups = try LanguageModelEvaluation.causalLossByGroup(trainer.model, batches: batches, groupCount: tasks + 1) {
            corpus.taskIDs(of: $0).map { $0 == SyntheticTask.unknownID ? UInt8(tasks) : $0 }
        }
        let tokens = groups.map(\.tokens).reduce(0, +)
        XCTAssertEqual(tokens, 3 * 4 * 16)
        let weighted = groups.filter { $0.tokens > 0 }.map { $0.loss * Double($0.tokens) }.reduce(0, +) / Double(tokens)
        XCTAssertEqual(weighted, overall, accuracy: 1e-5 * overall)
        XCTAssertGreaterThanOrEqual(groups.prefix(tasks).filter { $0.tokens > 0 }.count, 3, "the windows span several tasks")
        // Ids past groupCount are left out; an empty group reports NaN.
        let first = try LanguageModelEvaluation.causalLossByGroup(trainer.model, batches: batches, groupCount: 2) { b in
            (0..<(b.batchSize * b.sequenceLength)).map { $0 == 0 ? 0 : 7 }
        }
        XCTAssertEqual(first[0].tokens, 3)
        XCTAssertTrue(first[1].loss.isNaN && first[1].tokens == 0)
    }
}
