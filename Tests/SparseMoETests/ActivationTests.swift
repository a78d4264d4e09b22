import XCTest
import Foundation
@testable import SparseMoECore

final class ActivationTests: XCTestCase {
    private func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    private var references: [(String, (Tensor) throws -> Tensor, (Double) -> Double)] {
        [
            ("silu", { silu($0) }, { $0 * self.sigmoid($0) }),
            ("gelu", { gelu($0) }, { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }),
            ("gelu(tanh)", { gelu($0, approximation: .tanh) },
             { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }),
            ("relu", { relu($0) }, { max($0, 0) }),
        ]
    }

    func testForwardMatchesFormulas() throws {
        for shape in oddShapes {
            let x = randomTensor(shape, seed: 20, scale: 4)
            for (name, op, f) in references {
                let out = try op(x)
                XCTAssertEqual(out.shape, shape)
                assertClose(out.scalars, x.scalars.map { Float(f(Double($0))) }, atol: 1e-6, rtol: 1e-5, "\(name) \(shape)")
            }
        }
        // Extreme inputs stay finite.
        let big = Tensor([-100, -30, 0, 30, 100], shape: [5])
        for (name, op, f) in references {
            assertClose(try op(big).scalars, big.scalars.map { Float(f(Double($0))) }, atol: 1e-6, rtol: 1e-5, "\(name) extremes")
        }
    }

    /// Exact GELU keeps relative accuracy in the negative tail (computed via erfc).
    func testGELUNegativeTailRelativeAccuracy() throws {
        let values = (0..<61).map { -2 - Float($0) * 0.1 }  // −2 … −8
        let out = gelu(Tensor(values, shape: [61])).scalars
        for (v, y) in zip(values, out) {
            let ref = 0.5 * Double(v) * Foundation.erfc(-Double(v) / 2.0.squareRoot())
            XCTAssertEqual(Double(y), ref, accuracy: abs(ref) * 1e-5, "gelu(\(v))")
        }
    }

    func testGradients() throws {
        for shape in oddShapes {
            // Keep |x| ≥ 0.1 so the finite difference (±0.01) never straddles ReLU's kink.
            let x = randomTensor(shape, seed: 21, scale: 3)
            for i in 0..<x.count where abs(x.floats[i]) < 0.1 { x.floats[i] += x.floats[i] < 0 ? -0.1 : 0.1 }
            for (name, op, _) in references {
                _ = try checkGradients("\(name) \(shape)", inputs: [x]) { try op($0[0]) }
            }
        }
    }

    func testSwiGLU() throws {
        for shape in oddShapes {
            let gate = randomTensor(shape, seed: 22, scale: 3), up = randomTensor(shape, seed: 23)
            let ref = zip(gate.scalars, up.scalars).map { g, u in Float(Double(g) * sigmoid(Double(g)) * Double(u)) }
            assertClose(swiglu(gate, up).scalars, ref, atol: 1e-6, rtol: 1e-5, "swiglu \(shape)")
            _ = try checkGradients("swiglu \(shape)", inputs: [gate, up]) { swiglu($0[0], $0[1]) }
        }
        let x = randomTensor([4, 5], seed: 24)
        _ = try checkGradients("swiglu(x, x)", inputs: [x]) { swiglu($0[0], $0[0]) }
    }

    /// The parallel path (above 32k elements) gives the same bits as one thread.
    func testLargeInputIndependentOfThreads() throws {
        let x = randomTensor([70_001], seed: 25, scale: 5), up = randomTensor([70_001], seed: 26)
        func run() throws -> [[Float]] {
            var outs: [[Float]] = []
            for (_, op, _) in references { outs.append(try op(x).scalars) }
            outs.append(swiglu(x, up).scalars)
            x.requiresGrad = true; x.zeroGrad()
            gelu(x, approximation: .tanh).backward(gradient: up)
            outs.append(x.grad!.scalars)
            x.requiresGrad = false; x.zeroGrad()
            return outs
        }
        let one = try Threads.with(1) { try run() }, two = try Threads.with(2) { try run() }
        XCTAssertEqual(one, two)
        assertClose(one[0], x.scalars.map { Float(Double($0) * sigmoid(Double($0))) }, atol: 1e-6, rtol: 1e-5, "silu large")
    }

    func testBadInput() {
        XCTAssertThrowsError(try Check.swiglu(Tensor(zeros: [3, 4]), Tensor(zeros: [4, 3]))) { e in
            XCTAssertTrue("\(e)".contains("[3, 4]") && "\(e)".contains("[4, 3]"), "\(e)")
        }
        XCTAssertThrowsError(try Check.float32(Tensor(zeros: [3], dtype: .int32), "silu", "x")) { e in
            XCTAssertTrue("\(e)".contains("silu") && "\(e)".contains("float32"), "\(e)")
        }
    }
}
