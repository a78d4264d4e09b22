import Foundation

/// Recycled scratch memory for `routedExperts`.
///
/// Each call needs A·(2C + 3F) floats saved for backward and A·(C + 2F) more while the
/// backward runs — hundreds of MB for a fine-grained layer. Fresh memory costs a page fault
/// per 4 KiB on first touch (measured on the 2-core dev VM: ~80 ms for 117 MB, as long as the
/// expert GEMMs themselves), so the op takes its buffers from this pool and hands them back
/// when the saved state of the call is released (after backward, or at once under no-grad).
/// Buffers are uninitialised: the kernels write every element before reading it.
///
/// The pool keeps at most `limitBytes` of idle memory (default 1 GiB); `drain()` frees it all.
public final class RoutedExpertsScratch: @unchecked Sendable {
    /// The pool used by `routedExperts`.
    public static let shared = RoutedExpertsScratch()

    private let lock = NSLock()
    private var idle: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = []
    private var idleBytes = 0
    private var limit = 1 << 30

    /// Most idle bytes kept for reuse; larger returns are freed.
    public var limitBytes: Int {
        get { lock.withLock { limit } }
        set { lock.withLock { limit = max(0, newValue) } }
    }

    /// Idle bytes currently held.
    public var heldBytes: Int { lock.withLock { idleBytes } }

    /// Frees every idle buffer.
    public func drain() {
        let blocks: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = lock.withLock {
            defer { idle = []; idleBytes = 0 }
            return idle
        }
        for b in blocks { free(b.pointer) }
    }

    /// A buffer of at least `count` floats: the smallest idle one that fits and is at most
    /// twice the request, else fresh memory (64-byte aligned, uninitialised).
    func acquire(_ count: Int) -> ScratchBuffer {
        let n = max(count, 16)
        let reused: (pointer: UnsafeMutablePointer<Float>, capacity: Int)? = lock.withLock {
            var best: Int?
            for (i, b) in idle.enumerated() where b.capacity >= n && b.capacity <= 2 * n {
                if best == nil || b.capacity < idle[best!].capacity { best = i }
            }
            guard let i = best else { return nil }
            idleBytes -= idle[i].capacity * 4
            return idle.remove(at: i)
        }
        if let r = reused { return ScratchBuffer(pool: self, pointer: r.pointer, capacity: r.capacity) }
        var raw: UnsafeMutableRawPointer?
        let rc = posix_memalign(&raw, 64, n * 4)
        precondition(rc == 0 && raw != nil, "out of memory allocating \(n * 4) bytes of routed-experts scratch")
        return ScratchBuffer(pool: self, pointer: raw!.bindMemory(to: Float.self, capacity: n), capacity: n)
    }

    fileprivate func recycle(_ pointer: UnsafeMutablePointer<Float>, _ capacity: Int) {
        let keep: Bool = lock.withLock {
            guard idleBytes + capacity * 4 <= limit else { return false }
            idle.append((pointer, capacity))
            idleBytes += capacity * 4
            return true
        }
        if !keep { free(pointer) }
    }
}

/// One buffer from `RoutedExpertsScratch`; returned to the pool when released.
final class ScratchBuffer: @unchecked Sendable {
    let floats: UnsafeMutablePointer<Float>
    let capacity: Int
    private let pool: RoutedExpertsScratch

    fileprivate init(pool: RoutedExpertsScratch, pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        self.pool = pool
        self.floats = pointer
        self.capacity = capacity
    }

    deinit { pool.recycle(floats, capacity) }
}
