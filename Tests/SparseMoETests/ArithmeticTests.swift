import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

/// Shapes that hit size 1, odd widths and the remainder of 8/16-wide loops.
let oddShapes: [[Int]] = [[1, 1], [3, 7], [5, 17], [2, 3, 33]]

final class ArithmeticTests: XCTestCase {
    func testForwardMatchesLoops() throws {
        for shape in oddShapes {
            let a = randomTensor(shape, seed: 1), b = randomTensor(shape, seed: 2)
            let row = randomTensor([shape.last!], seed: 3)
            let d = shape.last!
            let (av, bv, rv) = (a.scalars, b.scalars, row.scalars)
            assertClose(add(a, b).scalars, zip(av, bv).map { $0 + $1 }, atol: 0, rtol: 0, "add \(shape)")
            assertClose(subtract(a, b).scalars, zip(av, bv).map { $0 - $1 }, atol: 0, rtol: 0, "subtract \(shape)")
            assertClose(multiply(a, b).scalars, zip(av, bv).map { $0 * $1 }, atol: 0, rtol: 0, "multiply \(shape)")
            assertClose(add(a, row).scalars, av.indices.map { av[$0] + rv[$0 % d] }, atol: 0, rtol: 0, "add row \(shape)")
            assertClose(add(row, a).scalars, av.indices.map { av[$0] + rv[$0 % d] }, atol: 0, rtol: 0, "row + a \(shape)")
            assertClose(subtract(a, row).scalars, av.indices.map { av[$0] - rv[$0 % d] }, atol: 0, rtol: 0, "subtract row \(shape)")
            assertClose(multiply(row, a).scalars, av.indices.map { av[$0] * rv[$0 % d] }, atol: 0, rtol: 0, "row * a \(shape)")
            assertClose(scale(a, by: -2.5).scalars, av.map { -2.5 * $0 }, atol: 0, rtol: 0, "scale \(shape)")
            XCTAssertEqual(add(row, a).shape, shape)
        }
    }

    func testOperators() throws {
        let a = Tensor([1, 2, 3, 4], shape: [2, 2]), b = Tensor([10, 20], shape: [2])
        XCTAssertEqual((a + b).scalars, [11, 22, 13, 24])
        XCTAssertEqual((a - b).scalars, [-9, -18, -7, -16])
        XCTAssertEqual((a * b).scalars, [10, 40, 30, 80])
        XCTAssertEqual((a * 2).scalars, [2, 4, 6, 8])
        XCTAssertEqual((0.5 * a).scalars, [0.5, 1, 1.5, 2])
        XCTAssertEqual((-a).scalars, [-1, -2, -3, -4])
    }

    func testGradients() throws {
        for shape in oddShapes {
            let a = randomTensor(shape, seed: 4), b = randomTensor(shape, seed: 5)
            let row = randomTensor([shape.last!], seed: 6)
            _ = try checkGradients("add \(shape)", inputs: [a, b]) { add($0[0], $0[1]) }
            _ = try checkGradients("subtract \(shape)", inputs: [a, b]) { subtract($0[0], $0[1]) }
            _ = try checkGradients("multiply \(shape)", inputs: [a, b]) { multiply($0[0], $0[1]) }
            _ = try checkGradients("add row \(shape)", inputs: [a, row]) { add($0[0], $0[1]) }
            _ = try checkGradients("row + a \(shape)", inputs: [row, a]) { add($0[0], $0[1]) }
            _ = try checkGradients("subtract row \(shape)", inputs: [a, row]) { subtract($0[0], $0[1]) }
            _ = try checkGradients("multiply row \(shape)", inputs: [a, row]) { multiply($0[0], $0[1]) }
            _ = try checkGradients("scale \(shape)", inputs: [a]) { scale($0[0], by: 1.7) }
        }
    }

    /// The same tensor on both sides receives both contributions.
    func testSameTensorTwiceAccumulates() throws {
        let x = Tensor([1, -2, 3], shape: [3], requiresGrad: true)
        (x * x).sum().backward()
        XCTAssertEqual(x.grad?.scalars, [2, -4, 6])
        x.zeroGrad()
        (x + x).sum().backward()
        XCTAssertEqual(x.grad?.scalars, [2, 2, 2])
    }

    /// A reshape's backward takes its output's gradient over as the input's first gradient
    /// (no copy): views of views, a tensor reshaped twice and also used directly, and a
    /// second backward into kept gradients must still sum every contribution, each
    /// gradient in its own memory (expected values by hand: d/dx of Σ c·x is c).
    func testReshapeGradientsAccumulateIntoTheirOwnMemory() throws {
        let x = Tensor([1, -2, 3, 4, 5, -6], shape: [2, 3], requiresGrad: true)
        let y = scale(x, by: 2)
        let c1 = Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2]), c2 = Tensor([1, 0, 1, 0, 1, 0], shape: [6])
        let c3 = Tensor([10, 20, 30, 40, 50, 60], shape: [2, 3])
        let a = y.reshaped([6]).reshaped([3, 2])  // view of a view
        let b = y.reshaped([6])
        let loss = add(add((a * c1).sum(), (b * c2).sum()), (y * c3).sum())
        loss.backward()
        // dL/dy = c1 + c2 + c3 elementwise (row-major order); dL/dx = 2 · dL/dy.
        let dy: [Float] = [12, 22, 34, 44, 56, 66]
        XCTAssertEqual(x.grad?.scalars, dy.map { 2 * $0 })
        // A second pass into the kept leaf gradient adds, and x's gradient is its own memory:
        // a leaf reshaped directly takes the view's gradient and must not alias another one.
        let w = Tensor([1, 2, 3, 4], shape: [4], requiresGrad: true)
        let v1 = w.reshaped([2, 2]), v2 = w.reshaped([4, 1])
        add((v1 * Tensor([1, 1, 1, 1], shape: [2, 2])).sum(), (v2 * Tensor([3, 0, 0, 3], shape: [4, 1])).sum()).backward()
        XCTAssertEqual(w.grad?.scalars, [4, 1, 1, 4])
        (w.reshaped([2, 2]) * Tensor([1, 2, 3, 4], shape: [2, 2])).sum().backward()
        XCTAssertEqual(w.grad?.scalars, [5, 3, 4, 8])
        XCTAssertEqual(x.grad?.scalars, dy.map { 2 * $0 }, "another backward must not write into x's gradient")
    }

    /// Broadcast gradient of a large operand (parallel column-block path) equals the
    /// naive double-accumulated loop exactly, for 1 and 2 threads.
    func testBroadcastReductionMatchesNaive() throws {
        let (n, d) = (301, 131)  // 39 431 elements: above the parallel threshold, odd width
        let a = randomTensor([n, d], seed: 7), row = randomTensor([d], seed: 8), g = randomTensor([n, d], seed: 9)
        var expectedMul = [Float](repeating: 0.25, count: d), expectedAdd = expectedMul
        moe_reduce_rows_naive(&expectedMul, g.floats, a.floats, 1, Int64(n), Int64(d))
        moe_reduce_rows_naive(&expectedAdd, g.floats, nil, -1, Int64(n), Int64(d))
        for threads in [1, 2] {
            Threads.with(threads) {
                row.requiresGrad = true
                row.grad = Tensor(repeating: 0.25, shape: [d])
                multiply(a, row).backward(gradient: g)
                XCTAssertEqual(row.grad!.scalars, expectedMul, "multiply d_row, \(threads) threads")
                row.grad = Tensor(repeating: 0.25, shape: [d])
                subtract(a, row).backward(gradient: g)
                XCTAssertEqual(row.grad!.scalars, expectedAdd, "subtract d_row, \(threads) threads")
            }
        }
    }

    func testBadInputIsReportedNamingShapes() {
        // Ops trap on these (programmer errors); the checks they run throw the message.
        let a = Tensor(zeros: [3, 7])
        for b in [Tensor(zeros: [3, 6]), Tensor(zeros: [6]), Tensor(zeros: [7, 3])] {
            XCTAssertThrowsError(try Check.binary(a, b, "add")) { e in
                XCTAssertTrue("\(e)".contains("[3, 7]") && "\(e)".contains("\(b.shape)"), "\(e)")
            }
            XCTAssertThrowsError(try Check.binary(a, b, "multiply"))
        }
        // subtract does not broadcast its left operand
        XCTAssertThrowsError(try Check.binary(Tensor(zeros: [7]), a, "subtract"))
        XCTAssertThrowsError(try Check.binary(a, Tensor(zeros: [3, 7], dtype: .int32), "add")) { e in
            XCTAssertTrue("\(e)".contains("float32"), "\(e)")
        }
        XCTAssertThrowsError(try Check.scale(a, by: .nan))
        XCTAssertNoThrow(try Check.binary(a, Tensor(zeros: [7]), "add"))
    }
}

final class TensorChecksTests: XCTestCase {
    func testReshapeSliceAndBackwardChecks() {
        // reshaped, slice(rows:) and backward trap on these; their checks throw the message.
        XCTAssertEqual(try Check.reshape([2, 3, 4], to: [-1, 4]), [6, 4])
        XCTAssertEqual(try Check.reshape([2, 3], to: [3, 2]), [3, 2])
        XCTAssertThrowsError(try Check.reshape([2, 3], to: [4, 2])) { XCTAssertTrue("\($0)".contains("cannot reshape [2, 3] (6 elements) to [4, 2]"), "\($0)") }
        XCTAssertThrowsError(try Check.reshape([2, 3], to: [-1, -1])) { XCTAssertTrue("\($0)".contains("at most one -1"), "\($0)") }
        XCTAssertThrowsError(try Check.reshape([2, 3], to: [-1, 4])) { XCTAssertTrue("\($0)".contains("[-1, 4]"), "\($0)") }
        XCTAssertNoThrow(try Check.slice([4, 2], rows: 1..<4))
        XCTAssertThrowsError(try Check.slice([4, 2], rows: 2..<5)) { XCTAssertTrue("\($0)".contains("2..<5") && "\($0)".contains("[4, 2]"), "\($0)") }
        XCTAssertThrowsError(try Check.slice([], rows: 0..<0))

        let leaf = Tensor(zeros: [2], requiresGrad: true)
        XCTAssertThrowsError(try Check.backward(leaf, gradient: nil)) { XCTAssertTrue("\($0)".contains("needs a scalar"), "\($0)") }
        XCTAssertNoThrow(try Check.backward(leaf, gradient: Tensor(zeros: [2])))
        XCTAssertThrowsError(try Check.backward(leaf, gradient: Tensor(zeros: [3]))) { XCTAssertTrue("\($0)".contains("[3]"), "\($0)") }
        XCTAssertThrowsError(try Check.backward(Tensor(zeros: [1]), gradient: nil)) { XCTAssertTrue("\($0)".contains("does not require a gradient"), "\($0)") }
    }
}

final class ReductionTests: XCTestCase {
    func testSumAndMeanMatchLoops() throws {
        for shape in oddShapes + [[100_003]] {
            let x = randomTensor(shape, seed: 10)
            let ref = x.scalars.reduce(0.0) { $0 + Double($1) }
            let s = x.sum(), m = mean(x)
            XCTAssertEqual(s.shape, [])
            XCTAssertEqual(Double(s.item), ref, accuracy: 1e-6 * Double(x.count))
            XCTAssertEqual(Double(m.item), ref / Double(x.count), accuracy: 1e-6)
            var naive: Float = 0
            moe_sum_forward_naive(&naive, x.floats, 1, Int64(x.count))
            XCTAssertEqual(s.item, naive, accuracy: abs(naive) * 1e-6 + 1e-6)
        }
        XCTAssertEqual(Tensor(zeros: [0, 3]).sum().item, 0)
        XCTAssertThrowsError(try Check.mean(Tensor(zeros: [0]))) { XCTAssertTrue("\($0)".contains("[0]"), "\($0)") }
        XCTAssertNoThrow(try Check.mean(Tensor(zeros: [1])))
    }

    func testSumIndependentOfThreadCount() throws {
        let x = randomTensor([250_001], seed: 11)
        let one = Threads.with(1) { x.sum().item }
        let two = Threads.with(2) { x.sum().item }
        XCTAssertEqual(one, two)
    }

    func testSumLastAxis() throws {
        for shape in oddShapes {
            let x = randomTensor(shape, seed: 12)
            let d = shape.last!
            let v = x.scalars
            let out = x.sumLastAxis()
            XCTAssertEqual(out.shape, Array(shape.dropLast()))
            let ref = stride(from: 0, to: v.count, by: d).map { i in Float(v[i..<i + d].reduce(0.0) { $0 + Double($1) }) }
            assertClose(out.scalars, ref, atol: 1e-6, rtol: 1e-6, "sumLastAxis \(shape)")
            _ = try checkGradients("sumLastAxis \(shape)", inputs: [x]) { $0[0].sumLastAxis() }
        }
    }

    func testGradients() throws {
        for shape in oddShapes {
            let x = randomTensor(shape, seed: 13)
            _ = try checkGradients("sum \(shape)", inputs: [x]) { $0[0].sum() }
            _ = try checkGradients("mean \(shape)", inputs: [x]) { $0[0].mean() }
        }
    }
}

final class GradientCheckerTests: XCTestCase {
    /// An op whose backward is deliberately wrong (forward 2x, backward claims 3·dOut)
    /// must be reported with a large error: the checker can fail.
    func testCheckerDetectsWrongBackward() throws {
        let x = randomTensor([3, 7], seed: 14)
        let report = try checkGradients("deliberately wrong", inputs: [x], assertWithinTolerance: false) { inputs in
            let x = inputs[0]
            let out = scale(x.detached(), by: 2)
            return out.recording("wrongDouble", inputs: [x]) { g in
                let d = x.gradBuffer().floats
                for i in 0..<x.count { d[i] += 3 * g.floats[i] }
            }
        }
        XCTAssertGreaterThan(report.maxRelativeError[0], 0.3, "\(report)")
        // The correct op passes the same check.
        let good = try checkGradients("scale 2", inputs: [x]) { scale($0[0], by: 2) }
        XCTAssertLessThan(good.maxRelativeError[0], 1e-2)
    }
}
