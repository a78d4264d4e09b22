internal import CMoEKernels

/// The sizes of one (batched) GEMM `[..., M, K] · [K, N]`, `bStride` 0 for a shared b.
package struct MatMulLayout {
    var batchShape: [Int]
    var m: Int, n: Int, k: Int, bStride: Int
}

extension Check {
    /// The shapes of `matmul` (see there).
    package static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool) throws -> MatMulLayout {
        let op = "matmul"
        try Check.float32(a, op, "a"); try Check.float32(b, op, "b")
        try Check.rank(a, atLeast: 2, op, "a"); try Check.rank(b, atLeast: 2, op, "b")
        let (aRows, aCols) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (bRows, bCols) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, kA) = transposeA ? (aCols, aRows) : (aRows, aCols)
        let (kB, n) = transposeB ? (bCols, bRows) : (bRows, bCols)
        guard kA == kB else {
            throw SparseMoEError.shapeMismatch(
                op: op, message: "inner dimensions differ: a \(a.shape)\(transposeA ? "ᵀ" : "") has K=\(kA), b \(b.shape)\(transposeB ? "ᵀ" : "") has K=\(kB)")
        }
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        let batchShape: [Int]
        let bStride: Int
        if batchB.isEmpty {
            batchShape = batchA; bStride = 0
        } else {
            guard batchA == batchB else {
                throw SparseMoEError.shapeMismatch(op: op, message: "batch dimensions differ: a \(a.shape), b \(b.shape)")
            }
            batchShape = batchA; bStride = kB * n
        }
        return MatMulLayout(batchShape: batchShape, m: m, n: n, k: kA, bStride: bStride)
    }
}

/// Matrix product `op(a) · op(b)` (C kernel `moe_matmul_*`, OpenBLAS sgemm).
///
/// - 2-D: a `[M, K]` (or `[K, M]` with `transposeA`), b `[K, N]` (or `[N, K]` with
///   `transposeB`) → `[M, N]`.
/// - Batched: a `[..., M, K]`, b `[..., K, N]` with equal leading dimensions → `[..., M, N]`;
///   or b 2-D, shared by every batch (a linear layer over `[B, T, C]`), which runs as
///   one large GEMM.
/// FLOPs: 2·M·N·K per batch. Backward: dA = dC·op(B)ᵀ, dB = op(A)ᵀ·dC (mapped through
/// the transposes), accumulated.
/// `precision`: the arithmetic of the product and of its backward (nil: the ambient
/// ``MatmulPrecision/current`` when the forward runs).
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                   precision: MatmulPrecision? = nil) -> Tensor {
    let op = "matmul"
    let l = Check.trapping { try Check.matmul(a, b, transposeA: transposeA, transposeB: transposeB) }
    let precision = precision ?? MatmulPrecision.current
    // A shared 2-D right operand with an untransposed batched left operand is one GEMM.
    if b.rank == 2 && a.rank > 2 && !transposeA {
        let rows = a.shape.dropLast().reduce(1, *)
        let flat = a.reshaped([rows, a.shape[a.rank - 1]])
        let out = matmul(flat, b, transposeB: transposeB, precision: precision)
        return out.reshaped(Array(a.shape.dropLast()) + [out.shape[1]])
    }
    let (batchShape, m, n, k, bStride) = (l.batchShape, l.m, l.n, l.k, l.bStride)
    let batch = batchShape.reduce(1, *)
    let out = k == 0 ? Tensor(zeros: batchShape + [m, n]) : Tensor(uninitialized: batchShape + [m, n])
    if m * n > 0 && batch > 0 {
        if k == 0 { /* product of empty inner dimension is zero */ } else {
            MatmulPrecision.with(precision) {
                moe_matmul_forward(out.floats, a.floats, b.floats, Int64(batch), Int64(m), Int64(n), Int64(k),
                                   transposeA ? 1 : 0, transposeB ? 1 : 0, Int64(m * k), Int64(bStride))
            }
        }
    }
    return out.recording(op, inputs: [a, b]) { g in
        guard m * n * k * batch > 0 else { return }
        let da = a.requiresGrad ? a.gradForWriting() : nil
        let db = b.requiresGrad ? b.gradForWriting() : nil
        MatmulPrecision.with(precision) {
            moe_matmul_backward(da?.floats, db?.floats, g.floats, a.floats, b.floats, Int64(batch), Int64(m), Int64(n), Int64(k),
                                transposeA ? 1 : 0, transposeB ? 1 : 0, Int64(m * k), Int64(bStride),
                                da?.fresh == true ? 1 : 0, db?.fresh == true ? 1 : 0)
        }
    }
}
