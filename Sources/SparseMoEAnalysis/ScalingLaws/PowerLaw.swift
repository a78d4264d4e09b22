import Foundation
import SparseMoECore

/// L(x) = a·x^(−α) + c: loss against parameters N, data D or compute C (Kaplan et al.
/// 2020, arXiv 2001.08361; Hoffmann et al. 2022, arXiv 2203.15556). c is the irreducible
/// loss the curve flattens to; α how fast it gets there.
public struct PowerLaw: Codable, Sendable, Equatable {
    public var a: Double
    public var alpha: Double
    public var c: Double

    public init(a: Double, alpha: Double, c: Double) {
        self.a = a
        self.alpha = alpha
        self.c = c
    }

    public func callAsFunction(_ x: Double) -> Double { a * pow(x, -alpha) + c }

    /// The x at which the law reaches `loss` (nil when `loss` ≤ c or the law does not fall).
    public func inverse(_ loss: Double) -> Double? {
        guard loss > c, a > 0, alpha != 0 else { return nil }
        return pow((loss - c) / a, -1 / alpha)
    }

    /// Fits the law to points (x > 0, y finite; at least 3) by nonlinear least squares in y:
    /// a grid over c ∈ [0, min y) (each c with a log-linear fit ln(y − c) = ln a − α ln x)
    /// gives the start, Levenberg–Marquardt on (ln a, α, c) refines it. Throws on bad points.
    public static func fit(x: [Double], y: [Double]) throws -> (law: PowerLaw, fit: GoodnessOfFit) {
        guard x.count == y.count, x.count >= 3 else {
            throw SparseMoEError.invalidArgument(op: "PowerLaw.fit", message: "need at least 3 points with one y per x, got \(x.count) x and \(y.count) y")
        }
        guard x.allSatisfy({ $0 > 0 && $0.isFinite }), y.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw SparseMoEError.invalidArgument(op: "PowerLaw.fit", message: "every x must be finite and > 0 and every y finite and > 0")
        }
        guard Set(x).count >= 3 else {
            throw SparseMoEError.invalidArgument(op: "PowerLaw.fit", message: "need at least 3 distinct x values to fit 3 coefficients, got \(Set(x).count)")
        }
        let lx = x.map { log($0) }
        func sse(_ p: PowerLaw) -> Double { zip(x, y).reduce(0) { $0 + pow(p($1.0) - $1.1, 2) } }
        // Start: the best c on a grid below min y (the log-linear fit needs y − c > 0).
        let yMin = y.min()!
        var best: PowerLaw?
        var bestSSE = Double.infinity
        for k in 0..<50 {
            let c = yMin * Double(k) / 50
            guard let (lnA, slope) = try? logLinear(lx, y.map { log($0 - c) }) else { continue }
            let p = PowerLaw(a: exp(lnA), alpha: -slope, c: c)
            let s = sse(p)
            if s < bestSSE { bestSSE = s; best = p }
        }
        guard var p = best else {
            throw SparseMoEError.invalidArgument(op: "PowerLaw.fit", message: "no start for the fit: the points do not determine a power law")
        }
        // Levenberg–Marquardt on θ = (ln a, α, c); residual r = a·x^−α + c − y.
        var lambda = 1e-3
        for _ in 0..<500 {
            var jtj = [[Double]](repeating: [0, 0, 0], count: 3), jtr = [0.0, 0, 0]
            for (xi, (lxi, yi)) in zip(x, zip(lx, y)) {
                let t = p.a * pow(xi, -p.alpha)
                let row = [t, -t * lxi, 1.0]
                let r = t + p.c - yi
                for i in 0..<3 {
                    jtr[i] += row[i] * r
                    for j in 0..<3 { jtj[i][j] += row[i] * row[j] }
                }
            }
            var improved = false
            while lambda < 1e12 {
                var m = jtj
                for i in 0..<3 { m[i][i] += lambda * max(jtj[i][i], 1e-12) }
                guard let step = try? LinearLeastSquares.solve(design: m, targets: jtr.map { -$0 }) else { lambda *= 10; continue }
                let q = PowerLaw(a: exp(log(p.a) + step[0]), alpha: p.alpha + step[1], c: p.c + step[2])
                let s = sse(q)
                if s.isFinite && s < bestSSE {
                    let gain = (bestSSE - s) / max(bestSSE, 1e-300)
                    p = q; bestSSE = s; lambda = max(lambda / 10, 1e-12); improved = true
                    if gain < 1e-14 { improved = false }
                    break
                }
                lambda *= 10
            }
            if !improved { break }
        }
        return (p, GoodnessOfFit(measured: y, predicted: x.map { p($0) }))
    }

    /// Intercept and slope of the ordinary least-squares line v = b₀ + b₁·u.
    static func logLinear(_ u: [Double], _ v: [Double]) throws -> (Double, Double) {
        let beta = try LinearLeastSquares.solve(design: u.map { [1, $0] }, targets: v)
        return (beta[0], beta[1])
    }
}
