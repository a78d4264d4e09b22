import XCTest
@testable import SparseMoECore

final class StoragePoolTests: XCTestCase {
    let mb = 1 << 20

    /// A released block of a size is handed out again for the next request of that size;
    /// small blocks and blocks larger than the limit are not kept.
    /// Zero-filled tensors are all zeros although their memory comes back from the pool
    /// dirty: sizes below and above the split into pieces, odd byte counts, 1 and 2 threads.
    func testZerosAreZeroOnRecycledMemory() {
        for threads in [1, 2] {
            Threads.with(threads) {
                for count in [3, 131_071, 3 * mb / 4 + 5] {
                    do { _ = Tensor(repeating: 7, shape: [count]) }  // dirty a block of this size
                    let z = Tensor(zeros: [count])
                    let bad = (0..<count).first { z.floats[$0].bitPattern != 0 }
                    XCTAssertNil(bad, "element \(bad ?? 0) of \(count) not zero, \(threads) threads")
                }
            }
        }
    }

    func testReuseBySize() {
        let pool = StoragePool(limitBytes: 8 * mb)
        let a = pool.acquire(mb), b = pool.acquire(2 * mb)
        pool.release(a, bytes: mb)
        pool.release(b, bytes: 2 * mb)
        XCTAssertEqual(pool.idleBytes, 3 * mb)
        XCTAssertEqual(pool.acquire(2 * mb), b)
        XCTAssertEqual(pool.acquire(mb - 100), a, "same rounded size")
        XCTAssertEqual(pool.idleBytes, 0)
        let small = pool.acquire(1000), huge = pool.acquire(9 * mb)
        pool.release(small, bytes: 1000)
        pool.release(huge, bytes: 9 * mb)
        XCTAssertEqual(pool.idleBytes, 0)
        pool.release(a, bytes: mb)
        pool.release(b, bytes: 2 * mb)
        pool.drain()
        XCTAssertEqual(pool.idleBytes, 0)
    }

    /// When a released block does not fit under the limit, the blocks idle the longest go
    /// first: stale sizes (one evaluation pass) cannot crowd out the ones reused every step.
    func testOldestIdleBlocksAreEvictedFirst() {
        let pool = StoragePool(limitBytes: 8 * mb)
        let stale = (0..<3).map { _ in pool.acquire(2 * mb) }   // 6 MiB of a size never asked for again
        for p in stale { pool.release(p, bytes: 2 * mb) }
        XCTAssertEqual(pool.idleBytes, 6 * mb)
        let step = pool.acquire(3 * mb)                          // the block every step needs
        pool.release(step, bytes: 3 * mb)                        // 9 MiB > 8: the oldest stale block goes
        XCTAssertEqual(pool.idleBytes, 7 * mb)
        XCTAssertEqual(pool.acquire(3 * mb), step, "the recent block was kept")
        XCTAssertEqual(pool.acquire(2 * mb), stale[2], "most recent of a size first")
        XCTAssertEqual(pool.acquire(2 * mb), stale[1])
        XCTAssertEqual(pool.idleBytes, 0)
        for (p, n) in [(step, 3), (stale[2], 2), (stale[1], 2)] { pool.release(p, bytes: n * mb) }
        XCTAssertLessThanOrEqual(pool.idleBytes, 8 * mb)
        pool.drain()
    }

    /// `keepIdle(atLeast:)` raises the limit (a block over the old limit is then kept) and
    /// never lowers it.
    func testKeepIdleRaisesTheLimitOnly() {
        let pool = StoragePool(limitBytes: 8 * mb)
        let big = pool.acquire(9 * mb)
        pool.release(big, bytes: 9 * mb)
        XCTAssertEqual(pool.idleBytes, 0, "over the limit: freed")
        pool.keepIdle(atLeast: 16 * mb)
        XCTAssertEqual(pool.limitBytes, 16 * mb)
        let again = pool.acquire(9 * mb)
        pool.release(again, bytes: 9 * mb)
        XCTAssertEqual(pool.idleBytes, 9 * mb, "under the raised limit: kept")
        pool.keepIdle(atLeast: 4 * mb)
        XCTAssertEqual(pool.limitBytes, 16 * mb, "never lowered")
        pool.drain()
    }

    /// A repeated piece of work, measured by `keepIdle(forRepeated:)`, stops taking fresh memory
    /// after its first runs: here a block of 4 MiB released before one of 2 MiB is taken (the
    /// high-water mark alone, 4 MiB, would evict the first for the second every run) and 1 MiB
    /// kept live to the end (a gradient), under a limit of 1 MiB. The same work run plainly
    /// takes fresh memory every run.
    func testKeepIdleForRepeatedWorkStopsFreshAllocations() {
        func step(_ pool: StoragePool) -> UnsafeMutableRawPointer {
            let a = pool.acquire(4 * mb)
            pool.release(a, bytes: 4 * mb)
            let b = pool.acquire(2 * mb)
            pool.release(b, bytes: 2 * mb)
            return pool.acquire(mb)
        }
        for measured in [true, false] {
            let pool = StoragePool(limitBytes: mb)
            var freshPerRun: [Int] = []
            for _ in 0..<4 {
                let before = pool.freshBytes
                let kept = measured ? pool.keepIdle(forRepeated: { step(pool) }) : step(pool)
                pool.release(kept, bytes: mb)  // zeroGrad
                freshPerRun.append(pool.freshBytes - before)
            }
            if measured {
                XCTAssertEqual(freshPerRun.first, 7 * mb)
                XCTAssertEqual(Array(freshPerRun.suffix(2)), [0, 0], "fresh bytes per run \(freshPerRun)")
                XCTAssertEqual(pool.limitBytes, 7 * mb, "4 + 2 MiB released, 1 MiB live at the end")
            } else {
                XCTAssertTrue(freshPerRun.allSatisfy { $0 >= 6 * mb }, "fresh bytes per run \(freshPerRun)")
            }
            pool.drain()
        }
    }

    /// Size classes: at least the request, at most 12.5 % (plus the granule) more, monotone,
    /// idempotent, and requests a few percent apart share a class.
    func testSizeClassesBoundTheWasteAndGroupNearbySizes() {
        var previous = 0
        for bytes in stride(from: 1, through: 64 * mb, by: 4099) {
            let n = StoragePool.sizeClass(bytes)
            XCTAssertGreaterThanOrEqual(n, bytes)
            XCTAssertLessThanOrEqual(Double(n), Double(bytes) * 1.125 + Double(StoragePool.granule), "\(bytes)")
            XCTAssertGreaterThanOrEqual(n, previous, "monotone at \(bytes)")
            XCTAssertEqual(StoragePool.sizeClass(n), n, "idempotent at \(bytes)")
            previous = n
        }
        XCTAssertEqual(StoragePool.sizeClass(9 * mb + 1), StoragePool.sizeClass(10 * mb), "one class for 9–10 MiB")
        XCTAssertEqual(StoragePool.sizeClass(10 * mb), 10 * mb)
    }

    /// A `Workspace` takes its block from the shared pool and hands it back when released;
    /// the next workspace of a nearby size gets the same block.
    func testWorkspaceRecyclesThroughTheSharedPool() {
        let pool = StoragePool.shared
        pool.drain()
        var first: Workspace? = Workspace(floats: 1_000_000)
        let block = first!.floats
        XCTAssertGreaterThanOrEqual(first!.capacity, 1_000_000)
        first = nil
        XCTAssertEqual(pool.idleBytes, StoragePool.sizeClass(4_000_000))
        let second = Workspace(floats: 1_020_000)  // 2 % more assignments: same class
        XCTAssertEqual(second.floats, block)
        XCTAssertEqual(pool.idleBytes, 0)
        withExtendedLifetime(second) {}
        pool.drain()
    }
}
