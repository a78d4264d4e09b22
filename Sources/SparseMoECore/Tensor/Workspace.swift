import Foundation

/// Uninitialised float32 scratch taken from `StoragePool.shared` (size rounded up to
/// `StoragePool.sizeClass`) and handed back when the last reference goes: after backward
/// for saved activations, at once under no-grad. Kernels write every element before
/// reading it.
final class Workspace: @unchecked Sendable {
    let floats: UnsafeMutablePointer<Float>
    /// Floats available (≥ the request).
    let capacity: Int
    private let bytes: Int

    init(floats count: Int) {
        bytes = StoragePool.sizeClass(max(count, 1) * MemoryLayout<Float>.stride)
        capacity = bytes / MemoryLayout<Float>.stride
        floats = StoragePool.shared.acquire(bytes).bindMemory(to: Float.self, capacity: capacity)
    }

    deinit { StoragePool.shared.release(UnsafeMutableRawPointer(floats), bytes: bytes) }
}
