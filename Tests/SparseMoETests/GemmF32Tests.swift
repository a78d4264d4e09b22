import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

/// moe_sgemm against its naive twin (double sums) on every path this CPU runs (OpenBLAS always,
/// the AVX-512 kernel where present), every transpose, strided operands, shapes around the
/// kernel's tile and block edges; and the AVX-512 kernel's bits independent of the split.
final class GemmF32Tests: XCTestCase {
    /// Runs body on each path this CPU supports (0 OpenBLAS, 1 AVX-512), then restores the path.
    func forEachPath(_ body: (Int32) throws -> Void) rethrows {
        let original = moe_gemm_f32_path()
        defer { _ = moe_gemm_f32_set_path(original) }
        for path: Int32 in [0, 1] where moe_gemm_f32_set_path(path) == path { try body(path) }
    }

    func check(_ cs: GemmCase, file: StaticString = #filePath, line: UInt = #line) {
        cs.check(gemm: moe_sgemm, naive: moe_sgemm_naive, forEachPath: { forEachPath($0) }, file: file, line: line)
    }

    func testMatchesNaiveAroundTileAndBlockEdges() {
        for cs in GemmCase.allTransposes(of: [(1, 1, 1), (1, 33, 2), (7, 31, 3), (8, 32, 512), (9, 33, 513), (17, 65, 1030),
                                                  (200, 40, 50), (3, 1030, 40), (16, 16, 1), (129, 1025, 513)]) { check(cs) }
    }

    func testAlphaBetaAndStrides() {
        for cs in GemmCase.alphaBetaAndStrides { check(cs) }
    }

    /// The AVX-512 kernel gives every element of C the same bits whichever block of C a call
    /// covers: C computed whole equals C computed as row and column pieces of odd sizes, and
    /// equals itself at 1 and 2 threads. For a row-major A, pieces of at most 256 columns (and
    /// the two threads' halves) read A in place where the whole call packs it.
    func testAVX512KernelBitsDoNotDependOnTheSplit() throws {
        let original = moe_gemm_f32_path()
        defer { _ = moe_gemm_f32_set_path(original) }
        guard moe_gemm_f32_set_path(1) == 1 else { throw XCTSkip("this CPU (or SPARSEMOE_SIMD) does not run the AVX-512 kernel") }
        for cs in [GemmCase(m: 150, n: 300, k: 600, ta: false, tb: true), GemmCase(m: 300, n: 70, k: 300, ta: true, tb: false, alpha: 0.5, beta: 1)] {
            let o = cs.operands()
            func run(_ rows: Range<Int>, _ cols: Range<Int>, into c: inout [Float]) {
                let (ta, tb) = (cs.ta ? 1 : 0, cs.tb ? 1 : 0)
                o.a.withUnsafeBufferPointer { a in
                    o.b.withUnsafeBufferPointer { b in
                        c.withUnsafeMutableBufferPointer { cp in
                            let ap = a.baseAddress! + (cs.ta ? rows.lowerBound : rows.lowerBound * o.lda)
                            let bp = b.baseAddress! + (cs.tb ? cols.lowerBound * o.ldb : cols.lowerBound)
                            moe_sgemm(Int32(ta), Int32(tb), Int64(rows.count), Int64(cols.count), Int64(cs.k), cs.alpha, ap, Int64(o.lda),
                                      bp, Int64(o.ldb), cs.beta, cp.baseAddress! + rows.lowerBound * o.ldc + cols.lowerBound, Int64(o.ldc))
                        }
                    }
                }
            }
            var whole = o.c0
            Threads.with(1) { run(0..<cs.m, 0..<cs.n, into: &whole) }
            var two = o.c0
            Threads.with(2) { run(0..<cs.m, 0..<cs.n, into: &two) }
            var pieces = o.c0
            Threads.with(1) {
                for rows in [0..<37, 37..<cs.m] {
                    for cols in [0..<23, 23..<cs.n] { run(rows, cols, into: &pieces) }
                }
            }
            XCTAssertEqual(whole.map(\.bitPattern), two.map(\.bitPattern), "\(cs): 1 and 2 threads")
            XCTAssertEqual(whole.map(\.bitPattern), pieces.map(\.bitPattern), "\(cs): whole and in pieces")
        }
    }

    /// The AVX-512 kernel follows the kernels' SIMD level: below AVX-512 (SPARSEMOE_SIMD=avx2, or
    /// a test lowering it) it cannot be chosen, whatever the CPU.
    func testAVX512KernelFollowsTheSIMDLevel() {
        let (level, path) = (moe_weight_simd_level(), moe_gemm_f32_path())
        defer {
            _ = moe_weight_set_simd_level(level)
            _ = moe_gemm_f32_set_path(path)
        }
        XCTAssertEqual(moe_weight_set_simd_level(2), 2)
        XCTAssertEqual(moe_gemm_f32_set_path(1), 0, "AVX-512 kernel at the AVX2 level")
        XCTAssertEqual(moe_gemm_f32_set_path(0), 0)
    }
}
