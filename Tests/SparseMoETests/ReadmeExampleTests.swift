import Foundation
import XCTest
import SparseMoE

/// The README's Swift example is compiled and run from the README's own text: its first
/// ```swift block must equal, line by line, the marked body of `readmeExample()` in
/// ReadmeExample.swift, which this test then runs.
final class ReadmeExampleTests: XCTestCase {
    /// The lines of README.md's `index`-th ```swift block (0 = the first).
    static func readmeSwiftBlock(_ index: Int = 0) throws -> [String] {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md")
        let lines = try String(contentsOf: readme, encoding: .utf8).components(separatedBy: "\n")
        var from = 0
        for i in 0...index {
            guard let open = lines[from...].firstIndex(of: "```swift"),
                  let close = lines[(open + 1)...].firstIndex(of: "```") else {
                XCTFail("README.md has no ```swift block number \(index + 1)"); return []
            }
            if i == index { return Array(lines[(open + 1)..<close]) }
            from = close + 1
        }
        return []
    }

    /// The lines between the markers `// <marker> begins` and `// <marker> ends` in `file`,
    /// with the function's four-space indent removed.
    static func exampleFileBody(_ file: String = "ReadmeExample.swift", marker: String = "README example") throws -> [String] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(file)
        let lines = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
        guard let begin = lines.firstIndex(of: "    // \(marker) begins"),
              let end = lines.firstIndex(of: "    // \(marker) ends") else {
            XCTFail("\(file) lacks its markers"); return []
        }
        return lines[(begin + 1)..<end].map { $0.hasPrefix("    ") ? String($0.dropFirst(4)) : $0 }
    }

    /// README block `index` is `import SparseMoE`, a blank line, then exactly the marked body of `file`.
    func assertReadmeBlock(_ index: Int, equals file: String, marker: String) throws {
        let block = try Self.readmeSwiftBlock(index)
        XCTAssertEqual(Array(block.prefix(2)), ["import SparseMoE", ""], "the README block starts with the import")
        let readmeBody = Array(block.dropFirst(2))
        let fileBody = try Self.exampleFileBody(file, marker: marker)
        XCTAssertGreaterThan(readmeBody.count, 5)
        XCTAssertEqual(readmeBody.count, fileBody.count, "README block and \(file) differ in length")
        for (i, (r, f)) in zip(readmeBody, fileBody).enumerated() where r != f {
            XCTFail("README example line \(i + 3) differs from \(file):\n  README: \(r)\n  file:   \(f)")
        }
    }

    func testReadmeBlockIsTheCompiledExample() throws {
        try assertReadmeBlock(0, equals: "ReadmeExample.swift", marker: "README example")
    }

    func testReadmeTrainingBlockIsTheCompiledExample() throws {
        try assertReadmeBlock(1, equals: "ReadmeTrainingExample.swift", marker: "README training example")
    }

    /// The training loop learns: the first loss is that of a near-uniform prediction over
    /// the vocabulary (ln V, plus the small router losses), and 30 steps on one sentence
    /// take it well below.
    func testReadmeTrainingExampleRuns() throws {
        let losses = try readmeTrainingExample()
        XCTAssertEqual(losses.count, 30)
        XCTAssertTrue(losses.allSatisfy(\.isFinite))
        XCTAssertEqual(losses[0], log(Float(TransformerConfig.presetVocabSize)), accuracy: 0.3)
        XCTAssertLessThan(losses.last!, 0.5 * losses[0])
    }

    func testReadmeExampleRuns() throws {
        let (result, router, experts, loss) = try readmeExample()
        // Every one of the 64 tokens fills its k = 2 slots (dropless routing).
        let stats = RoutingStatistics(routing: result.routing, router: router)
        XCTAssertEqual(stats.tokensPerExpert.count, 8)
        XCTAssertEqual(stats.tokensPerExpert.reduce(0, +), 64 * 2)
        XCTAssertEqual(loss.shape, [])
        XCTAssertTrue(loss.item.isFinite)
        // loss = mean(output) + aux, so the aux term alone is loss − mean(output).
        XCTAssertEqual(loss.item, result.output.scalars.reduce(0, +) / Float(64 * 128) + result.auxLoss!.item,
                       accuracy: 1e-5)
        // backward reached the experts and the router.
        XCTAssertNotNil(experts.w1.grad)
        XCTAssertNotNil(router.weight.grad)
        XCTAssertTrue(experts.w1.grad!.scalars.contains { $0 != 0 })
    }
}
