import XCTest
@testable import SparseMoECore

/// Result of comparing an op's analytic gradient with central finite differences.
struct GradientCheckReport: CustomStringConvertible {
    /// Max relative error per checked input, in input order.
    var maxRelativeError: [Double]
    var maxAbsoluteError: [Double]
    var description: String {
        maxRelativeError.indices.map { "input \($0): max rel err \(String(format: "%.2e", maxRelativeError[$0])) (abs \(String(format: "%.2e", maxAbsoluteError[$0])))" }.joined(separator: "; ")
    }
}

/// Checks the gradients of `f` with respect to each of `inputs` against central
/// finite differences of L = Σ f(inputs) ⊙ R, with R a fixed random projection
/// (so every output element contributes). Float32 inputs are perturbed by ±eps;
/// L is accumulated in Double. Relative error = |a − n| / max(|a|, |n|, floor).
/// With `assertWithinTolerance: false` nothing is asserted; the report is only returned
/// (used to show that the checker detects a wrong backward).
func checkGradients(
    _ name: String, inputs: [Tensor], eps: Float = 1e-2, tolerance: Double = 2e-2, floor: Double = 1e-2,
    seed: UInt64 = 99, assertWithinTolerance: Bool = true, file: StaticString = #filePath, line: UInt = #line,
    _ f: ([Tensor]) throws -> Tensor
) throws -> GradientCheckReport {
    for x in inputs where x.dtype == .float32 { x.requiresGrad = true; x.zeroGrad() }
    let out = try f(inputs)
    var rng = RandomGenerator(seed: seed)
    let projection = Tensor.uniform(out.shape, low: -1, high: 1, using: &rng)
    out.backward(gradient: projection)
    func loss() throws -> Double {
        let y = try withNoGrad { try f(inputs) }
        var s = 0.0
        for i in 0..<y.count { s += Double(y.floats[i]) * Double(projection.floats[i]) }
        return s
    }
    var report = GradientCheckReport(maxRelativeError: [], maxAbsoluteError: [])
    for x in inputs {
        guard x.dtype == .float32 else { continue }
        let analytic = x.grad?.scalars ?? [Float](repeating: 0, count: x.count)
        var maxRel = 0.0, maxAbs = 0.0
        for i in 0..<x.count {
            let orig = x.floats[i]
            x.floats[i] = orig + eps
            let lp = try loss()
            x.floats[i] = orig - eps
            let lm = try loss()
            x.floats[i] = orig
            let numeric = (lp - lm) / (2 * Double(eps))
            let a = Double(analytic[i])
            let abs = Swift.abs(a - numeric)
            maxAbs = max(maxAbs, abs)
            maxRel = max(maxRel, abs / max(Swift.abs(a), Swift.abs(numeric), floor))
        }
        report.maxRelativeError.append(maxRel)
        report.maxAbsoluteError.append(maxAbs)
    }
    for (i, e) in report.maxRelativeError.enumerated() where assertWithinTolerance {
        XCTAssertLessThan(e, tolerance, "\(name): input \(i) gradient differs from finite differences (\(report))", file: file, line: line)
    }
    return report
}

/// Asserts two float arrays agree element-wise within `atol + rtol·|expected|`.
func assertClose(_ actual: [Float], _ expected: [Float], atol: Float = 1e-5, rtol: Float = 1e-4,
                 _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(message): element counts differ", file: file, line: line)
    var worst: (Int, Float) = (-1, 0)
    for i in 0..<min(actual.count, expected.count) {
        let d = abs(actual[i] - expected[i])
        if !(d <= atol + rtol * abs(expected[i])) && (worst.0 < 0 || d > worst.1) { worst = (i, d) }
    }
    if worst.0 >= 0 {
        XCTFail("\(message): element \(worst.0) differs by \(worst.1): \(actual[worst.0]) vs expected \(expected[worst.0])", file: file, line: line)
    }
}

/// Deterministic random tensor for tests.
func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.uniform(shape, low: -scale, high: scale, using: &rng)
}
