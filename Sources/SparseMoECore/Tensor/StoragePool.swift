import Foundation
import Synchronization

/// Recycles large tensor buffers.
///
/// A training step allocates the same activation and gradient buffers every time.
/// Fresh memory from the system costs a page fault per 4 KiB on first touch —
/// measured here at ~80 ms per 117 MB, as long as the expert GEMMs that fill it — so
/// buffers of at least `minimumBytes` go back to this pool when their storage dies
/// and are handed out again for the next request of the same rounded size.
/// At most `limitBytes` of idle memory is kept: when a released block does not fit, the
/// blocks idle the longest are freed first (sizes no longer requested, say those of an
/// evaluation pass, must not crowd out the ones every training step reuses).
/// `drain()` frees everything idle. Thread-safe.
package final class StoragePool: @unchecked Sendable {
    package static let shared = StoragePool()
    static let minimumBytes = 256 << 10
    static let granule = 64 << 10

    private let lock = NSLock()
    /// Idle blocks, oldest release first.
    private var idle: [(size: Int, pointer: UnsafeMutableRawPointer)] = []
    private(set) var idleBytes = 0
    /// Bytes of released blocks freed instead of kept idle, so far (guarded by `lock`).
    private var evictedBytes = 0
    /// Idle bytes kept at most (guarded by `lock`).
    private(set) var limitBytes: Int
    private let live = Atomic<Int>(0)
    /// Most bytes live at once since `keepIdle(forRepeated:)` began (a high-water mark of `live`).
    private let peak = Atomic<Int>(0)
    /// Bytes of fresh memory taken from the system for blocks of at least `minimumBytes`.
    private let fresh = Atomic<Int>(0)

    /// Bytes handed out by `acquire` and not yet released (rounded sizes): the memory held
    /// by live tensors and workspaces, idle blocks excluded. Tests count what a forward pass
    /// keeps for backward with it.
    package var liveBytes: Int { live.load(ordering: .relaxed) }

    /// Bytes of fresh memory taken from the system for poolable blocks (at least
    /// `minimumBytes`) so far: what the pool could not serve from idle blocks.
    package var freshBytes: Int { fresh.load(ordering: .relaxed) }

    init(limitBytes: Int = 1 << 30) { self.limitBytes = limitBytes }

    /// Bytes actually allocated for a request of `bytes`.
    static func roundedSize(_ bytes: Int) -> Int {
        bytes < minimumBytes ? (bytes + 63) & ~63 : (bytes + granule - 1) / granule * granule
    }

    /// `bytes` rounded up to the next size class m·2ˢ with 8 ≤ m ≤ 16 (at most 12.5 % more),
    /// then to `roundedSize`. For scratch whose size follows the data (routed experts: the
    /// assignments A change with the routing): nearby sizes share one class, so an idle
    /// block is found under the exact-size rule of `acquire`.
    static func sizeClass(_ bytes: Int) -> Int {
        let n = max(bytes, 1)
        let shift = max(0, Int.bitWidth - n.leadingZeroBitCount - 4)
        let mantissa = (n + (1 << shift) - 1) >> shift
        return roundedSize(mantissa << shift)
    }

    /// A 64-byte aligned block of `roundedSize(bytes)` bytes, contents unspecified: the most
    /// recently released idle block of that size, or fresh memory.
    ///
    /// Allocation does not throw: callers that allocate from user-given sizes check
    /// `MemoryBudget` first. A failure here (the system refused the memory) ends the
    /// process with a message naming the size and the memory available, in every build
    /// configuration (`fatalError`, not a precondition that release builds strip).
    func acquire(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard bytes <= Int.max - Self.granule else { Self.outOfMemory(bytes) }
        let size = Self.roundedSize(max(bytes, 1))
        let now = live.wrappingAdd(size, ordering: .relaxed).newValue
        var high = peak.load(ordering: .relaxed)
        while now > high {
            let (exchanged, seen) = peak.compareExchange(expected: high, desired: now, ordering: .relaxed)
            if exchanged { break }
            high = seen
        }
        if size >= Self.minimumBytes {
            let reused: UnsafeMutableRawPointer? = lock.withLock {
                guard let i = idle.lastIndex(where: { $0.size == size }) else { return nil }
                idleBytes -= size
                return idle.remove(at: i).pointer
            }
            if let p = reused { return p }
            fresh.wrappingAdd(size, ordering: .relaxed)
        }
        var p: UnsafeMutableRawPointer?
        let rc = posix_memalign(&p, 64, size)
        guard rc == 0, let p else { Self.outOfMemory(size) }
        return p
    }

    /// Ends the process: the system refused `bytes` of memory.
    static func outOfMemory(_ bytes: Int) -> Never {
        let (have, source) = MemoryBudget.available()
        fatalError("SparseMoE: out of memory: could not allocate a tensor of \(MemoryBudget.describe(bytes)); "
                   + "\(MemoryBudget.describe(have)) available (\(source))")
    }

    /// Raises the idle limit to at least `bytes`, never lowers it. A trainer keeps its step's
    /// buffers (activations and gradients) this way: the next step finds them all idle
    /// instead of faulting fresh memory in again.
    package func keepIdle(atLeast bytes: Int) {
        lock.withLock { limitBytes = max(limitBytes, bytes) }
    }

    /// Runs `body`, work that repeats (a training step's forward and backward), and raises the
    /// idle limit to the pooled memory held after it beyond what was live when it began — the
    /// blocks still live (gradients) and the idle ones (activations it released) — plus what the
    /// pool freed meanwhile for want of room; or to its high-water mark, if that was more. From
    /// the next run or the one after on, its blocks are found idle instead of faulted in fresh.
    /// Measured rather than estimated: size classes, rounding and scratch that no estimate counts
    /// are included. Measurements that overlap (data-parallel ranks as threads of one process)
    /// count each other's memory too: the limit only grows, and never past what the process holds.
    package func keepIdle<R>(forRepeated body: () throws -> R) rethrows -> R {
        let base = liveBytes
        let evictedBefore = lock.withLock { evictedBytes }
        peak.store(base, ordering: .relaxed)
        let result = try body()
        let released = lock.withLock { idleBytes + evictedBytes - evictedBefore }
        keepIdle(atLeast: max(released + liveBytes - base, peak.load(ordering: .relaxed) - base))
        return result
    }

    /// Returns a block obtained from `acquire(bytes)`.
    func release(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let size = Self.roundedSize(max(bytes, 1))
        live.wrappingSubtract(size, ordering: .relaxed)
        guard size >= Self.minimumBytes else { free(p); return }
        let evicted: [UnsafeMutableRawPointer] = lock.withLock {
            guard size <= limitBytes else { evictedBytes += size; return [p] }
            var n = 0, freed = 0
            while idleBytes - freed + size > limitBytes {
                freed += idle[n].size
                n += 1
            }
            let old = idle.prefix(n).map(\.pointer)
            idle.removeFirst(n)
            idle.append((size, p))
            idleBytes += size - freed
            evictedBytes += freed
            return old
        }
        for q in evicted { free(q) }
    }

    /// Writes `byte` over every idle block (tests: 0xFF makes every float a NaN, so a
    /// kernel that reads recycled memory before writing it shows).
    func fillIdleBlocks(byte: UInt8) {
        lock.withLock { for b in idle { memset(b.pointer, Int32(byte), b.size) } }
    }

    /// Frees every idle block.
    func drain() {
        let blocks: [UnsafeMutableRawPointer] = lock.withLock {
            defer { idle = []; idleBytes = 0 }
            return idle.map(\.pointer)
        }
        for p in blocks { free(p) }
    }
}
