import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

/// moe_sgemm_bf16 against its naive twin (operands rounded to bf16 by bit arithmetic, double
/// sums) on every path this CPU runs (AVX-512 BF16 and AMX where present, the portable one always),
/// every transpose, strided operands, shapes around the kernel's tile and block edges.
final class GemmBF16Tests: XCTestCase {
    /// Runs body on each path this CPU supports (0 portable, 1 AVX-512 BF16, 2 AMX), then restores it.
    func forEachPath(_ body: (Int32) throws -> Void) rethrows {
        let original = moe_gemm_bf16_path()
        defer { _ = moe_gemm_bf16_set_path(original) }
        for path: Int32 in [0, 1, 2] where moe_gemm_bf16_set_path(path) == path { try body(path) }
    }

    func check(_ cs: GemmCase, file: StaticString = #filePath, line: UInt = #line) {
        cs.check(gemm: moe_sgemm_bf16, naive: moe_sgemm_bf16_naive, forEachPath: { forEachPath($0) }, file: file, line: line)
    }

    func testMatchesNaiveAroundTileAndBlockEdges() {
        for cs in GemmCase.allTransposes(of: [(1, 1, 1), (1, 33, 2), (7, 31, 3), (8, 32, 384), (9, 33, 385), (17, 65, 770),
                                                  (200, 40, 50), (3, 1030, 40), (16, 16, 1), (129, 1025, 513)]) { check(cs) }
    }

    func testAlphaBetaAndStrides() {
        for cs in GemmCase.alphaBetaAndStrides { check(cs) }
    }

    /// The operands really are rounded to bf16: 1 + 2⁻¹⁰ times 1 is 1 (float32 would keep it).
    func testOperandsAreRoundedToBF16() {
        let a: [Float] = [1 + 1.0 / 1024, 3], b: [Float] = [1, 1]
        forEachPath { path in
            var c: [Float] = [0]
            moe_sgemm_bf16(0, 0, 1, 1, 2, 1, a, 2, b, 1, 0, &c, 1)
            XCTAssertEqual(c[0], 4, "path \(path)")
        }
    }

    /// The hardware paths follow the kernels' SIMD level: below AVX-512 (SPARSEMOE_SIMD=avx2, or a
    /// test lowering it) neither the AVX-512 BF16 nor the AMX path can be chosen, whatever the CPU.
    func testHardwarePathsFollowTheSIMDLevel() {
        let (level, path) = (moe_weight_simd_level(), moe_gemm_bf16_path())
        defer {
            _ = moe_weight_set_simd_level(level)
            _ = moe_gemm_bf16_set_path(path)
        }
        XCTAssertEqual(moe_weight_set_simd_level(2), 2)
        XCTAssertEqual(moe_gemm_bf16_set_path(1), 0, "AVX-512 BF16 at the AVX2 level")
        XCTAssertEqual(moe_gemm_bf16_set_path(2), 0, "AMX at the AVX2 level")
        XCTAssertEqual(moe_gemm_bf16_set_path(0), 0)
    }
}

