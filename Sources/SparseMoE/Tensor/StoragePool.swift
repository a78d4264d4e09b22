import Foundation

/// Recycles large tensor buffers.
///
/// A training step allocates the same activation and gradient buffers every time.
/// Fresh memory from the system costs a page fault per 4 KiB on first touch —
/// measured here at ~80 ms per 117 MB, as long as the expert GEMMs that fill it — so
/// buffers of at least `minimumBytes` go back to this pool when their storage dies
/// and are handed out again for the next request of the same rounded size.
/// At most `limitBytes` of idle memory is kept; `drain()` frees it. Thread-safe.
final class StoragePool: @unchecked Sendable {
    static let shared = StoragePool()
    static let minimumBytes = 256 << 10
    static let granule = 64 << 10

    private let lock = NSLock()
    private var idle: [Int: [UnsafeMutableRawPointer]] = [:]
    private var idleBytes = 0
    var limitBytes = 1 << 30

    /// Bytes actually allocated for a request of `bytes`.
    static func roundedSize(_ bytes: Int) -> Int {
        bytes < minimumBytes ? (bytes + 63) & ~63 : (bytes + granule - 1) / granule * granule
    }

    /// A 64-byte aligned block of `roundedSize(bytes)` bytes, contents unspecified.
    func acquire(_ bytes: Int) -> UnsafeMutableRawPointer {
        let size = Self.roundedSize(max(bytes, 1))
        if size >= Self.minimumBytes {
            let reused: UnsafeMutableRawPointer? = lock.withLock {
                guard let p = idle[size]?.popLast() else { return nil }
                idleBytes -= size
                return p
            }
            if let p = reused { return p }
        }
        var p: UnsafeMutableRawPointer?
        let rc = posix_memalign(&p, 64, size)
        precondition(rc == 0 && p != nil, "out of memory allocating \(size) bytes")
        return p!
    }

    /// Returns a block obtained from `acquire(bytes)`.
    func release(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let size = Self.roundedSize(max(bytes, 1))
        if size >= Self.minimumBytes {
            let kept: Bool = lock.withLock {
                guard idleBytes + size <= limitBytes else { return false }
                idle[size, default: []].append(p)
                idleBytes += size
                return true
            }
            if kept { return }
        }
        free(p)
    }

    /// Frees every idle block.
    func drain() {
        let blocks: [UnsafeMutableRawPointer] = lock.withLock {
            defer { idle = [:]; idleBytes = 0 }
            return idle.values.flatMap { $0 }
        }
        for p in blocks { free(p) }
    }
}
