internal import CMoEKernels

/// The arithmetic of matrix products: float32 throughout, or bf16 operands with float32
/// accumulation (mixed precision: C = Σ bf16(a)·bf16(b), each operand rounded to 8
/// significant bits, the products exact, the sums float32).
///
/// The precision is ambient and process-wide: every GEMM the kernels run (``matmul(_:_:transposeA:transposeB:precision:)``,
/// attention, the routed experts) uses ``current``, which ``with(_:_:)`` sets for a scope.
/// Mixed-precision training runs its steps under `.bfloat16`; routers ask for `.float32`
/// explicitly, so routing decisions never move with rounding. The bf16 GEMMs round their
/// operands into float32 buffers for sgemm (0.5–0.9× float32's speed); an AVX-512 BF16
/// kernel (``hardwareBF16``, opt-in with `SPARSEMOE_BF16_GEMM=avx512bf16`) reaches 0.4–0.6× of
/// OpenBLAS's AVX-512 sgemm so far. Today this buys the arithmetic, not speed.
public enum MatmulPrecision: String, Codable, Sendable, CaseIterable {
    case float32 = "fp32"
    case bfloat16 = "bf16"

    /// The precision GEMMs use now.
    public static var current: MatmulPrecision { moe_matmul_precision() != 0 ? .bfloat16 : .float32 }

    /// Runs body with `precision` as the ambient precision, then restores the previous one.
    public static func with<T>(_ precision: MatmulPrecision, _ body: () throws -> T) rethrows -> T {
        let previous = moe_matmul_precision()
        moe_set_matmul_precision(precision == .bfloat16 ? 1 : 0)
        defer { moe_set_matmul_precision(previous) }
        return try body()
    }

    /// Whether bf16 GEMMs run on the AVX-512 BF16 kernel (else through float32 GEMMs).
    public static var hardwareBF16: Bool { moe_gemm_bf16_path() != 0 }
}
