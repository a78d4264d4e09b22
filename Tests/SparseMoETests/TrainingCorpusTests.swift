import XCTest
@testable import SparseMoETraining

final class TrainingCorpusTests: XCTestCase {
    func testSameSeedSameBytesDifferentSeedDiffers() throws {
        let a = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 1, targetBytes: 20_000))
        let b = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 1, targetBytes: 20_000))
        let c = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 2, targetBytes: 20_000))
        XCTAssertEqual(a.bytes, b.bytes)
        XCTAssertEqual(a.taskIDs, b.taskIDs)
        XCTAssertNotEqual(a.bytes, c.bytes)
        XCTAssertGreaterThanOrEqual(a.bytes.count, 20_000)
        XCTAssertLessThan(a.bytes.count, 20_100)
        XCTAssertEqual(a.bytes.last, UInt8(ascii: "\n"))
    }

    /// Task ids recorded while generating agree with ids parsed back from the markers,
    /// every task occurs with a fair share, and every line is correct for its task.
    func testTaskIDsCoverageAndLineCorrectness() throws {
        let corpus = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 3, targetBytes: 60_000))
        XCTAssertEqual(corpus.taskIDs.count, corpus.bytes.count)
        XCTAssertEqual(SyntheticTask.taskIDs(of: corpus.bytes), corpus.taskIDs)
        let perTask = corpus.bytesPerTask
        for task in SyntheticTask.allCases {
            XCTAssertGreaterThan(Double(perTask[Int(task.id)]) / Double(corpus.bytes.count), 0.08, "\(task)")
        }
        var seen = Set<SyntheticTask>()
        var balanced = 0, unbalanced = 0
        var pos = 0
        for line in corpus.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let task = corpus.task(at: pos)
            XCTAssertEqual(corpus.task(at: pos + line.utf8.count), task)  // the newline belongs to the line
            pos += line.utf8.count + 1
            seen.insert(task)
            XCTAssertTrue(line.hasPrefix(task.marker), String(line))
            let body = String(line.dropFirst(task.marker.count))
            switch task {
            case .arithmetic:
                let eq = body.split(separator: "=")
                let expr = String(eq[0]), result = Int(eq[1])!
                for (op, f) in [("+", { (a: Int, b: Int) in a + b }), ("-", { $0 - $1 }), ("*", { $0 * $1 })] {
                    let parts = expr.components(separatedBy: op)
                    if parts.count == 2, let x = Int(parts[0]), let y = Int(parts[1]) {
                        XCTAssertEqual(f(x, y), result, String(line))
                    }
                }
            case .copy:
                let p = body.split(separator: "|"); XCTAssertEqual(p[0], p[1])
            case .reverse:
                let p = body.split(separator: "|"); XCTAssertEqual(String(p[0].reversed()), String(p[1]))
            case .brackets:
                let p = body.split(separator: "|")
                // Reference check by repeated removal of adjacent pairs.
                var s = String(p[0])
                while let r = ["()", "[]", "{}"].first(where: { s.contains($0) }) { s = s.replacingOccurrences(of: r, with: "") }
                XCTAssertEqual(p[1], s.isEmpty ? "yes" : "no", String(line))
                if s.isEmpty { balanced += 1 } else { unbalanced += 1 }
            case .lookup:
                let p = body.split(separator: "?")
                let pairs = Dictionary(uniqueKeysWithValues: p[0].split(separator: ";").map { kv in
                    let x = kv.split(separator: "="); return (String(x[0]), String(x[1]))
                })
                let q = p[1].split(separator: ">")
                XCTAssertEqual(pairs[String(q[0])], String(q[1]), String(line))
            }
        }
        XCTAssertEqual(pos, corpus.bytes.count)
        XCTAssertEqual(seen, Set(SyntheticTask.allCases))
        XCTAssertGreaterThan(balanced, 100); XCTAssertGreaterThan(unbalanced, 100)
    }

    func testTaskSubsetMarkersAndErrors() throws {
        let c = try SyntheticCorpus(config: SyntheticCorpusConfig(seed: 0, targetBytes: 2_000, tasks: [.reverse]))
        XCTAssertTrue(c.taskIDs.allSatisfy { $0 == SyntheticTask.reverse.id })
        XCTAssertEqual(c.tokens.count, c.bytes.count)
        XCTAssertEqual(SyntheticTask(id: SyntheticTask.lookup.id), .lookup)
        XCTAssertNil(SyntheticTask(id: SyntheticTask.unknownID))
        XCTAssertEqual(SyntheticTask.taskIDs(of: Array("hello\nrev: ab|ba".utf8)),
                       [UInt8](repeating: 255, count: 6) + [UInt8](repeating: SyntheticTask.reverse.id, count: 10))
        XCTAssertThrowsError(try SyntheticCorpus(config: SyntheticCorpusConfig(tasks: []))) { e in
            XCTAssertTrue("\(e)".contains("tasks"), "\(e)")
        }
        XCTAssertThrowsError(try SyntheticCorpus(config: SyntheticCorpusConfig(targetBytes: 0)))
    }

    func testDefaultSizeAndSpeed() throws {
        let start = Date()
        let corpus = try SyntheticCorpus()
        let seconds = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(corpus.bytes.count, 1_000_000)
        XCTAssertLessThanOrEqual(corpus.bytes.count, 2_000_000)
        // Debug builds are ~10–50× slower than release; release target is < 1 s.
        print("synthetic corpus: \(corpus.bytes.count) bytes in \(String(format: "%.3f", seconds)) s (debug build)")
    }
}
