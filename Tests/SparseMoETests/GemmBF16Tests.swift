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

    struct Case {
        var m: Int, n: Int, k: Int
        var ta = false, tb = false
        var alpha: Float = 1, beta: Float = 0
        var pad = 0  // extra elements per stored row of A, B and C
    }

    func check(_ cs: Case, threads: [Int] = [1, 2], file: StaticString = #filePath, line: UInt = #line) {
        let (m, n, k) = (cs.m, cs.n, cs.k)
        let aRows = cs.ta ? k : m, aCols = cs.ta ? m : k
        let bRows = cs.tb ? n : k, bCols = cs.tb ? k : n
        let lda = aCols + cs.pad, ldb = bCols + cs.pad, ldc = n + cs.pad
        let a = randomTensor([max(aRows * lda, 1)], seed: UInt64(m * 7 + k)).scalars
        let b = randomTensor([max(bRows * ldb, 1)], seed: UInt64(n * 5 + k + 1)).scalars
        let c0 = cs.beta == 0 ? [Float](repeating: .nan, count: m * ldc) : randomTensor([m * ldc], seed: 9).scalars
        var ref = c0, absRef = [Float](repeating: 0, count: m * ldc)
        moe_sgemm_bf16_naive(cs.ta ? 1 : 0, cs.tb ? 1 : 0, Int64(m), Int64(n), Int64(k), cs.alpha, a, Int64(lda), b, Int64(ldb),
                             cs.beta, &ref, Int64(ldc), &absRef)
        forEachPath { path in
            for t in threads {
                var c = c0
                Threads.with(t) {
                    moe_sgemm_bf16(cs.ta ? 1 : 0, cs.tb ? 1 : 0, Int64(m), Int64(n), Int64(k), cs.alpha, a, Int64(lda), b,
                                   Int64(ldb), cs.beta, &c, Int64(ldc))
                }
                // float32 sums of exact products: |error| ≤ (k + 2) · 2⁻²⁴ · Σ|products| (+ |beta·C|'s rounding)
                for i in 0..<m {
                    for j in 0..<ldc {
                        let idx = i * ldc + j
                        if j >= n {
                            XCTAssert(c[idx].isNaN == c0[idx].isNaN && (c0[idx].isNaN || c[idx] == c0[idx]),
                                      "path \(path) threads \(t) \(cs): padding column \(j) of row \(i) written", file: file, line: line)
                            continue
                        }
                        let betaC = cs.beta == 0 ? 0 : abs(cs.beta * c0[idx])
                        let bound = Float(k + 2) * 6e-8 * (absRef[idx] + betaC) + 1e-30
                        if !(abs(c[idx] - ref[idx]) <= bound) {
                            XCTFail("path \(path) threads \(t) \(cs): C[\(i), \(j)] = \(c[idx]), reference \(ref[idx]) ± \(bound)",
                                    file: file, line: line)
                            return
                        }
                    }
                }
            }
        }
    }

    func testMatchesNaiveAroundTileAndBlockEdges() {
        for (m, n, k) in [(1, 1, 1), (1, 33, 2), (7, 31, 3), (8, 32, 384), (9, 33, 385), (17, 65, 770), (200, 40, 50),
                          (3, 1030, 40), (16, 16, 1), (129, 1025, 513)] {
            for ta in [false, true] {
                for tb in [false, true] { check(Case(m: m, n: n, k: k, ta: ta, tb: tb)) }
            }
        }
    }

    func testAlphaBetaAndStrides() {
        check(Case(m: 13, n: 45, k: 70, alpha: 0.5, beta: 1, pad: 3))
        check(Case(m: 13, n: 45, k: 400, ta: true, tb: true, alpha: -2, beta: 0.25, pad: 5))
        check(Case(m: 40, n: 9, k: 33, alpha: 1, beta: 0, pad: 1))  // beta 0: C holds NaN, never read
        check(Case(m: 5, n: 6, k: 0, alpha: 1, beta: 0.5))          // k = 0: C = beta · C
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

