internal import CMoEKernels

extension DType {
    /// The C kernels' `moe_weight_format`.
    var kernelFormat: Int32 {
        switch self {
        case .float32: return Int32(MOE_WEIGHT_F32.rawValue)
        case .bfloat16: return Int32(MOE_WEIGHT_BF16.rawValue)
        case .float16: return Int32(MOE_WEIGHT_F16.rawValue)
        case .int8: return Int32(MOE_WEIGHT_Q8.rawValue)
        case .int4: return Int32(MOE_WEIGHT_Q4.rawValue)
        case .int32: preconditionFailure("int32 is not a weight format")
        }
    }
}

/// Index of the first ±inf or NaN among the `count` elements of float32, bfloat16 or float16
/// `dtype` at `data` (any alignment), or nil when all are finite (C `moe_weight_find_nonfinite`).
package func firstNonFinite(_ data: UnsafeRawPointer, dtype: DType, count: Int) -> Int? {
    precondition([.float32, .bfloat16, .float16].contains(dtype), "\(dtype) is not a float format")
    let i = moe_weight_find_nonfinite(data, dtype.kernelFormat, Int64(count))
    return i < 0 ? nil : Int(i)
}

/// Conversions between weight storage dtypes (C kernels `moe_weight_quantize`,
/// `moe_weight_dequantize`). A weight `[..., N, K]` is N·… rows of K elements.
extension Tensor {
    /// Rows (all axes but the last) and row length (the last axis) of a weight.
    package var weightRows: (rows: Int, cols: Int) {
        let cols = shape.last ?? 1
        return (cols == 0 ? 0 : count / cols, cols)
    }

    /// The kernels' view of this weight.
    var kernelWeight: moe_weight {
        precondition(dtype.isWeightFormat, "\(dtype) is not a weight format")
        let (rows, cols) = weightRows
        return moe_weight(format: dtype.kernelFormat, data: rawBase, scales: scalesBase.map { UnsafeRawPointer($0) },
                          rows: Int64(rows), cols: Int64(cols))
    }

    /// A float32 copy of the values (for a quantized tensor, the dequantized values q·s).
    public func dequantized() -> Tensor {
        if dtype == .float32 { return copy() }
        Check.require(dtype.isWeightFormat, "dequantized", "\(dtype) tensors hold indices, not weights")
        let out = Tensor(zeros: shape)
        let (rows, _) = weightRows
        if rows > 0 && count > 0 { moe_weight_dequantize(out.floats, kernelWeight, 0, Int64(rows)) }
        return out
    }

    /// This weight stored as `target` (a new tensor; no gradient history): float32 →
    /// bf16/f16 round to nearest even; → int8 one scale per row, → int4 one per group of 32
    /// along the last axis (max-abs scaling, see `DType`). Any other source is dequantized first.
    public func converted(to target: DType) -> Tensor {
        Check.require(target.isWeightFormat && dtype.isWeightFormat, "converted",
                      "cannot convert \(dtype) to \(target): both must be weight dtypes (\(DType.weightFormats.map(\.rawValue)))")
        if target == dtype { return copy() }
        let source = dtype == .float32 ? self : dequantized()
        let out = Tensor(zeros: shape, dtype: target)
        let (rows, cols) = weightRows
        if rows > 0 && cols > 0 {
            moe_weight_quantize(out.rawBase, out.scalesBase, source.floats, Int64(rows), Int64(cols), target.kernelFormat)
        }
        return out
    }

    /// Writes rows `first ..< first + rows` of this weight from `source`: `rows` rows of the
    /// same length stored in `sourceDType` (any weight dtype; `scales` for int8/int4, laid
    /// out as in `DType`), converting on the way: the same dtype is a copy; otherwise blocks
    /// of rows pass through a bounded float32 scratch. In place, not recorded.
    package func writeRows(_ first: Int, count rows: Int, from source: UnsafeRawPointer, scales sourceScales: UnsafeRawPointer?,
                           dtype sourceDType: DType) {
        let (total, cols) = weightRows
        precondition(first >= 0 && first + rows <= total, "writeRows \(first)..<\(first + rows) of \(total) rows")
        precondition(sourceDType.isWeightFormat && (sourceScales != nil) == sourceDType.isQuantized, "writeRows: bad source")
        guard rows > 0, cols > 0 else { return }
        let rowBytes = dtype.rowBytes(cols)
        let scalesPerRow = dtype.scalesPerRow(cols), scaleBytes = dtype.scaleDType?.elementBytes ?? 0
        if sourceDType == dtype {
            (rawBase + first * rowBytes).copyMemory(from: source, byteCount: rows * rowBytes)
            if let d = scalesBase, let s = sourceScales {
                (d + first * scalesPerRow * scaleBytes).copyMemory(from: s, byteCount: rows * scalesPerRow * scaleBytes)
            }
            return
        }
        let sourceRowBytes = sourceDType.rowBytes(cols)
        let sourceScaleRow = sourceDType.scalesPerRow(cols) * (sourceDType.scaleDType?.elementBytes ?? 0)
        let block = max(1, min(rows, (1 << 20) / cols))
        let scratch = sourceDType == .float32 ? nil : Workspace(floats: block * cols)
        var r = 0
        while r < rows {
            let n = min(block, rows - r)
            let src = source + r * sourceRowBytes
            let floats: UnsafePointer<Float>
            if let scratch {
                let view = moe_weight(format: sourceDType.kernelFormat, data: src, scales: sourceScales.map { $0 + r * sourceScaleRow },
                                      rows: Int64(n), cols: Int64(cols))
                moe_weight_dequantize(scratch.floats, view, 0, Int64(n))
                floats = UnsafePointer(scratch.floats)
            } else {
                floats = src.assumingMemoryBound(to: Float.self)
            }
            let row = first + r
            moe_weight_quantize(rawBase + row * rowBytes, scalesBase.map { $0 + row * scalesPerRow * scaleBytes },
                                floats, Int64(n), Int64(cols), dtype.kernelFormat)
            r += n
        }
    }
}

/// y = x · Wᵀ for a weight W `[N, K]` stored in any weight dtype; x `[..., K]` → `[..., N]`.
///
/// float32 weights run `matmul` (differentiable), except for inference (`withNoGrad`, outside
/// a checkpointed forward) when x has at most `moe_weight_decode_max_m` rows (decoding): then, as for the
/// other dtypes, `moe_weight_matmul`, whose GEMV reads each weight once for all rows where
/// sgemm would first pack W. Other dtypes always run `moe_weight_matmul`, which dequantizes
/// W on the fly (decode: GEMV over W's rows, each byte read once; prefill: W dequantized
/// panel by panel into scratch, then sgemm); these are for inference: gradients do not flow
/// through them, and asking for them traps.
public func linearProjection(_ x: Tensor, _ weight: Tensor) -> Tensor {
    if weight.dtype == .float32 {
        let rows = weight.rank == 2 && weight.shape[1] > 0 ? x.count / weight.shape[1] : Int.max
        if !GradMode.inferenceKernels || rows > Int(moe_weight_decode_max_m(DType.float32.kernelFormat)) {
            return matmul(x, weight, transposeB: true)
        }
    }
    let op = "linearProjection"
    Check.trapping {
        try Check.float32(x, op, "x"); try Check.rank(weight, 2, op, "weight")
        try Check.argument(x.rank >= 1 && x.shape[x.rank - 1] == weight.shape[1], op,
                           "x \(x.shape) must end in K = \(weight.shape[1]) of weight \(weight.shape)")
        try Check.argument(!Tensor.needsGrad([x]), op,
                           "weights stored as \(weight.dtype) are for inference: run under withNoGrad, or convert them to float32 to train")
    }
    let (n, k) = (weight.shape[0], weight.shape[1])
    let m = x.count / max(k, 1)
    let out = Tensor(zeros: Array(x.shape.dropLast()) + [n])
    guard m > 0, n > 0, k > 0 else { return out }
    let w = weight.kernelWeight
    let size = Int(moe_weight_matmul_workspace_size(w, Int64(m)))
    let ws = size > 0 ? Workspace(floats: size) : nil
    moe_weight_matmul(out.floats, Int64(n), x.floats, Int64(k), w, Int64(m), 0, ws?.floats)
    return out
}
