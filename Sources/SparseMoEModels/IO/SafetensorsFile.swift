#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import SparseMoECore

/// A safetensors file opened for reading: memory-mapped (read-only, private), header
/// parsed and validated on open (see `SafetensorsHeader` for the checks). Tensor
/// bytes are read only when asked for, and every read stays inside the validated
/// byte range, so a malformed file gives an error, never an out-of-bounds read.
///
/// Conversions by `tensor(_:)`: F32, F16, BF16 (and F64) → float32 tensor;
/// I32 → int32 tensor; I64 → int32 tensor when every value fits, else an error.
/// Other dtypes can be inspected (`info`, `withRawBytes`) but not converted.
///
/// Thread safety: the mapping is read-only; concurrent reads are safe.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let header: SafetensorsHeader
    private let base: UnsafeRawPointer?
    private let size: Int
    private let ownsMapping: Bool

    /// Memory-maps and validates the file at `url`.
    public init(url: URL) throws {
        let path = url.path
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw SparseMoEError.file(path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SparseMoEError.file(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        let size = Int(st.st_size)
        guard size >= 8 else {
            throw SparseMoEError.file(path: path, message: "truncated safetensors file: \(size) bytes, expected at least 8 for the header length")
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw SparseMoEError.file(path: path, message: "cannot memory-map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        do {
            self.header = try SafetensorsHeader.parse(UnsafeRawBufferPointer(start: p, count: size), path: path)
        } catch {
            munmap(p, size)
            throw error
        }
        self.base = UnsafeRawPointer(p)
        self.size = size
        self.ownsMapping = true
    }

    /// Parses a safetensors image held in memory (tests, fuzzing, data from elsewhere).
    /// The bytes are copied; `path` is only used in messages.
    public init(bytes: Data, path: String = "<memory>") throws {
        self.path = path
        let size = bytes.count
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 64)
        bytes.withUnsafeBytes { src in if size > 0 { p.copyMemory(from: src.baseAddress!, byteCount: size) } }
        do {
            self.header = try SafetensorsHeader.parse(UnsafeRawBufferPointer(start: p, count: size), path: path)
        } catch {
            p.deallocate()
            throw error
        }
        self.base = UnsafeRawPointer(p)
        self.size = size
        self.ownsMapping = false
    }

    deinit {
        guard let base else { return }
        if ownsMapping { munmap(UnsafeMutableRawPointer(mutating: base), size) } else { base.deallocate() }
    }

    /// Tensor names in data-offset order.
    public var names: [String] { header.tensors.map(\.name) }
    /// The `__metadata__` map.
    public var metadata: [String: String] { header.metadata }
    /// Header entry of `name`, or nil.
    public func info(_ name: String) -> SafetensorsTensorInfo? { header[name] }
    /// Sum of the element counts of all tensors.
    public var totalElements: Int { header.tensors.reduce(0) { $0 + $1.elementCount } }

    private func requireInfo(_ name: String) throws -> SafetensorsTensorInfo {
        guard let info = header[name] else {
            throw SparseMoEError.file(path: path, message: "tensor '\(name)' not found (file holds \(header.tensors.count) tensors)")
        }
        return info
    }

    /// Calls `body` with the tensor's raw little-endian bytes (valid only inside `body`).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try requireInfo(name)
        let start = base! + header.dataStart + info.dataOffsets.lowerBound
        precondition(header.dataStart + info.dataOffsets.upperBound <= size, "validated range exceeds mapping")
        return try body(UnsafeRawBufferPointer(start: start, count: info.dataOffsets.count))
    }

    /// The tensor's raw bytes inside the mapping, valid as long as this file object lives
    /// (loading reads weights from here without a copy in between).
    package func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try requireInfo(name)
        precondition(header.dataStart + info.dataOffsets.upperBound <= size, "validated range exceeds mapping")
        return UnsafeRawBufferPointer(start: base! + header.dataStart + info.dataOffsets.lowerBound, count: info.dataOffsets.count)
    }

    /// Gives back to the system the pages of the mapping that lie wholly inside tensor
    /// `name` (after loading copied it), so that a file read once does not stay resident
    /// beside the copy. Reading the tensor again pages it in from the file.
    package func releasePages(_ name: String) {
        guard ownsMapping, let info = header[name], let base else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = header.dataStart + info.dataOffsets.lowerBound, end = header.dataStart + info.dataOffsets.upperBound
        let first = (start + page - 1) / page * page, last = end / page * page
        if last > first { madvise(UnsafeMutableRawPointer(mutating: base + first), last - first, Int32(MADV_DONTNEED)) }
    }

    /// Reads tensor `name` and converts it (see the type's doc comment).
    public func tensor(_ name: String) throws -> Tensor {
        let info = try requireInfo(name)
        return try withRawBytes(name) { bytes in
            try SafetensorsFile.convert(bytes, info: info, path: path)
        }
    }

    /// Reads every tensor, keyed by name.
    public func allTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for t in header.tensors { out[t.name] = try tensor(t.name) }
        return out
    }

    static func convert(_ bytes: UnsafeRawBufferPointer, info: SafetensorsTensorInfo, path: String) throws -> Tensor {
        let n = info.elementCount
        precondition(bytes.count == n * info.dtype.byteSize)
        #if _endian(big)
        throw SparseMoEError.file(path: path, message: "safetensors reading needs a little-endian host")
        #else
        switch info.dtype {
        case .f32:
            let t = Tensor(zeros: info.shape)
            if n > 0 { t.withUnsafeMutableFloats { UnsafeMutableRawBufferPointer($0).copyMemory(from: bytes) } }
            return t
        case .f16, .bf16:
            let t = Tensor(zeros: info.shape)
            t.withUnsafeMutableFloats { dst in
                if info.dtype == .f16 {
                    for i in 0..<n { dst[i] = HalfPrecision.float(fromFloat16Bits: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
                } else {
                    for i in 0..<n { dst[i] = HalfPrecision.float(fromBFloat16Bits: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
                }
            }
            return t
        case .f64:
            let t = Tensor(zeros: info.shape)
            t.withUnsafeMutableFloats { dst in
                for i in 0..<n { dst[i] = Float(bytes.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            }
            return t
        case .i32:
            let t = Tensor(zeros: info.shape, dtype: .int32)
            if n > 0 { t.withUnsafeMutableIndices { UnsafeMutableRawBufferPointer($0).copyMemory(from: bytes) } }
            return t
        case .i64:
            let t = Tensor(zeros: info.shape, dtype: .int32)
            try t.withUnsafeMutableIndices { dst in
                for i in 0..<n {
                    let v = bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)
                    guard let narrow = Int32(exactly: v) else {
                        throw SparseMoEError.file(path: path, message: "tensor '\(info.name)': I64 value \(v) at element \(i) does not fit the library's int32 index tensors")
                    }
                    dst[i] = narrow
                }
            }
            return t
        default:
            throw SparseMoEError.file(path: path, message: "tensor '\(info.name)': dtype \(info.dtype.rawValue) cannot be converted (supported: F32, F16, BF16, F64 → float32; I32, I64 → int32)")
        }
        #endif
    }
}
