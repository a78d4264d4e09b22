import XCTest
@testable import SparseMoECore

final class NormalizationTests: XCTestCase {
    private func rmsRef(_ x: [Float], _ w: [Float], eps: Double) -> [Float] {
        let c = w.count
        var out = [Float](repeating: 0, count: x.count)
        for r in stride(from: 0, to: x.count, by: c) {
            let ms = x[r..<r + c].reduce(0.0) { $0 + Double($1) * Double($1) } / Double(c)
            let inv = 1 / (ms + eps).squareRoot()
            for j in 0..<c { out[r + j] = Float(Double(x[r + j]) * inv * Double(w[j])) }
        }
        return out
    }

    private func layerRef(_ x: [Float], _ w: [Float], _ b: [Float]?, eps: Double) -> [Float] {
        let c = w.count
        var out = [Float](repeating: 0, count: x.count)
        for r in stride(from: 0, to: x.count, by: c) {
            let mean = x[r..<r + c].reduce(0.0) { $0 + Double($1) } / Double(c)
            let v = x[r..<r + c].reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(c)
            let inv = 1 / (v + eps).squareRoot()
            for j in 0..<c { out[r + j] = Float((Double(x[r + j]) - mean) * inv * Double(w[j]) + Double(b?[j] ?? 0)) }
        }
        return out
    }

    func testForwardMatchesLoops() throws {
        for shape in oddShapes + [[256, 200]] {  // the last one runs the parallel path
            let c = shape.last!
            let x = randomTensor(shape, seed: 30, scale: 2), w = randomTensor([c], seed: 31), b = randomTensor([c], seed: 32)
            assertClose(rmsNorm(x, weight: w, eps: 1e-6).scalars, rmsRef(x.scalars, w.scalars, eps: 1e-6),
                        atol: 1e-5, rtol: 1e-5, "rmsNorm \(shape)")
            assertClose(layerNorm(x, weight: w, bias: b, eps: 1e-5).scalars, layerRef(x.scalars, w.scalars, b.scalars, eps: 1e-5),
                        atol: 1e-5, rtol: 1e-4, "layerNorm \(shape)")
            assertClose(layerNorm(x, weight: w, bias: nil).scalars, layerRef(x.scalars, w.scalars, nil, eps: 1e-5),
                        atol: 1e-5, rtol: 1e-4, "layerNorm no bias \(shape)")
            XCTAssertEqual(rmsNorm(x, weight: w).shape, shape)
        }
    }

    func testGradients() throws {
        for shape in oddShapes {
            let c = shape.last!
            let x = randomTensor(shape, seed: 33, scale: 2)
            // Keep rows away from zero RMS, where the finite difference is meaningless.
            for i in 0..<x.count where abs(x.floats[i]) < 0.3 { x.floats[i] += x.floats[i] < 0 ? -0.3 : 0.3 }
            let w = randomTensor([c], seed: 34), b = randomTensor([c], seed: 35)
            _ = try checkGradients("rmsNorm \(shape)", inputs: [x, w]) { rmsNorm($0[0], weight: $0[1], eps: 1e-5) }
            _ = try checkGradients("layerNorm \(shape)", inputs: [x, w, b], eps: 3e-3) {
                layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-3)
            }
            _ = try checkGradients("layerNorm no bias \(shape)", inputs: [x, w], eps: 3e-3) {
                layerNorm($0[0], weight: $0[1], bias: nil, eps: 1e-3)
            }
        }
    }

    /// Backward on the parallel path: same bits for 1 and 2 threads.
    func testLargeBackwardIndependentOfThreads() throws {
        let x = randomTensor([300, 130], seed: 36), w = randomTensor([130], seed: 37), b = randomTensor([130], seed: 38)
        let g = randomTensor([300, 130], seed: 39)
        func run() throws -> [[Float]] {
            for t in [x, w, b] { t.requiresGrad = true; t.zeroGrad() }
            rmsNorm(x, weight: w).backward(gradient: g)
            var out = [x.grad!.scalars, w.grad!.scalars]
            for t in [x, w, b] { t.zeroGrad() }
            layerNorm(x, weight: w, bias: b).backward(gradient: g)
            out += [x.grad!.scalars, w.grad!.scalars, b.grad!.scalars]
            return out
        }
        let one = try Threads.with(1) { try run() }, two = try Threads.with(2) { try run() }
        XCTAssertEqual(one, two)
        // d_bias = Σ_rows g, checked against a plain loop.
        let gv = g.scalars
        let dbias = (0..<130).map { j in Float((0..<300).reduce(0.0) { $0 + Double(gv[$1 * 130 + j]) }) }
        assertClose(one[4], dbias, atol: 1e-5, rtol: 1e-5, "layerNorm d_bias")
    }

    func testBadInputThrowsNamingShapes() {
        let x = Tensor(zeros: [4, 7])
        XCTAssertThrowsError(try Check.norm(x, weight: Tensor(zeros: [6]), bias: nil, eps: 1e-6, "rmsNorm")) { e in
            XCTAssertTrue("\(e)".contains("[6]") && "\(e)".contains("[4, 7]"), "\(e)")
        }
        XCTAssertThrowsError(try Check.norm(x, weight: Tensor(zeros: [7]), bias: Tensor(zeros: [4]), eps: 1e-5, "layerNorm")) { e in
            XCTAssertTrue("\(e)".contains("bias") && "\(e)".contains("[4]"), "\(e)")
        }
        XCTAssertThrowsError(try Check.norm(Tensor(zeros: [4, 7], dtype: .int32), weight: Tensor(zeros: [7]), bias: nil, eps: 1e-6, "rmsNorm"))
        XCTAssertThrowsError(try Check.norm(Tensor(zeros: [4, 0]), weight: Tensor(zeros: [0]), bias: nil, eps: 1e-6, "rmsNorm"))
        XCTAssertThrowsError(try Check.norm(x, weight: Tensor(zeros: [7]), bias: nil, eps: -1, "layerNorm"))
        XCTAssertNoThrow(try Check.norm(x, weight: Tensor(zeros: [7]), bias: Tensor(zeros: [7]), eps: 0, "layerNorm"))
    }
}
