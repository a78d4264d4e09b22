import Foundation
import XCTest
@testable import SparseMoEModels

/// A number that does not fit an integer field is reported with the field's name, not as
/// "not valid JSON".
final class JSONFieldDecodingTests: XCTestCase {
    private func configJSON(hiddenSize: String) throws -> URL {
        let preset = try TransformerConfig.preset(named: "tiny-moe")
        var text = String(decoding: try JSONEncoder().encode(preset), as: UTF8.self)
        let pattern = try NSRegularExpression(pattern: "\"hidden_size\":\\s*\\d+")
        text = pattern.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text),
                                                withTemplate: "\"hidden_size\":\(hiddenSize)")
        XCTAssertTrue(text.contains("\"hidden_size\":\(hiddenSize)"))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).json")
        try Data(text.utf8).write(to: url)
        return url
    }

    func testNonIntegerNumberNamesTheField() throws {
        for bad in ["64.5", "1180591620717411303424"] {
            let url = try configJSON(hiddenSize: bad)
            defer { try? FileManager.default.removeItem(at: url) }
            XCTAssertThrowsError(try TransformerConfig.load(from: url)) { error in
                let m = "\(error)"
                XCTAssertTrue(m.contains("'hidden_size'"), m)
                XCTAssertFalse(m.contains("not valid JSON"), m)
            }
        }
    }

    func testValidConfigStillDecodesAndFractionalFloatFieldsAreNotBlamed() throws {
        // tiny-moe has fractional float fields (norm_eps, init_std); with an integer
        // hidden_size the file decodes, and with a bad one only hidden_size is named.
        let good = try configJSON(hiddenSize: "64")
        defer { try? FileManager.default.removeItem(at: good) }
        XCTAssertEqual(try TransformerConfig.load(from: good).hiddenSize, 64)
        let bad = try configJSON(hiddenSize: "64.5")
        defer { try? FileManager.default.removeItem(at: bad) }
        XCTAssertThrowsError(try TransformerConfig.load(from: bad)) { error in
            XCTAssertFalse("\(error)".contains("norm_eps"), "\(error)")
        }
    }

    func testPathSearchOverNestedObjectsAndArrays() {
        let tree: [String: Any] = ["a": 1, "b": ["c": 2.5, "d": [1, 3.25, true]], "e": 1e30]
        let found = JSONNumbers.notWholeInt64(in: tree).map { $0.0 }
        XCTAssertEqual(found, [[.key("b"), .key("c")], [.key("b"), .key("d"), .index(1)], [.key("e")]])
    }
}
