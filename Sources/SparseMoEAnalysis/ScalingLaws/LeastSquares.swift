import Foundation
import SparseMoECore

/// Linear least squares min ‖A·β − y‖² for the small, tall systems of the scaling-law
/// fits (a few coefficients, tens of points), by Householder QR on a copy of A
/// (numerically safer than the normal equations). O(m·n²) for A of m rows, n columns.
public enum LinearLeastSquares {
    /// β for `design` A [m rows of n values] and `targets` y [m]. Throws when m < n, a row
    /// has the wrong length, a value is not finite, or A has (numerically) dependent columns.
    public static func solve(design: [[Double]], targets: [Double]) throws -> [Double] {
        let m = design.count, n = design.first?.count ?? 0
        guard n >= 1, m >= n, targets.count == m, design.allSatisfy({ $0.count == n }) else {
            throw SparseMoEError.invalidArgument(op: "LinearLeastSquares", message: "need at least as many points (\(m)) as coefficients (\(n)), one target each (\(targets.count))")
        }
        guard design.allSatisfy({ $0.allSatisfy(\.isFinite) }), targets.allSatisfy(\.isFinite) else {
            throw SparseMoEError.invalidArgument(op: "LinearLeastSquares", message: "every value must be finite")
        }
        var a = design, y = targets
        let scale = (0..<n).map { j in max(design.map { abs($0[j]) }.max() ?? 0, 1e-300) }
        for j in 0..<n {
            // Householder reflection zeroing a[j+1..<m][j].
            var norm = 0.0
            for i in j..<m { norm += a[i][j] * a[i][j] }
            norm = norm.squareRoot()
            guard norm > 1e-12 * scale[j] * Double(m).squareRoot() else {
                throw SparseMoEError.invalidArgument(op: "LinearLeastSquares", message: "the columns are linearly dependent (column \(j)): the points do not determine every coefficient")
            }
            let alpha = a[j][j] > 0 ? -norm : norm
            var v = [Double](repeating: 0, count: m)
            v[j] = a[j][j] - alpha
            for i in (j + 1)..<max(j + 1, m) { v[i] = a[i][j] }
            let vv = v[j...].reduce(0) { $0 + $1 * $1 }
            guard vv > 0 else { continue }
            for k in j..<n {
                var dot = 0.0
                for i in j..<m { dot += v[i] * a[i][k] }
                let f = 2 * dot / vv
                for i in j..<m { a[i][k] -= f * v[i] }
            }
            var dot = 0.0
            for i in j..<m { dot += v[i] * y[i] }
            let f = 2 * dot / vv
            for i in j..<m { y[i] -= f * v[i] }
        }
        // Back substitution R·β = Qᵀy.
        var beta = [Double](repeating: 0, count: n)
        for j in stride(from: n - 1, through: 0, by: -1) {
            var s = y[j]
            for k in (j + 1)..<max(j + 1, n) { s -= a[j][k] * beta[k] }
            beta[j] = s / a[j][j]
        }
        return beta
    }
}

/// How well a fit's predictions ŷ match the measurements y.
public struct GoodnessOfFit: Codable, Sendable, Equatable {
    /// 1 − Σ(y − ŷ)² / Σ(y − ȳ)² (1 = perfect; NaN when all y are equal).
    public var r2: Double
    /// √(Σ(y − ŷ)² / m), in the units of y.
    public var rmse: Double
    /// m, the points fitted.
    public var points: Int

    public init(measured y: [Double], predicted p: [Double]) {
        precondition(y.count == p.count && !y.isEmpty, "GoodnessOfFit: one prediction per measurement")
        let mean = y.reduce(0, +) / Double(y.count)
        let sse = zip(y, p).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        let sst = y.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        r2 = sst > 0 ? 1 - sse / sst : .nan
        rmse = (sse / Double(y.count)).squareRoot()
        points = y.count
    }

    enum CodingKeys: String, CodingKey { case r2, rmse, points }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        r2 = try c.decodeIfPresent(Double.self, forKey: .r2) ?? .nan
        rmse = try c.decode(Double.self, forKey: .rmse)
        points = try c.decode(Int.self, forKey: .points)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if r2.isFinite { try c.encode(r2, forKey: .r2) } else { try c.encodeNil(forKey: .r2) }
        try c.encode(rmse, forKey: .rmse)
        try c.encode(points, forKey: .points)
    }
}
