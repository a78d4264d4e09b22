internal import CMoEKernels
import Foundation

/// The arithmetic of matrix products: float32 throughout, or bf16 operands with float32
/// accumulation (mixed precision: C = Σ bf16(a)·bf16(b), each operand rounded to 8
/// significant bits, the products exact, the sums float32).
///
/// The precision is ambient and process-wide: every GEMM the kernels run (``matmul(_:_:transposeA:transposeB:precision:)``,
/// attention, the routed experts) uses ``current``, which ``with(_:_:)`` sets for a scope.
/// Mixed-precision training runs its steps under `.bfloat16`; routers ask for `.float32`
/// explicitly, so routing decisions never move with rounding. Which kernel runs the bf16 GEMMs
/// is chosen at run time (``bf16Kernel``): on CPUs with AMX they run 2.5–5× faster than float32
/// sgemm, with AVX-512 BF16 (AMD Zen 4) 1.6–2.1×; elsewhere the operands are rounded into
/// float32 buffers for sgemm, the same numbers at 0.5–0.9× float32's speed. The float32 GEMMs
/// run on ``float32Kernel``.
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

    /// The kernel bf16 GEMMs run on: the fastest this CPU runs, unless the environment variable
    /// `SPARSEMOE_BF16_GEMM=portable|avx512bf16|amx` names another it runs.
    public static var bf16Kernel: BF16Kernel { BF16Kernel(rawValue: moe_gemm_bf16_path()) ?? .portable }

    /// The kernel float32 GEMMs run on: ours where the kernels' SIMD level is AVX-512, else
    /// OpenBLAS, unless the environment variable `SPARSEMOE_F32_GEMM=openblas|avx512` names
    /// another this CPU runs.
    public static var float32Kernel: Float32Kernel { Float32Kernel(rawValue: moe_gemm_f32_path()) ?? .openBLAS }
}

/// The kernels behind float32 GEMMs (moe_gemm_f32.h).
public enum Float32Kernel: Int32, Sendable, CaseIterable {
    /// OpenBLAS sgemm: any CPU.
    case openBLAS = 0
    /// Our AVX-512 kernel (8 × 32 register tiles; the same bits for any thread count): 1.0–1.16×
    /// OpenBLAS's AVX-512 sgemm on training shapes on AMD Zen 4.
    case avx512 = 1

    /// The kernels this CPU (at the kernels' SIMD level) runs.
    public static var available: [Float32Kernel] {
        let current = moe_gemm_f32_path()
        defer { _ = moe_gemm_f32_set_path(current) }
        return allCases.filter { moe_gemm_f32_set_path($0.rawValue) == $0.rawValue }
    }

    /// Runs body with float32 GEMMs on `kernel` (one this CPU runs: see ``available``), then
    /// restores the previous one. Process-wide: for measurements, not while other threads multiply.
    public static func with<T>(_ kernel: Float32Kernel, _ body: () throws -> T) rethrows -> T {
        let previous = moe_gemm_f32_path()
        _ = moe_gemm_f32_set_path(kernel.rawValue)
        defer { _ = moe_gemm_f32_set_path(previous) }
        return try body()
    }

    /// A few words for run logs, and what became of `SPARSEMOE_F32_GEMM` where it was set but
    /// not followed (an unknown value, or a kernel this CPU cannot run).
    public var summary: String {
        kernelSummary(self == .avx512 ? "AVX-512 kernel" : "OpenBLAS sgemm", chosen: self, variable: "SPARSEMOE_F32_GEMM",
                      values: [("openblas", .openBLAS), ("avx512", .avx512)])
    }
}

/// The kernels behind bf16 GEMMs (moe_gemm_bf16.h).
public enum BF16Kernel: Int32, Sendable, CaseIterable {
    /// Operands rounded to bf16 into float32 buffers, then OpenBLAS sgemm: any CPU, float32's speed or less.
    case portable = 0
    /// AVX-512 BF16 (`vdpbf16ps`, AMD Zen 4 and later, Intel Cooper Lake and later): 1.6–2.1× sgemm on AMD Zen 4.
    case avx512BF16 = 1
    /// AMX tiles (`tdpbf16ps`, Intel Sapphire Rapids and later): 2.5–5× sgemm on training shapes.
    case amx = 2

    /// A few words for run logs, and what became of `SPARSEMOE_BF16_GEMM` where it was set but
    /// not followed (an unknown value, or a kernel this CPU cannot run).
    public var summary: String {
        let name: String
        switch self {
        case .portable: name = "operands rounded to bf16, then float32 GEMMs (not faster than fp32)"
        case .avx512BF16: name = "AVX-512 BF16 kernel"
        case .amx: name = "AMX tiles"
        }
        return kernelSummary(name, chosen: self, variable: "SPARSEMOE_BF16_GEMM",
                             values: [("portable", .portable), ("avx512bf16", .avx512BF16), ("amx", .amx)])
    }
}

/// `name`, and what became of the environment `variable` (whose `values` name kernels) where it
/// was set but not followed: an unknown value, or a kernel other than `chosen` (one this CPU, or
/// SPARSEMOE_SIMD, does not allow).
private func kernelSummary<K: Equatable>(_ name: String, chosen: K, variable: String, values: [(String, K)]) -> String {
    guard let asked = ProcessInfo.processInfo.environment[variable], !asked.isEmpty else { return name }
    guard let wanted = values.first(where: { $0.0 == asked })?.1 else {
        let list = values.map(\.0)
        return name + "; \(variable)=\(asked) is not \(list.dropLast().joined(separator: ", ")) or \(list.last!), and was ignored"
    }
    return wanted == chosen ? name : name + "; \(variable)=\(asked) asks for a kernel this CPU (or SPARSEMOE_SIMD) does not allow here"
}
