import XCTest
@testable import SparseMoECore
@testable import SparseMoETraining

final class TrainingDatasetTests: XCTestCase {
    private func tempFile(_ bytes: [UInt8]) throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("sparsemoe-dataset-\(UUID().uuidString).txt").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testSplitSizes() throws {
        let tokens = (0..<1000).map { Int32($0 % 256) }
        let d = try TextDataset(tokens: tokens, sequenceLength: 16, validationFraction: 0.1)
        XCTAssertEqual(d.trainRange, 0..<900)
        XCTAssertEqual(d.validationRange, 900..<1000)
        let d2 = try TextDataset(tokens: Array(tokens.prefix(997)), sequenceLength: 7, validationFraction: 0.25)
        XCTAssertEqual(d2.validationRange.count, 249)  // round(997 · 0.25) = 249.25 → 249
        XCTAssertEqual(d2.trainRange.count, 748)
        let d3 = try TextDataset(tokens: tokens, sequenceLength: 5, validationFraction: 0)
        XCTAssertEqual(d3.trainRange, 0..<1000)
        XCTAssertTrue(d3.validationRange.isEmpty)
        var rng = RandomGenerator(seed: 1)
        XCTAssertThrowsError(try d3.randomBatch(.validation, batchSize: 2, using: &rng)) { e in
            XCTAssertTrue("\(e)".contains("validation split is empty"), "\(e)")
        }
    }

    /// Random batches equal naive slicing at the recorded starts, stay inside their
    /// split, follow the documented RNG draws, and targets are inputs shifted by one.
    func testRandomBatchesMatchNaiveSlicing() throws {
        var gen = RandomGenerator(seed: 11)
        let tokens = (0..<777).map { _ in Int32(gen.int(below: 260)) }
        for (t, b) in [(1, 1), (13, 5), (32, 17)] {
            let d = try TextDataset(tokens: tokens, sequenceLength: t, validationFraction: 0.2)
            for split in DatasetSplit.allCases {
                var rng = RandomGenerator(seed: 42), ref = RandomGenerator(seed: 42)
                let r = d.range(split)
                for _ in 0..<5 {
                    let batch = try d.randomBatch(split, batchSize: b, using: &rng)
                    XCTAssertEqual(batch.inputs.shape, [b, t]); XCTAssertEqual(batch.targets.shape, [b, t])
                    XCTAssertEqual(batch.inputs.dtype, .int32)
                    let x = batch.inputs.indexScalars, y = batch.targets.indexScalars
                    for row in 0..<b {
                        let s = batch.starts[row]
                        XCTAssertEqual(s, r.lowerBound + ref.int(below: r.count - t))
                        XCTAssertTrue(s >= r.lowerBound && s + t < r.upperBound)
                        XCTAssertEqual(Array(x[row * t..<(row + 1) * t]), Array(tokens[s..<s + t]))
                        XCTAssertEqual(Array(y[row * t..<(row + 1) * t]), Array(tokens[s + 1...s + t]))
                    }
                }
            }
        }
    }

    func testRandomStartsCoverTheSplit() throws {
        let tokens = (0..<60).map { Int32($0) }
        let d = try TextDataset(tokens: tokens, sequenceLength: 4, validationFraction: 0)
        var rng = RandomGenerator(seed: 3)
        var seen = Set<Int>()
        for _ in 0..<100 { seen.formUnion(try d.randomBatch(batchSize: 8, using: &rng).starts) }
        XCTAssertEqual(seen, Set(0..<56))  // every start 0 ... 60 − 4 − 1
    }

    func testSequentialEvaluationBatches() throws {
        let tokens = (0..<500).map { Int32($0 % 251) }
        let t = 9, b = 4
        let d = try TextDataset(tokens: tokens, sequenceLength: t, validationFraction: 0.3)
        let r = d.validationRange  // 350..<500, 150 tokens → ⌊149/9⌋ = 16 windows
        XCTAssertEqual(d.evaluationWindowCount(.validation), 16)
        var starts: [Int] = [], sizes: [Int] = []
        for batch in try d.evaluationBatches(.validation, batchSize: b) {
            sizes.append(batch.batchSize)
            for row in 0..<batch.batchSize {
                let s = batch.starts[row]
                starts.append(s)
                XCTAssertEqual(Array(batch.inputs.indexScalars[row * t..<(row + 1) * t]), Array(tokens[s..<s + t]))
                XCTAssertEqual(Array(batch.targets.indexScalars[row * t..<(row + 1) * t]), Array(tokens[s + 1...s + t]))
            }
        }
        XCTAssertEqual(starts, (0..<16).map { r.lowerBound + $0 * t })
        XCTAssertEqual(sizes, [4, 4, 4, 4])
        XCTAssertLessThanOrEqual(starts.last! + t, r.upperBound - 1)
        // Partial last batch, cap on batches, and determinism.
        XCTAssertEqual(try d.evaluationBatches(.validation, batchSize: 5).map(\.batchSize), [5, 5, 5, 1])
        XCTAssertEqual(try d.evaluationBatches(.validation, batchSize: 5, maxBatches: 2).map(\.batchSize), [5, 5])
        XCTAssertEqual(try d.evaluationBatches(.train, batchSize: 3).map(\.inputs.indexScalars),
                       try d.evaluationBatches(.train, batchSize: 3).map(\.inputs.indexScalars))
    }

    /// `minimumTokens` is the smallest stream `init(tokens:)` accepts (brute force).
    func testMinimumTokensIsTheSmallestAcceptedStream() throws {
        for t in [1, 2, 7, 24, 128] {
            for f in [0, 0.01, 0.1, 0.25, 0.5, 0.9] {
                let n = TextDataset.minimumTokens(sequenceLength: t, validationFraction: f)
                XCTAssertNoThrow(try TextDataset(tokens: Array(repeating: 1, count: n), sequenceLength: t, validationFraction: f), "T \(t) f \(f)")
                for smaller in max(0, n - 300)..<n {
                    XCTAssertThrowsError(try TextDataset(tokens: Array(repeating: 1, count: smaller), sequenceLength: t, validationFraction: f),
                                         "T \(t) f \(f): \(smaller) < \(n) tokens accepted")
                }
            }
        }
        XCTAssertEqual(TextDataset.minimumTokens(sequenceLength: 128, validationFraction: 0.1), 1285)
        XCTAssertEqual(TextDataset.minimumTokens(sequenceLength: Int.max, validationFraction: 0.1), Int.max)
    }

    func testFileLoadingAndErrors() throws {
        let text = Array(String(repeating: "Grüße, world! ", count: 40).utf8)
        let path = try tempFile(text)
        let d = try TextDataset(contentsOf: path, sequenceLength: 16, validationFraction: 0.1)
        XCTAssertEqual(d.tokens, text.map { Int32($0) })

        let missing = "/nonexistent/dir/none.txt"
        XCTAssertThrowsError(try TextDataset(contentsOf: missing, sequenceLength: 8)) { e in
            guard case let SparseMoEError.file(p, m) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(p, missing); XCTAssertTrue(m.contains("no such file"), m)
        }
        let empty = try tempFile([])
        XCTAssertThrowsError(try TextDataset(contentsOf: empty, sequenceLength: 8)) { e in
            guard case let SparseMoEError.file(p, m) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(p, empty); XCTAssertTrue(m.contains("empty"), m)
        }
        let short = try tempFile([UInt8](repeating: 65, count: 50))
        XCTAssertThrowsError(try TextDataset(contentsOf: short, sequenceLength: 128, validationFraction: 0.1)) { e in
            guard case let SparseMoEError.file(p, m) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(p, short)
            XCTAssertTrue(m.contains("T+1 = 129") && m.contains("has 45") && m.contains("50 tokens"), m)
        }
        // Train long enough, validation too short: 200 tokens, 10% = 20 < T+1 = 25.
        let valShort = try tempFile([UInt8](repeating: 66, count: 200))
        XCTAssertThrowsError(try TextDataset(contentsOf: valShort, sequenceLength: 24)) { e in
            XCTAssertTrue("\(e)".contains("validation split") && "\(e)".contains("has 20"), "\(e)")
        }
        XCTAssertNoThrow(try TextDataset(contentsOf: valShort, sequenceLength: 24, validationFraction: 0))
        let dir = FileManager.default.temporaryDirectory.path
        XCTAssertThrowsError(try TextDataset(contentsOf: dir, sequenceLength: 8)) { e in
            XCTAssertTrue("\(e)".contains("directory"), "\(e)")
        }
        // Devices are no text files; every message says how many bytes would do.
        for device in ["/dev/null", "/dev/zero"] where FileManager.default.fileExists(atPath: device) {
            XCTAssertThrowsError(try TextDataset(contentsOf: device, sequenceLength: 128)) { e in
                guard case let SparseMoEError.file(p, m) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(p, device)
                XCTAssertTrue(m.contains("character device") && m.contains("at least 1285 bytes"), m)
                XCTAssertFalse(m.contains("permission"), m)
            }
        }
        XCTAssertThrowsError(try TextDataset(contentsOf: empty, sequenceLength: 128)) { e in
            XCTAssertTrue("\(e)".contains("holds 0 bytes") && "\(e)".contains("at least 1285 bytes"), "\(e)")
        }
        XCTAssertThrowsError(try TextDataset(contentsOf: short, sequenceLength: 128, validationFraction: 0)) { e in
            XCTAssertTrue("\(e)".contains("holds 50 bytes") && "\(e)".contains("at least 129 bytes"), "\(e)")
        }
        XCTAssertThrowsError(try TextDataset(tokens: [1, 2, 3], sequenceLength: 0))
        XCTAssertThrowsError(try TextDataset(tokens: Array(repeating: 1, count: 100), sequenceLength: 4, validationFraction: 1))
        var rng = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try d.randomBatch(batchSize: 0, using: &rng)) { e in
            XCTAssertTrue("\(e)".contains("batch_size"), "\(e)")
        }
    }

    func testSyntheticCorpusTaskLookupThroughStarts() throws {
        let corpus = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 9, targetBytes: 5_000))
        let d = try TextDataset(tokens: corpus.tokens, sequenceLength: 32)
        var rng = RandomGenerator(seed: 2)
        let batch = try d.randomBatch(batchSize: 4, using: &rng)
        let ids = corpus.taskIDs(of: batch)
        let parsed = SyntheticTask.taskIDs(of: corpus.bytes)
        XCTAssertEqual(ids.count, 4 * 32)
        for row in 0..<4 {
            for t in 0..<32 {
                let s = batch.starts[row] + t
                let token = batch.inputs.indexScalars[row * 32 + t]
                XCTAssertEqual(token, Int32(corpus.bytes[s]))
                XCTAssertEqual(ids[row * 32 + t], parsed[s])
            }
        }
    }
}
