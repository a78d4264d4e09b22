import XCTest
@testable import SparseMoECore

/// A GEMM signature shared by moe_sgemm, moe_sgemm_bf16 and their naive twins (the twins add
/// `absC`: |alpha| · Σ|products|, for error bounds).
typealias GemmFunction = (Int32, Int32, Int64, Int64, Int64, Float, UnsafePointer<Float>?, Int64, UnsafePointer<Float>?, Int64,
                          Float, UnsafeMutablePointer<Float>?, Int64) -> Void
typealias NaiveGemmFunction = (Int32, Int32, Int64, Int64, Int64, Float, UnsafePointer<Float>?, Int64, UnsafePointer<Float>?, Int64,
                               Float, UnsafeMutablePointer<Float>?, Int64, UnsafeMutablePointer<Float>?) -> Void

/// One GEMM test case: C[m, n] = alpha · op(A)·op(B) + beta · C, with `pad` extra elements per
/// stored row of A, B and C.
struct GemmCase: CustomStringConvertible {
    var m: Int, n: Int, k: Int
    var ta = false, tb = false
    var alpha: Float = 1, beta: Float = 0
    var pad = 0

    /// Every transpose of each (m, n, k): shapes around a kernel's tile and block edges.
    static func allTransposes(of shapes: [(Int, Int, Int)]) -> [GemmCase] {
        shapes.flatMap { m, n, k in [false, true].flatMap { ta in [false, true].map { tb in GemmCase(m: m, n: n, k: k, ta: ta, tb: tb) } } }
    }

    /// alpha and beta other than 1 and 0, strided rows, beta = 0 over NaN (C never read), k = 0 (C = beta · C).
    static let alphaBetaAndStrides = [GemmCase(m: 13, n: 45, k: 70, alpha: 0.5, beta: 1, pad: 3),
                                      GemmCase(m: 13, n: 45, k: 400, ta: true, tb: true, alpha: -2, beta: 0.25, pad: 5),
                                      GemmCase(m: 40, n: 9, k: 33, alpha: 1, beta: 0, pad: 1),
                                      GemmCase(m: 5, n: 6, k: 0, alpha: 1, beta: 0.5)]

    var description: String { "m \(m) n \(n) k \(k) ta \(ta) tb \(tb) alpha \(alpha) beta \(beta) pad \(pad)" }

    /// Random A, B and a starting C (NaN where beta = 0, so a read of C shows), with their strides.
    func operands() -> (a: [Float], b: [Float], c0: [Float], lda: Int, ldb: Int, ldc: Int) {
        let aRows = ta ? k : m, aCols = ta ? m : k
        let bRows = tb ? n : k, bCols = tb ? k : n
        let (lda, ldb, ldc) = (aCols + pad, bCols + pad, n + pad)
        let a = randomTensor([max(aRows * lda, 1)], seed: UInt64(m * 7 + k)).scalars
        let b = randomTensor([max(bRows * ldb, 1)], seed: UInt64(n * 5 + k + 1)).scalars
        let c0 = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : randomTensor([m * ldc], seed: 9).scalars
        return (a, b, c0, lda, ldb, ldc)
    }

    /// Runs `gemm` on every path `forEachPath` visits and on each thread count, against `naive`:
    /// float32 sums of the products, |error| ≤ (k + 2) · 2⁻²⁴ · Σ|products| (+ |beta·C|'s
    /// rounding); the padding columns of C untouched.
    func check(gemm: @escaping GemmFunction, naive: NaiveGemmFunction, forEachPath: ((Int32) -> Void) -> Void, threads: [Int] = [1, 2],
               file: StaticString, line: UInt) {
        let o = operands()
        var ref = o.c0, absRef = [Float](repeating: 0, count: m * o.ldc)
        naive(ta ? 1 : 0, tb ? 1 : 0, Int64(m), Int64(n), Int64(k), alpha, o.a, Int64(o.lda), o.b, Int64(o.ldb), beta, &ref, Int64(o.ldc), &absRef)
        forEachPath { path in
            for t in threads {
                var c = o.c0
                Threads.with(t) {
                    gemm(ta ? 1 : 0, tb ? 1 : 0, Int64(m), Int64(n), Int64(k), alpha, o.a, Int64(o.lda), o.b, Int64(o.ldb), beta, &c, Int64(o.ldc))
                }
                for i in 0..<m {
                    for j in 0..<o.ldc {
                        let idx = i * o.ldc + j
                        if j >= n {
                            XCTAssert(c[idx].isNaN == o.c0[idx].isNaN && (o.c0[idx].isNaN || c[idx] == o.c0[idx]),
                                      "path \(path) threads \(t) \(self): padding column \(j) of row \(i) written", file: file, line: line)
                            continue
                        }
                        let betaC = beta == 0 ? 0 : abs(beta * o.c0[idx])
                        let bound = Float(k + 2) * 6e-8 * (absRef[idx] + betaC) + 1e-30
                        if !(abs(c[idx] - ref[idx]) <= bound) {
                            XCTFail("path \(path) threads \(t) \(self): C[\(i), \(j)] = \(c[idx]), reference \(ref[idx]) ± \(bound)",
                                    file: file, line: line)
                            return
                        }
                    }
                }
            }
        }
    }
}
