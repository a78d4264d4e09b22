import XCTest
import SparseMoE

/// One rule for every source of a thread count: not a whole number ≥ 1 is an error that
/// names the source; more threads than the machine has is a warning.
final class ThreadSettingTests: XCTestCase {
    private func message(_ body: () throws -> ThreadSetting) -> String? {
        do { _ = try body(); return nil } catch { return "\(error)" }
    }

    func testFlagWinsOverEnvironment() throws {
        let s = try ThreadSetting(flag: 2, environment: ["SPARSEMOE_NUM_THREADS": "1"], available: 4)
        XCTAssertEqual(s.count, 2)
        XCTAssertNil(s.warning)
    }

    func testEnvironmentUsedWithoutFlag() throws {
        XCTAssertEqual(try ThreadSetting(flag: nil, environment: ["SPARSEMOE_NUM_THREADS": " 3 "], available: 4).count, 3)
        XCTAssertNil(try ThreadSetting(flag: nil, environment: [:], available: 4).count)
    }

    func testInvalidValuesAreErrorsNamingTheSource() {
        for bad in [0, -3] {
            let m = message { try ThreadSetting(flag: bad, environment: [:], available: 2) }
            XCTAssertNotNil(m, "--threads \(bad) accepted")
            XCTAssertTrue(m?.contains("--threads") == true && m?.contains("\(bad)") == true, m ?? "")
        }
        for bad in ["abc", "0", "-3", "", "2.5"] {
            let m = message { try ThreadSetting(flag: nil, environment: ["SPARSEMOE_NUM_THREADS": bad], available: 2) }
            XCTAssertNotNil(m, "SPARSEMOE_NUM_THREADS=\(bad) accepted")
            XCTAssertTrue(m?.contains("SPARSEMOE_NUM_THREADS") == true && m?.contains("'\(bad)'") == true, m ?? "")
        }
    }

    func testMoreThreadsThanCoresWarns() throws {
        let s = try ThreadSetting(flag: 1000, environment: [:], available: 2)
        XCTAssertEqual(s.count, 1000)
        XCTAssertTrue(s.warning?.contains("1000 threads on 2 hardware threads") == true, s.warning ?? "no warning")
        XCTAssertNil(try ThreadSetting(flag: 2, environment: [:], available: 2).warning)
    }
}
