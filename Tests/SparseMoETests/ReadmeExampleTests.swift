import Foundation
import XCTest
import SparseMoE

/// The README's Swift example is compiled and run from the README's own text: its first
/// ```swift block must equal, line by line, the marked body of `readmeExample()` in
/// ReadmeExample.swift, which this test then runs.
final class ReadmeExampleTests: XCTestCase {
    /// The lines of README.md's first ```swift block.
    static func readmeSwiftBlock() throws -> [String] {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md")
        let lines = try String(contentsOf: readme, encoding: .utf8).components(separatedBy: "\n")
        guard let open = lines.firstIndex(of: "```swift"),
              let close = lines[(open + 1)...].firstIndex(of: "```") else {
            XCTFail("README.md has no ```swift block"); return []
        }
        return Array(lines[(open + 1)..<close])
    }

    /// The lines between the markers in ReadmeExample.swift, with the function's four-space indent removed.
    static func exampleFileBody() throws -> [String] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("ReadmeExample.swift")
        let lines = try String(contentsOf: file, encoding: .utf8).components(separatedBy: "\n")
        guard let begin = lines.firstIndex(of: "    // README example begins"),
              let end = lines.firstIndex(of: "    // README example ends") else {
            XCTFail("ReadmeExample.swift lacks its markers"); return []
        }
        return lines[(begin + 1)..<end].map { $0.hasPrefix("    ") ? String($0.dropFirst(4)) : $0 }
    }

    func testReadmeBlockIsTheCompiledExample() throws {
        let block = try Self.readmeSwiftBlock()
        XCTAssertEqual(Array(block.prefix(2)), ["import SparseMoE", ""], "the README block starts with the import")
        let readmeBody = Array(block.dropFirst(2))
        let fileBody = try Self.exampleFileBody()
        XCTAssertGreaterThan(readmeBody.count, 5)
        XCTAssertEqual(readmeBody.count, fileBody.count, "README block and ReadmeExample.swift differ in length")
        for (i, (r, f)) in zip(readmeBody, fileBody).enumerated() where r != f {
            XCTFail("README example line \(i + 3) differs from ReadmeExample.swift:\n  README: \(r)\n  file:   \(f)")
        }
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
