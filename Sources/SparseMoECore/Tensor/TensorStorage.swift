/// A flat, 64-byte aligned buffer of elements of one `DType`. Large buffers are
/// recycled through `StoragePool` (no page faults on reuse).
///
/// Sharing rules (why this is `@unchecked Sendable`): a storage is shared by a
/// tensor and its reshape views, and its pointer is handed to the C kernels.
/// The library writes into a storage only while building the tensor that owns it
/// (op outputs, gradient buffers) or through explicit in-place APIs on parameters
/// (optimizer steps, loading). Reading concurrently is safe; writing while another
/// thread reads the same storage is a data race the caller must avoid, exactly as
/// with a mutable array passed to C. Only the library sees a storage (`package`):
/// users read tensors through `Tensor`'s read-only accessors.
package final class TensorStorage: @unchecked Sendable {
    package let dtype: DType
    /// Number of elements.
    package let count: Int
    /// Base address, valid for `count * dtype.byteSize` bytes.
    package let raw: UnsafeMutableRawPointer

    /// Allocates `count` elements, zero-filled.
    package init(dtype: DType, count: Int) {
        precondition(count >= 0, "negative element count")
        self.dtype = dtype
        self.count = count
        let bytes = max(count * dtype.byteSize, 1)
        raw = StoragePool.shared.acquire(bytes)
        memset(raw, 0, bytes)
    }

    deinit { StoragePool.shared.release(raw, bytes: max(count * dtype.byteSize, 1)) }

    var floats: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "storage holds \(dtype), not float32")
        return raw.assumingMemoryBound(to: Float.self)
    }

    var int32s: UnsafeMutablePointer<Int32> {
        precondition(dtype == .int32, "storage holds \(dtype), not int32")
        return raw.assumingMemoryBound(to: Int32.self)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
