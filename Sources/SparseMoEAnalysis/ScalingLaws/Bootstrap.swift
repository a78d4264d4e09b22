import Foundation
import SparseMoECore

/// A coefficient with its bootstrap confidence interval.
public struct EstimateWithInterval: Codable, Sendable, Equatable {
    public var value: Double
    /// Percentile interval bounds; nil when too few resamples could be fitted.
    public var low: Double?
    public var high: Double?

    public init(value: Double, low: Double?, high: Double?) {
        self.value = value
        self.low = low
        self.high = high
    }

    /// Whether `x` lies in [low, high] (false without an interval).
    public func contains(_ x: Double) -> Bool {
        guard let low, let high else { return false }
        return low <= x && x <= high
    }
}

/// Nonparametric bootstrap (Efron 1979): refit on m points drawn with replacement from the
/// m measured points, `resamples` times, and take percentile intervals of each coefficient.
/// Seeded: the same seed gives the same intervals.
public enum Bootstrap {
    /// Per coefficient of `fit` (which maps the chosen point indices to coefficients), the
    /// central `level` percentile interval over the resamples. Resamples whose fit throws
    /// (e.g. too few distinct points drawn) are skipped; with fewer than 20 that fit, or
    /// non-finite values, the bounds of that coefficient are nil. `estimate` = the fit on
    /// all points.
    public static func intervals(points m: Int, estimate: [Double], resamples: Int = 1000, level: Double = 0.9, seed: UInt64 = 0,
                                 fit: ([Int]) throws -> [Double]) -> [EstimateWithInterval] {
        precondition(m >= 1 && resamples >= 1 && level > 0 && level < 1, "Bootstrap: need points ≥ 1, resamples ≥ 1, 0 < level < 1")
        var rng = RandomGenerator(seed: seed)
        var samples = [[Double]](repeating: [], count: estimate.count)
        for _ in 0..<resamples {
            let idx = (0..<m).map { _ in rng.int(below: m) }
            guard let coefficients = try? fit(idx), coefficients.count == estimate.count else { continue }
            for (k, v) in coefficients.enumerated() where v.isFinite { samples[k].append(v) }
        }
        return estimate.enumerated().map { k, value in
            let s = samples[k].sorted()
            guard s.count >= 20 else { return EstimateWithInterval(value: value, low: nil, high: nil) }
            return EstimateWithInterval(value: value, low: percentile(s, (1 - level) / 2), high: percentile(s, (1 + level) / 2))
        }
    }

    /// Linear-interpolated percentile of sorted values, p ∈ [0, 1].
    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        let rank = p * Double(sorted.count - 1)
        let lo = Int(rank.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (rank - Double(lo)) * (sorted[hi] - sorted[lo])
    }
}
