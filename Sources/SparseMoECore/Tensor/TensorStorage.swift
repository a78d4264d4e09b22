internal import CMoEKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A flat, 64-byte aligned buffer of elements of one `DType`. Large buffers are
/// recycled through `StoragePool` (no page faults on reuse).
///
/// Weight formats with scales (`int8`, `int4`) hold rows of `rowLength` elements: the
/// packed rows in `raw` and the per-row (int8) or per-group (int4) scales in `scales`.
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
    /// Elements per row (the last axis) for `int8`/`int4`; 1 otherwise.
    package let rowLength: Int
    /// Bytes at `raw` (scales excluded).
    package let byteCount: Int
    /// Base address, valid for `byteCount` bytes.
    package let raw: UnsafeMutableRawPointer
    /// Scales of `int8` (float32 `[rows]`) and `int4` (float16 `[rows, ⌈rowLength/32⌉]`); nil otherwise.
    package let scales: TensorStorage?
    /// Where `raw` came from: the pool, or an anonymous mapping that is not touched until written.
    private let mapped: Bool
    /// Made by `init(…, lazy: true)`: a placeholder parameter that loading fills.
    package let isPlaceholder: Bool

    /// Allocates `count` elements of a plain dtype (not `int8`/`int4`), zero-filled.
    package convenience init(dtype: DType, count: Int) {
        precondition(dtype.elementBytes != nil, "storage of \(dtype) needs its row length: init(dtype:rows:rowLength:)")
        self.init(dtype: dtype, rows: count, rowLength: 1, lazy: false)
    }

    /// Allocates `rows` rows of `rowLength` elements in `dtype` (scales included), zero-filled.
    /// `lazy`: memory comes from an anonymous mapping whose pages the system provides (as
    /// zeros) on first write, so a tensor that is about to be replaced by loaded weights
    /// costs no resident memory. `zeroed: false` leaves the contents unspecified, for an op's
    /// output that its kernel writes in full.
    package init(dtype: DType, rows: Int, rowLength: Int, lazy: Bool = false, zeroed: Bool = true) {
        precondition(rows >= 0 && rowLength >= 0, "negative element count")
        self.dtype = dtype
        self.count = rows * rowLength
        let plain = dtype.elementBytes != nil
        self.rowLength = plain ? 1 : rowLength
        self.byteCount = plain ? count * dtype.elementBytes! : rows * dtype.rowBytes(rowLength)
        isPlaceholder = lazy
        let bytes = max(byteCount, 1)
        if lazy && bytes >= StoragePool.minimumBytes {
            raw = TensorStorage.mapZeros(bytes)
            mapped = true
        } else {
            raw = StoragePool.shared.acquire(bytes)
            if zeroed { moe_zero_bytes(raw, Int64(bytes)) }
            mapped = false
        }
        if let s = dtype.scaleDType {
            scales = TensorStorage(dtype: s, rows: rows * dtype.scalesPerRow(rowLength), rowLength: 1, lazy: lazy, zeroed: zeroed)
        } else {
            scales = nil
        }
    }

    deinit {
        if mapped { munmap(raw, max(byteCount, 1)) } else { StoragePool.shared.release(raw, bytes: max(byteCount, 1)) }
    }

    private static func mapZeros(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else {
            fatalError("out of memory: cannot map \(bytes) bytes for a tensor (\(String(cString: strerror(errno))))")
        }
        return p
    }

    /// Bytes of storage including scales.
    package var totalBytes: Int { byteCount + (scales?.byteCount ?? 0) }

    var floats: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "storage holds \(dtype), not float32")
        return raw.assumingMemoryBound(to: Float.self)
    }

    var int32s: UnsafeMutablePointer<Int32> {
        precondition(dtype == .int32, "storage holds \(dtype), not int32")
        return raw.assumingMemoryBound(to: Int32.self)
    }
}
