internal import CMoEKernels

/// An n-dimensional, row-major, contiguous array with optional gradient tracking.
///
/// A tensor is a view `(storage, offset, shape)`: reshapes and leading-axis slices
/// share storage and cost nothing. Every tensor is contiguous, so the C kernels see
/// plain row-major buffers.
///
/// Autograd: a tensor produced by a library op while gradients are enabled records
/// that op (its `gradNode`). `backward()` on a scalar walks the recorded ops in
/// reverse and accumulates `grad` of every tensor with `requiresGrad`.
///
/// Elements are read with `scalars`, `item` or `withUnsafeFloats`. Nothing public hands
/// out a writable pointer: a tensor changes only through the named in-place calls
/// `zero()` and `assign(_:)` (and, inside the library, optimiser steps and loading).
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    /// The elements (replaced only when loading weights: `adoptStorage(of:)`).
    package private(set) var storage: TensorStorage
    /// Offset of the first element in `storage`, in elements.
    public private(set) var offset: Int
    public let shape: [Int]
    /// Whether gradients flow to (or through) this tensor.
    public var requiresGrad: Bool
    /// Accumulated gradient, same shape; `nil` until a backward pass reaches it.
    public internal(set) var grad: Tensor?
    /// The recorded op that produced this tensor (nil for leaves).
    var gradNode: GradNode?
    /// Optional name, used in error messages and parameter listings.
    public var name: String?

    /// A view of `storage` (library use: reshapes, slices, checkpoint views, the KV cache).
    package init(storage: TensorStorage, shape: [Int], offset: Int = 0, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(offset + shape.reduce(1, *) <= storage.count, "view exceeds storage")
        self.storage = storage
        self.shape = shape
        self.offset = offset
        self.requiresGrad = requiresGrad
    }

    /// A zero-filled tensor. For `int8`/`int4` the last axis is the row that carries the
    /// scales (a weight `[..., N, K]`).
    public convenience init(zeros shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false) {
        self.init(storage: TensorStorage(dtype: dtype, rows: shape.dropLast().reduce(1, *), rowLength: shape.last ?? 1),
                  shape: shape, requiresGrad: requiresGrad)
    }

    /// A float32 tensor whose elements are unspecified: the output of an op whose kernel
    /// writes every element (no zero fill first).
    package convenience init(uninitialized shape: [Int]) {
        self.init(storage: TensorStorage(dtype: .float32, rows: shape.dropLast().reduce(1, *), rowLength: shape.last ?? 1,
                                         zeroed: false),
                  shape: shape)
    }

    /// A zero tensor whose memory is provided by the system on first write (no resident
    /// memory until then): a parameter that loading will fill or replace.
    package convenience init(placeholder shape: [Int], requiresGrad: Bool = false) {
        self.init(storage: TensorStorage(dtype: .float32, rows: shape.reduce(1, *), rowLength: 1, lazy: true),
                  shape: shape, requiresGrad: requiresGrad)
    }

    /// A float32 tensor filled from `values` (row-major); `values.count` must equal the
    /// shape's element count.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        Check.trapping { try Check.fills(values.count, shape, "values") }
        let n = values.count
        self.init(zeros: shape, requiresGrad: requiresGrad)
        values.withUnsafeBufferPointer { src in
            if n > 0 { floats.update(from: src.baseAddress!, count: n) }
        }
    }

    /// An int32 tensor (token ids, expert indices); `values.count` must equal the shape's
    /// element count.
    public convenience init(indices values: [Int32], shape: [Int]) {
        Check.trapping { try Check.fills(values.count, shape, "indices") }
        let n = values.count
        self.init(zeros: shape, dtype: .int32)
        values.withUnsafeBufferPointer { src in
            if n > 0 { int32s.update(from: src.baseAddress!, count: n) }
        }
    }

    /// A float32 tensor filled with `value`.
    public convenience init(repeating value: Float, shape: [Int], requiresGrad: Bool = false) {
        self.init(zeros: shape, requiresGrad: requiresGrad)
        let p = floats
        for i in 0..<count { p[i] = value }
    }

    /// A scalar (rank-0) float32 tensor.
    public convenience init(scalar value: Float) {
        self.init(repeating: value, shape: [])
    }

    public var dtype: DType { storage.dtype }
    public var rank: Int { shape.count }
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Element pointer for float32 tensors: the library's glue to the kernels. Write
    /// through it only into a tensor being produced (an op's output, a gradient buffer)
    /// or on an explicit in-place path (`withUnsafeMutableFloats`).
    package var floats: UnsafeMutablePointer<Float> { storage.floats + offset }
    /// Element pointer for int32 tensors; the rules of `floats` apply.
    package var int32s: UnsafeMutablePointer<Int32> { storage.int32s + offset }

    /// Calls `body` with the elements of a float32 tensor, read-only, valid only during the call.
    public func withUnsafeFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: floats, count: count))
    }

    /// Calls `body` with the elements of an int32 tensor, read-only, valid only during the call.
    public func withUnsafeIndices<R>(_ body: (UnsafeBufferPointer<Int32>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: int32s, count: count))
    }

    /// Calls `body` with the elements of a float32 tensor to change them **in place**
    /// (every view of the same storage sees the change; autograd does not record it).
    /// For the optimiser and for loading weights.
    package func withUnsafeMutableFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: floats, count: count))
    }

    /// `withUnsafeMutableFloats` for int32 tensors: changes the elements in place.
    package func withUnsafeMutableIndices<R>(_ body: (UnsafeMutableBufferPointer<Int32>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: int32s, count: count))
    }

    /// A copy of the elements as an array (float32 tensors).
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: floats, count: count)) }
    /// A copy of the elements as an array (int32 tensors).
    public var indexScalars: [Int32] { Array(UnsafeBufferPointer(start: int32s, count: count)) }

    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item of a tensor with shape \(shape)")
        return floats[0]
    }

    /// Whether this is a placeholder parameter (`init(placeholder:)`) not yet given values.
    package var isPlaceholder: Bool { storage.isPlaceholder }

    /// Bytes this tensor's elements occupy in its storage dtype, scales included.
    public var storageBytes: Int { dtype.storageBytes(shape: shape) }

    /// Address of this tensor's first element (all dtypes; quantized tensors start on a row).
    package var rawBase: UnsafeMutableRawPointer {
        if let b = dtype.elementBytes { return storage.raw + offset * b }
        precondition(offset % storage.rowLength == 0, "a \(dtype) view must start on a row")
        return storage.raw + (offset / storage.rowLength) * dtype.rowBytes(storage.rowLength)
    }

    /// Address of this tensor's first scale (`int8`, `int4`), nil for other dtypes.
    package var scalesBase: UnsafeMutableRawPointer? {
        guard let s = storage.scales, let sb = s.dtype.elementBytes else { return nil }
        return s.raw + (offset / storage.rowLength) * dtype.scalesPerRow(storage.rowLength) * sb
    }

    /// Bytes of elements (without scales) of this view.
    private var elementByteCount: Int {
        if let b = dtype.elementBytes { return count * b }
        return (shape.last.map { count / max($0, 1) } ?? 1) * dtype.rowBytes(shape.last ?? 1)
    }

    /// Bytes of scales of this view.
    private var scaleByteCount: Int {
        guard let s = dtype.scaleDType, let last = shape.last else { return 0 }
        return count / max(last, 1) * dtype.scalesPerRow(last) * s.elementBytes!
    }

    /// A detached deep copy (no gradient history, `requiresGrad` false).
    public func copy() -> Tensor {
        let t = Tensor(zeros: shape, dtype: dtype)
        t.rawBase.copyMemory(from: rawBase, byteCount: elementByteCount)
        if let d = t.scalesBase, let s = scalesBase { d.copyMemory(from: s, byteCount: scaleByteCount) }
        return t
    }

    /// Makes this tensor a view of `other`'s storage (same shape), dropping its own: how
    /// loading gives a parameter the dtype and the bytes of a checkpoint without a copy
    /// in between. Modules keep referring to this object and see the new elements.
    /// Not recorded; only for tensors without gradient history.
    package func adoptStorage(of other: Tensor) {
        precondition(other.shape == shape, "adoptStorage: shape \(other.shape) vs \(shape)")
        precondition(gradNode == nil, "adoptStorage on a tensor produced by an op")
        storage = other.storage
        offset = other.offset
        if dtype != .float32 { requiresGrad = false; grad = nil }
    }

    /// A view of the same storage without gradient history.
    public func detached() -> Tensor {
        Tensor(storage: storage, shape: shape, offset: offset)
    }

    /// Overwrites this tensor's elements with `other`'s (same shape and dtype), in place.
    /// Not recorded.
    public func assign(_ other: Tensor) {
        Check.require(other.shape == shape && other.dtype == dtype, "assign",
                      "source \(other.shape) \(other.dtype) vs destination \(shape) \(dtype)")
        rawBase.copyMemory(from: other.rawBase, byteCount: elementByteCount)
        if let d = scalesBase, let s = other.scalesBase { d.copyMemory(from: s, byteCount: scaleByteCount) }
    }

    /// Sets every element to zero, in place. Not recorded.
    public func zero() {
        memset(rawBase, 0, elementByteCount)
        if let d = scalesBase { memset(d, 0, scaleByteCount) }
    }

    /// Clears the accumulated gradient.
    public func zeroGrad() { grad = nil }

    /// The gradient buffer, allocated as zeros on first use (used by backward kernels).
    package func gradBuffer() -> Tensor {
        if let g = grad { return g }
        let g = Tensor(zeros: shape)
        grad = g
        return g
    }

    /// The gradient buffer for a backward kernel that can write it or add to it: `fresh` when
    /// the tensor had no gradient yet — the buffer is then uninitialized and the kernel must
    /// write every element (β = 0) — else the existing gradient, to accumulate into (β = 1).
    /// Saves `gradBuffer()`'s zero fill, and the kernel's read of the zeros.
    package func gradForWriting() -> (floats: UnsafeMutablePointer<Float>, fresh: Bool) {
        if let g = grad { return (g.floats, false) }
        let g = Tensor(uninitialized: shape)
        grad = g
        return (g.floats, true)
    }

    /// grad += g (g of the same element count). The first gradient becomes `grad` as a view
    /// of `g`'s storage (no copy, no zeros): only for a `g` that nothing reads or writes
    /// afterwards, such as an op output's gradient, which backward drops once propagated.
    package func accumulateGrad(handingOver g: Tensor) {
        guard let existing = grad else {
            grad = Tensor(storage: g.storage, shape: shape, offset: g.offset)
            return
        }
        moe_add_forward(existing.floats, existing.floats, g.floats, 1, 1, Int64(count), 0)  // grad += g, vectorised
    }

    public var description: String {
        let preview: [String]
        switch dtype {
        case .int32: preview = indexScalars.prefix(8).map { "\($0)" }
        case .float32: preview = scalars.prefix(8).map { "\($0)" }
        default: preview = rank == 0 || count == 0 ? [] : dequantized().scalars.prefix(8).map { "\($0)" }
        }
        return "Tensor(\(shape), \(dtype)\(requiresGrad ? ", requiresGrad" : ""): [\(preview.joined(separator: ", "))\(count > 8 ? ", …" : "")])"
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
