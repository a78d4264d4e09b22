import XCTest
import SparseMoEDistributed

/// The in-process communicator against naive references: what each rank contributes is
/// known, so every collective's result is computed here independently.
final class CommunicatorTests: XCTestCase {
    /// Rank r's test data: n values that differ by rank and position.
    static func data(_ r: Int, _ n: Int) -> [Float] { (0..<n).map { Float(r + 1) * 0.1 + Float($0) * 1e-3 + 1 / Float(3 + r + $0) } }

    func testAllReduceSumsInRankOrderBitIdenticalOnEveryRank() throws {
        for size in [1, 2, 3, 4] {
            let n = 1000
            let results = try LocalCommunicatorGroup.run(size: size, timeout: 10) { comm -> [Float] in
                var v = Self.data(comm.rank, n)
                try comm.allReduceSum(&v)
                return v
            }.map { try $0.get() }
            var expected = Self.data(0, n)
            for r in 1..<size { let d = Self.data(r, n); for i in 0..<n { expected[i] += d[i] } }
            for (r, got) in results.enumerated() {
                XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "size \(size) rank \(r)")
            }
        }
    }

    func testBroadcastCopiesTheRootsValues() throws {
        let results = try LocalCommunicatorGroup.run(size: 3, timeout: 10) { comm -> [Float] in
            var v = Self.data(comm.rank, 17)
            try comm.broadcast(&v, root: 2)
            return v
        }.map { try $0.get() }
        for got in results { XCTAssertEqual(got, Self.data(2, 17)) }
    }

    func testAllToAllvDeliversEachSourcesRowsInRankOrder() throws {
        let size = 3, width = 2
        // Rank s sends (s + d) % 3 rows to rank d; row values encode (source, destination, row).
        @Sendable func counts(_ s: Int) -> [Int] { (0..<size).map { (s + $0) % 3 } }
        @Sendable func row(_ s: Int, _ d: Int, _ i: Int) -> [Float] { [Float(100 * s + 10 * d + i), -Float(100 * s + 10 * d + i)] }
        let results = try LocalCommunicatorGroup.run(size: size, timeout: 10) { comm -> ([Float], [Int]) in
            let s = comm.rank
            let send = (0..<size).flatMap { d in (0..<counts(s)[d]).flatMap { row(s, d, $0) } }
            let got = try comm.allToAllv(send, sendCounts: counts(s), rowLength: width)
            return (got.rows, got.counts)
        }.map { try $0.get() }
        for d in 0..<size {
            let expected = (0..<size).flatMap { s in (0..<counts(s)[d]).flatMap { row(s, d, $0) } }
            XCTAssertEqual(results[d].0, expected, "rank \(d) rows")
            XCTAssertEqual(results[d].1, (0..<size).map { counts($0)[d] }, "rank \(d) counts")
        }
    }

    func testAMissingPeerTimesOutWithAClearErrorInsteadOfHanging() throws {
        let start = Date()
        let results = try LocalCommunicatorGroup.run(size: 2, timeout: 0.3) { comm -> Void in
            // Rank 1 "dies": it never reaches the collective.
            if comm.rank == 0 { var v: [Float] = [1]; try comm.allReduceSum(&v) }
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        guard case .failure(let error) = results[0] else { return XCTFail("rank 0 did not fail") }
        XCTAssertEqual(error as? CommunicatorError, .timeout(operation: "allReduceSum", rank: 0, seconds: 0.3, arrived: 1, size: 2))
        XCTAssertTrue("\(error)".contains("timed out after 0.3 s"), "\(error)")
    }

    func testMismatchedCollectivesFailOnEveryRank() throws {
        let results = try LocalCommunicatorGroup.run(size: 2, timeout: 5) { comm -> Void in
            var v: [Float] = comm.rank == 0 ? [1, 2] : [1, 2, 3]
            try comm.allReduceSum(&v)
        }
        for (r, result) in results.enumerated() {
            guard case .failure(let error) = result else { XCTFail("rank \(r) did not fail"); continue }
            XCTAssertTrue("\(error)".contains("mismatch"), "rank \(r): \(error)")
        }
        // Later collectives fail at once on a failed group.
        let group = try LocalCommunicatorGroup(size: 2, timeout: 0.2)
        XCTAssertThrowsError(try group.communicator(rank: 0).barrier())
        XCTAssertThrowsError(try group.communicator(rank: 1).barrier()) { error in
            guard case .groupFailed = error as? CommunicatorError else { return XCTFail("\(error)") }
        }
    }

    func testBarrierAndBadArguments() throws {
        let results = try LocalCommunicatorGroup.run(size: 4, timeout: 10) { comm -> Int in
            try comm.barrier(); try comm.barrier()
            return comm.size
        }
        XCTAssertEqual(try results.map { try $0.get() }, [4, 4, 4, 4])
        let one = try LocalCommunicatorGroup(size: 1).communicator(rank: 0)
        XCTAssertThrowsError(try one.allToAllv([1, 2, 3], sendCounts: [1], rowLength: 2)) { error in
            XCTAssertTrue("\(error)".contains("sendCounts"), "\(error)")
        }
        XCTAssertThrowsError(try LocalCommunicatorGroup(size: 0))
        XCTAssertThrowsError(try LocalCommunicatorGroup(size: 2, timeout: 0))
    }
}
