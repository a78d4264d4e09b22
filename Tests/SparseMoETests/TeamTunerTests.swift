import XCTest
@testable import SparseMoECore

/// `TeamTuner` against a fake clock whose "work" takes a time that depends on the team the
/// body actually gets (`Threads.currentTeam`, an empty parallel region's size).
final class TeamTunerTests: XCTestCase {
    /// Runs `calls` calls of one kind where a team of t takes cost[t - 1] seconds per unit;
    /// returns the teams the bodies ran on.
    func teams(cost: [Double], calls: Int, kind: Int = 0) -> (TeamTuner, [Int]) {
        var now = 0.0
        let tuner = TeamTuner(maxTeam: 2, explore: 4, exploit: 8, block: 3, longCall: 100, clock: { now })
        var seen: [Int] = []
        for _ in 0..<calls {
            tuner.run(kind: kind, work: 3) {
                let t = Threads.currentTeam
                seen.append(t)
                now += 3 * cost[t - 1]
            }
        }
        return (tuner, seen)
    }

    func testMeasuresEveryTeamThenKeepsTheFastestAndMeasuresAgain() throws {
        let wasAdaptive = Threads.adaptive
        defer { Threads.adaptive = wasAdaptive }
        Threads.adaptive = false
        try Threads.with(2) {
            // One thread faster: blocks of 3 calls per team, the full team first, the first call of
            // a block untimed, until each team has 4 timed calls (12 calls); then 8 on one
            // thread; then measuring again.
            let (tuner, seen) = teams(cost: [1.0, 1.5], calls: 12 + 8 + 4)
            XCTAssertEqual(Array(seen.prefix(12)), [2, 2, 2, 1, 1, 1, 2, 2, 2, 1, 1, 1])
            XCTAssertEqual(Array(seen[12..<20]), Array(repeating: 1, count: 8))
            XCTAssertEqual(Array(seen[20...]), [2, 2, 2, 1], "after `exploit` calls it measures again")
            XCTAssertNil(tuner.choice(kind: 0))
            // Two threads faster.
            let (t2, seen2) = teams(cost: [2.0, 1.0], calls: 12 + 7)
            XCTAssertEqual(Array(seen2.suffix(7)), Array(repeating: 2, count: 7))
            XCTAssertEqual(t2.choice(kind: 0), 2)
            // Kinds are measured apart; a tie keeps the larger team.
            let (t3, _) = teams(cost: [1.0, 1.0], calls: 12, kind: 7)
            XCTAssertEqual(t3.choice(kind: 7), 2)
            XCTAssertNil(t3.choice(kind: 0))
            XCTAssertEqual(Threads.currentTeam, 2, "the cap is lifted after each call")
            XCTAssertEqual(t2.runOnFullTeam { Threads.currentTeam }, 2)
            XCTAssertEqual(t2.choice(kind: 0), 2, "untimed work does not count against `exploit`")
        }
    }

    /// Calls that take `longCall` seconds or more on the full team stay there, unmeasured.
    func testLongCallsKeepTheFullTeam() throws {
        let wasAdaptive = Threads.adaptive
        defer { Threads.adaptive = wasAdaptive }
        Threads.adaptive = false
        try Threads.with(2) {
            var now = 0.0
            let tuner = TeamTuner(maxTeam: 2, explore: 4, exploit: 8, block: 3, longCall: 0.5, clock: { now })
            var seen: [Int] = []
            for _ in 0..<10 {
                tuner.run(kind: 0, work: 1) {
                    seen.append(Threads.currentTeam)
                    now += seen.last == 2 ? 0.6 : 0.1 // one thread faster, but calls are long
                }
            }
            XCTAssertEqual(seen, Array(repeating: 2, count: 10))
            XCTAssertEqual(tuner.choice(kind: 0), 2)
        }
    }

    func testATestsCapStaysAndOneThreadIsLeftAlone() throws {
        let wasAdaptive = Threads.adaptive
        defer { Threads.adaptive = wasAdaptive; Threads.limitTeams(to: nil) }
        Threads.adaptive = false
        try Threads.with(2) {
            Threads.limitTeams(to: 1)
            let (_, seen) = teams(cost: [1.0, 0.5], calls: 4)
            XCTAssertEqual(seen, [1, 1, 1, 1], "a cap already set is never raised")
            XCTAssertEqual(Threads.currentTeam, 1, "and is restored after each call")
            Threads.limitTeams(to: nil)
        }
        try Threads.with(1) {
            var now = 0.0
            let tuner = TeamTuner(explore: 1, exploit: 1, clock: { now })
            XCTAssertEqual(tuner.maxTeam, 1)
            tuner.run(kind: 0, work: 1) { now += 1 }
            XCTAssertNil(tuner.choice(kind: 0), "nothing to choose with one thread")
        }
    }
}
