import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels

/// `--tokens` text (`TokenList.parse`) is strict, and empty or negative-shaped token
/// input says what is wrong.
final class TokenListTests: XCTestCase {
    func testWellFormedListsParse() throws {
        XCTAssertEqual(try TokenList.parse("1,2,3"), [1, 2, 3])
        XCTAssertEqual(try TokenList.parse("0"), [0])
        XCTAssertEqual(try TokenList.parse("007,2147483647"), [7, Int32.max])
    }

    func testEveryMalformedListNamesTheItemItsPositionAndItsText() {
        let cases: [(String, [String])] = [
            ("", ["empty", "at least one token id"]),
            ("1,,2", ["item 2 (at character 3) is empty"]),
            (",1", ["item 1 (at character 1) is empty"]),
            ("1,", ["item 2 (at character 3) is empty"]),
            (" 1, 2", ["item 1 (at character 1) ' 1' contains a space"]),
            ("1, 2", ["item 2 (at character 3) ' 2' contains a space"]),
            ("1,-3", ["item 2 (at character 3) '-3' is negative"]),
            ("1,x,3", ["item 2 (at character 3) 'x' is not a token id"]),
            ("1.5", ["item 1 (at character 1) '1.5' is not a token id"]),
            ("+4", ["'+4' is not a token id"]),
            ("1,2147483648", ["item 2 (at character 3) '2147483648' exceeds the largest token id 2147483647"]),
            ("99999999999999999999999", ["exceeds the largest token id"]),
            ("١,٢", ["'١' is not a token id"]),
        ]
        for (text, needles) in cases {
            XCTAssertThrowsError(try TokenList.parse(text), "'\(text)'") { error in
                guard case let SparseMoEError.invalidArgument(op, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
                XCTAssertEqual(op, "--tokens")
                for n in needles { XCTAssertTrue(message.contains(n), "'\(text)': '\(n)' not in: \(message)") }
                XCTAssertTrue(message.contains("e.g. --tokens 1,2,3"), message)
            }
        }
    }

    func testEmptyTokenInputToForwardSaysSo() throws {
        let lm = try TransformerLM(config: TransformerConfig.preset(named: "tiny-dense"))
        for shape in [[1, 0], [0, 3]] {
            XCTAssertThrowsError(try lm.forward(Tensor(indices: [], shape: shape))) { error in
                XCTAssertEqual("\(error)", "TransformerLM: invalid argument: token input is empty (shape \(shape)): give at least one token id")
            }
        }
        var sampler = try Sampler(options: SamplingOptions(), seed: 0)
        XCTAssertThrowsError(try lm.generate(prompt: [], maxNewTokens: 1, sampler: &sampler)) { error in
            XCTAssertTrue("\(error)".contains("at least one token"), "\(error)")
        }
    }

    /// The check `Tensor(_:shape:)` and `Tensor(indices:shape:)` trap with.
    func testTensorShapeChecks() {
        XCTAssertThrowsError(try Check.fills(0, [-1, 0], "values")) { error in
            XCTAssertEqual("\(error)", "Tensor.init: shape mismatch: shape [-1, 0] has a negative dimension at axis 0")
        }
        XCTAssertThrowsError(try Check.fills(1, [-1, -1], "values")) { error in
            XCTAssertTrue("\(error)".contains("negative dimension at axis 0"), "\(error)")
        }
        XCTAssertThrowsError(try Check.fills(5, [2, 3], "indices")) { error in
            XCTAssertEqual("\(error)", "Tensor.init: shape mismatch: 5 indices do not fill shape [2, 3] (6 elements)")
        }
        XCTAssertNoThrow(try Check.fills(0, [0, 4], "values"))
        XCTAssertNoThrow(try Check.fills(6, [2, 3], "values"))
    }
}

/// Files a user names that are no regular files say so (not "You don't have permission").
final class UserFileTests: XCTestCase {
    func testDevicesDirectoriesAndMissingFilesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.path
        let cases: [(String, String)] = [("/dev/null", "is a character device"), (dir, "is a directory"),
                                         ("/nonexistent/x.json", "no such file")]
        for (path, needle) in cases where FileManager.default.fileExists(atPath: path) || needle == "no such file" {
            for load in [{ _ = try TransformerConfig.load(from: URL(fileURLWithPath: path)) },
                         { _ = try HuggingFaceFamilies.load(from: URL(fileURLWithPath: path)) },
                         { _ = try ByteLevelBPETokenizer(url: URL(fileURLWithPath: path)) }] {
                XCTAssertThrowsError(try load()) { error in
                    guard case let SparseMoEError.file(p, m)? = error as? SparseMoEError else { return XCTFail("\(error)") }
                    XCTAssertEqual(p, path)
                    XCTAssertTrue(m.contains(needle) && m.contains("expected"), m)
                    XCTAssertFalse(m.contains("permission") || m.contains("NSCocoaErrorDomain"), m)
                }
            }
        }
    }
}
