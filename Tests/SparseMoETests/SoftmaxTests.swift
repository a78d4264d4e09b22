import XCTest
import Foundation
@testable import SparseMoECore

final class SoftmaxTests: XCTestCase {
    private func logSoftmaxRef(_ x: [Float], _ v: Int) -> [Double] {
        var out = [Double](repeating: 0, count: x.count)
        for r in stride(from: 0, to: x.count, by: v) {
            let m = Double(x[r..<r + v].max()!)
            let lse = m + Foundation.log(x[r..<r + v].reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
            for j in 0..<v { out[r + j] = Double(x[r + j]) - lse }
        }
        return out
    }

    func testForwardMatchesLoops() throws {
        for shape in oddShapes + [[200, 301]] {
            let x = randomTensor(shape, seed: 40, scale: 8)
            let ref = logSoftmaxRef(x.scalars, shape.last!)
            assertClose(softmax(x).scalars, ref.map { Float(Foundation.exp($0)) }, atol: 1e-6, rtol: 1e-5, "softmax \(shape)")
            assertClose(logSoftmax(x).scalars, ref.map { Float($0) }, atol: 1e-5, rtol: 1e-5, "logSoftmax \(shape)")
        }
        // Large logits do not overflow; a fully masked row gives zeros.
        let x = Tensor([1000, 1001, -Float.infinity, -Float.infinity, -Float.infinity, -Float.infinity], shape: [3, 2])
        assertClose(softmax(x).scalars, [0.26894142, 0.73105858, 0, 0, 0, 0], atol: 1e-6, rtol: 1e-5, "softmax extremes")
    }

    /// The kernels' own exp: softmax / log-softmax over logits spanning −87…+80 against
    /// double-precision references (relative accuracy of tiny probabilities included).
    func testWideRangeAccuracy() throws {
        let v = 331
        let values = (0..<v).map { Float(-87 + 167 * Double($0) / Double(v - 1)) + 0.123 }
        let x = Tensor(values, shape: [1, v])
        let ref = logSoftmaxRef(values, v)
        assertClose(logSoftmax(x).scalars, ref.map { Float($0) }, atol: 2e-5, rtol: 1e-6, "logSoftmax wide")
        let p = softmax(x).scalars
        for (j, r) in ref.enumerated() where r > -80 {  // above float's normal range floor
            // x − max is rounded to float first: half an ulp of |r| is unavoidable relative error.
            XCTAssertEqual(Double(p[j]), Foundation.exp(r), accuracy: Foundation.exp(r) * (2e-6 + abs(r) * 6e-8) + 1e-38, "softmax[\(j)] (log p = \(r))")
        }
        // silu through the same exp, across the range
        let y = silu(x).scalars
        for (j, xv) in values.enumerated() {
            let e = Double(xv) / (1 + Foundation.exp(-Double(xv)))
            XCTAssertEqual(Double(y[j]), e, accuracy: abs(e) * 3e-6 + 1e-30, "silu(\(xv))")
        }
    }

    func testGradients() throws {
        for shape in oddShapes {
            let x = randomTensor(shape, seed: 41, scale: 2)
            _ = try checkGradients("softmax \(shape)", inputs: [x]) { softmax($0[0]) }
            _ = try checkGradients("logSoftmax \(shape)", inputs: [x]) { logSoftmax($0[0]) }
        }
    }

    func testCrossEntropyHandComputed() throws {
        let logits = Tensor([1, 2, 3, 1, 1, 1, 0, 0, 5], shape: [3, 3])
        let targets = Tensor(indices: [2, -100, 0], shape: [3])
        let (loss, count) = crossEntropyWithCount(logits, targets: targets)
        XCTAssertEqual(count, 2)
        XCTAssertEqual(loss.shape, [])
        // (log(e¹+e²+e³) − 3 + log(2+e⁵) − 0) / 2, computed by hand in double precision.
        XCTAssertEqual(loss.item, 2.710495933082915, accuracy: 1e-5)
        // Gradient: (softmax − onehot)/2 on the two counted rows; zero on the ignored one.
        logits.requiresGrad = true
        crossEntropy(logits, targets: targets).backward()
        let g = logits.grad!.scalars
        let p0 = [1.0, 2.0, 3.0].map { Foundation.exp($0) }, s0 = p0.reduce(0, +)
        let p2 = [1.0, 1.0, Foundation.exp(5.0)], s2 = p2.reduce(0, +)
        let expected = [p0[0] / s0 / 2, p0[1] / s0 / 2, (p0[2] / s0 - 1) / 2, 0, 0, 0,
                        (p2[0] / s2 - 1) / 2, p2[1] / s2 / 2, p2[2] / s2 / 2].map { Float($0) }
        assertClose(g, expected, atol: 1e-6, rtol: 1e-5, "cross-entropy gradient")
    }

    func testCrossEntropyMatchesLogSoftmaxAndGradients() throws {
        for shape in oddShapes {
            let v = shape.last!, n = shape.dropLast().reduce(1, *)
            let logits = randomTensor(shape, seed: 42, scale: 3)
            var rng = RandomGenerator(seed: 43)
            var ids = (0..<n).map { _ in Int32(rng.int(below: v)) }
            if n > 2 { ids[1] = -100 }
            let targets = Tensor(indices: ids, shape: Array(shape.dropLast()))
            let lsm = logSoftmaxRef(logits.scalars, v)
            let kept = ids.indices.filter { ids[$0] != -100 }
            let ref = -kept.reduce(0.0) { $0 + lsm[$1 * v + Int(ids[$1])] } / Double(kept.count)
            let (loss, count) = crossEntropyWithCount(logits, targets: targets)
            XCTAssertEqual(count, kept.count)
            XCTAssertEqual(Double(loss.item), ref, accuracy: 1e-5, "cross-entropy \(shape)")
            _ = try checkGradients("crossEntropy \(shape)", inputs: [logits]) { crossEntropy($0[0], targets: targets) }
        }
        // A custom ignore index.
        let logits = randomTensor([4, 5], seed: 44)
        let targets = Tensor(indices: [0, 3, 0, 4], shape: [4])
        let (_, count) = crossEntropyWithCount(logits, targets: targets, ignoreIndex: 0)
        XCTAssertEqual(count, 2)
        _ = try checkGradients("crossEntropy ignore 0", inputs: [logits]) { crossEntropy($0[0], targets: targets, ignoreIndex: 0) }
    }

    func testCrossEntropyAllIgnored() throws {
        let logits = randomTensor([3, 4], seed: 45)
        logits.requiresGrad = true
        let (loss, count) = crossEntropyWithCount(logits, targets: Tensor(indices: [-100, -100, -100], shape: [3]))
        XCTAssertEqual(count, 0)
        XCTAssertEqual(loss.item, 0)
        loss.backward()
        XCTAssertEqual(logits.grad?.scalars ?? [], [Float](repeating: 0, count: 12))
    }

    func testBadInput() {
        let logits = Tensor(zeros: [2, 5])
        XCTAssertThrowsError(try Check.crossEntropy(logits, targets: Tensor(indices: [1, 5], shape: [2]), ignoreIndex: -100)) { e in
            XCTAssertTrue("\(e)".contains("target 5") && "\(e)".contains("V = 5"), "\(e)")
        }
        XCTAssertThrowsError(try Check.crossEntropy(logits, targets: Tensor(indices: [-1, 0], shape: [2]), ignoreIndex: -100)) { e in
            XCTAssertTrue("\(e)".contains("target -1"), "\(e)")
        }
        XCTAssertThrowsError(try Check.crossEntropy(logits, targets: Tensor(indices: [1, 2, 3], shape: [3]), ignoreIndex: -100)) { e in
            XCTAssertTrue("\(e)".contains("[3]") && "\(e)".contains("[2, 5]"), "\(e)")
        }
        XCTAssertThrowsError(try Check.crossEntropy(logits, targets: Tensor(zeros: [2]), ignoreIndex: -100)) { e in
            XCTAssertTrue("\(e)".contains("int32"), "\(e)")
        }
        XCTAssertThrowsError(try Check.lastAxis(Tensor(zeros: [2], dtype: .int32), "softmax", "x"))
        XCTAssertNoThrow(try Check.crossEntropy(logits, targets: Tensor(indices: [4, -100], shape: [2]), ignoreIndex: -100))
    }
}
