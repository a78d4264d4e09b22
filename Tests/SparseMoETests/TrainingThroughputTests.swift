import XCTest
@testable import SparseMoECore
@testable import SparseMoERuns

/// `moe bench --train`'s measurement: one result per precision, and the round-by-round ratios
/// against the first precision.
final class TrainingThroughputTests: XCTestCase {
    func testAlternatingPrecisionsGiveOneResultEachAndTheirRatios() throws {
        let (results, ratios) = try TrainingThroughput.measure(preset: "tiny-moe", steps: 2, warmup: 1,
                                                               precisions: [.float32, .bfloat16])
        XCTAssertEqual(results.map(\.precision), ["fp32", "bf16"])
        XCTAssertEqual(results.map(\.steps), [2, 2])
        XCTAssertEqual(ratios.count, 2)
        XCTAssertEqual(ratios[0], [1, 1], "the first precision against itself")
        XCTAssertEqual(ratios[1].count, 2)
        for r in ratios[1] { XCTAssertTrue(r.isFinite && r > 0, "ratio \(r)") }
        XCTAssertEqual(MatmulPrecision.current, .float32, "the ambient precision is restored")
    }

    func testSpeedupSummaryAndJSON() throws {
        let s = PrecisionSpeedup(model: "tiny-moe", threads: 2, stepRatios: [1.2, 1.8, 1.5, 1.4])
        XCTAssertEqual(s.median, 1.45, accuracy: 1e-12)
        XCTAssertEqual(s.lowerQuartile, 1.35, accuracy: 1e-12)  // rank 0.75 of 1.2, 1.4, 1.5, 1.8
        XCTAssertEqual(s.upperQuartile, 1.575, accuracy: 1e-12) // rank 2.25
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(s)) as! [String: Any]
        XCTAssertEqual(json["median"] as? Double ?? .nan, 1.45, accuracy: 1e-12)
        XCTAssertEqual(json["step_ratios"] as? [Double], [1.2, 1.8, 1.5, 1.4])
        XCTAssertEqual(try JSONDecoder().decode(PrecisionSpeedup.self, from: JSONEncoder().encode(s)).stepRatios, s.stepRatios)
    }

    func testRejectsRepeatedOrNoPrecisions() {
        for precisions in [[MatmulPrecision](), [.bfloat16, .bfloat16]] {
            XCTAssertThrowsError(try TrainingThroughput.measure(preset: "tiny-moe", steps: 1, precisions: precisions)) {
                XCTAssertTrue("\($0)".contains("distinct"), "\($0)")
            }
        }
    }
}
