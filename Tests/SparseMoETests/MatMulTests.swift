import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

final class MatMulTests: XCTestCase {
    /// Optimised kernel (OpenBLAS, batched OpenMP) against the naive triple loop,
    /// for every transpose combination and remainder-hitting sizes.
    func testForwardMatchesNaive() throws {
        for (batch, m, n, k) in [(1, 1, 1, 1), (1, 7, 5, 3), (3, 17, 9, 33), (4, 1, 13, 8), (2, 65, 31, 17)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = randomTensor(batch == 1 ? (ta ? [k, m] : [m, k]) : [batch] + (ta ? [k, m] : [m, k]), seed: 1)
                    let b = randomTensor(batch == 1 ? (tb ? [n, k] : [k, n]) : [batch] + (tb ? [n, k] : [k, n]), seed: 2)
                    let out = matmul(a, b, transposeA: ta, transposeB: tb)
                    XCTAssertEqual(out.shape, batch == 1 ? [m, n] : [batch, m, n])
                    let ref = Tensor(zeros: out.shape)
                    moe_matmul_forward_naive(ref.floats, a.floats, b.floats, Int64(batch), Int64(m), Int64(n), Int64(k),
                                             ta ? 1 : 0, tb ? 1 : 0, Int64(m * k), Int64(k * n))
                    assertClose(out.scalars, ref.scalars, atol: 1e-5, rtol: 1e-4, "matmul \(batch)x\(m)x\(n)x\(k) ta=\(ta) tb=\(tb)")
                }
            }
        }
    }

    func testGradientsAllTransposes() throws {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = randomTensor(ta ? [3, 5] : [5, 3], seed: 3)
                let b = randomTensor(tb ? [4, 3] : [3, 4], seed: 4)
                _ = try checkGradients("matmul ta=\(ta) tb=\(tb)", inputs: [a, b]) { matmul($0[0], $0[1], transposeA: ta, transposeB: tb) }
            }
        }
    }

    func testBatchedGradients() throws {
        let a = randomTensor([3, 2, 5], seed: 5)
        let b = randomTensor([3, 5, 1], seed: 6)
        _ = try checkGradients("batched matmul", inputs: [a, b]) { matmul($0[0], $0[1]) }
        let shared = randomTensor([5, 7], seed: 7)
        _ = try checkGradients("matmul with shared b", inputs: [a, shared]) { matmul($0[0], $0[1]) }
        let bt = randomTensor([3, 4, 5], seed: 8)
        _ = try checkGradients("batched matmul bᵀ", inputs: [a, bt]) { matmul($0[0], $0[1], transposeB: true) }
    }

    func testShapeErrorsNameTheShapes() {
        let a = Tensor(zeros: [2, 3]), b = Tensor(zeros: [4, 5])
        XCTAssertThrowsError(try Check.matmul(a, b, transposeA: false, transposeB: false)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("[2, 3]") && text.contains("[4, 5]"), text)
        }
        XCTAssertThrowsError(try Check.matmul(Tensor(zeros: [2, 3, 4]), Tensor(zeros: [3, 4, 2]), transposeA: false, transposeB: false))
        XCTAssertThrowsError(try Check.matmul(Tensor(zeros: [3]), b, transposeA: false, transposeB: false))
        XCTAssertNoThrow(try Check.matmul(Tensor(zeros: [2, 4, 3]), Tensor(zeros: [5, 3]), transposeA: false, transposeB: true))
    }

    func testDeterministicForSameThreadCount() throws {
        let a = randomTensor([8, 64, 48], seed: 9), b = randomTensor([8, 48, 40], seed: 10)
        let x = matmul(a, b).scalars, y = matmul(a, b).scalars
        XCTAssertEqual(x, y)
    }
}
