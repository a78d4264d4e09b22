import XCTest
@testable import SparseMoETraining

final class TrainingScheduleTests: XCTestCase {
    func testWarmupAndCosineValues() throws {
        let s = LRSchedule(peak: 1e-3, warmupSteps: 10, totalSteps: 110, minFraction: 0.1)
        try s.validate()
        XCTAssertEqual(s.lr(step: 0), 1e-4, accuracy: 1e-15)        // warmup start: peak / W
        XCTAssertEqual(s.lr(step: 4), 5e-4, accuracy: 1e-15)
        XCTAssertEqual(s.lr(step: 9), 1e-3, accuracy: 1e-15)        // warmup end
        XCTAssertEqual(s.lr(step: 10), 1e-3, accuracy: 1e-15)       // decay starts at the peak
        XCTAssertEqual(s.lr(step: 60), 5.5e-4, accuracy: 1e-15)     // midpoint: (peak + min) / 2
        // A quarter of the way: min + (peak − min)·½(1 + cos(π/4)).
        XCTAssertEqual(s.lr(step: 35), 1e-4 + 9e-4 * 0.5 * (1 + 0.5.squareRoot()), accuracy: 1e-15)
        XCTAssertEqual(s.lr(step: 110), 1e-4, accuracy: 1e-15)      // end: min
        XCTAssertEqual(s.lr(step: 500), 1e-4, accuracy: 1e-15)
        XCTAssertEqual(s.lr(step: -3), s.lr(step: 0))
        // Monotone: up during warmup, down after.
        for k in 1..<10 { XCTAssertGreaterThan(s.lr(step: k), s.lr(step: k - 1)) }
        for k in 11...110 { XCTAssertLessThan(s.lr(step: k), s.lr(step: k - 1)) }
    }

    func testOtherShapes() throws {
        let lin = LRSchedule(peak: 2, warmupSteps: 0, totalSteps: 100, minFraction: 0, decay: .linear)
        XCTAssertEqual(lin.lr(step: 0), 2); XCTAssertEqual(lin.lr(step: 25), 1.5); XCTAssertEqual(lin.lr(step: 100), 0)
        let c = LRSchedule(peak: 0.5, warmupSteps: 4, totalSteps: 100, decay: .constant)
        XCTAssertEqual(c.lr(step: 1), 0.25); XCTAssertEqual(c.lr(step: 3), 0.5); XCTAssertEqual(c.lr(step: 99), 0.5)
        let warmOnly = LRSchedule(peak: 1, warmupSteps: 10, totalSteps: 5)
        XCTAssertEqual(warmOnly.lr(step: 20), 1)
        let noWarm = LRSchedule(peak: 1, warmupSteps: 0, totalSteps: 10, minFraction: 0)
        XCTAssertEqual(noWarm.lr(step: 0), 1); XCTAssertEqual(noWarm.lr(step: 5), 0.5, accuracy: 1e-15)
    }

    func testCodableAndValidation() throws {
        let s = LRSchedule(peak: 3e-4, warmupSteps: 7, totalSteps: 300, minFraction: 0.05, decay: .linear)
        let back = try JSONDecoder().decode(LRSchedule.self, from: JSONEncoder().encode(s))
        XCTAssertEqual(back, s)
        for (bad, field) in [(LRSchedule(peak: -1, warmupSteps: 0, totalSteps: 1), "learning_rate"),
                             (LRSchedule(peak: 1, warmupSteps: -1, totalSteps: 1), "warmup_steps"),
                             (LRSchedule(peak: 1, warmupSteps: 0, totalSteps: 0), "steps"),
                             (LRSchedule(peak: 1, warmupSteps: 0, totalSteps: 5, minFraction: 2), "min_lr_fraction")] {
            XCTAssertThrowsError(try bad.validate()) { e in XCTAssertTrue("\(e)".contains(field), "\(e)") }
        }
    }
}
