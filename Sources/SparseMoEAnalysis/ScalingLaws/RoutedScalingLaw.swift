import Foundation
import SparseMoECore

/// Clark et al.'s saturating transform of the expert count E (Clark, de las Casas, Guy,
/// Mensch et al. 2022, "Unified Scaling Laws for Routed Language Models", arXiv 2202.01169):
///
///     1/Ê = 1 / (E − 1 + (1/E_start − 1/E_max)⁻¹) + 1/E_max
///
/// Ê(1) = E_start; Ê grows like E in between and saturates at E_max, where more experts
/// stop helping. E_start = 1, E_max = ∞ gives Ê = E (the unsaturated form).
public struct ExpertSaturation: Codable, Sendable, Equatable {
    public var eStart: Double
    /// `.infinity` for no saturation (written as null in JSON).
    public var eMax: Double

    public init(eStart: Double, eMax: Double) {
        precondition(eStart > 0 && eMax > eStart, "ExpertSaturation: need 0 < E_start < E_max")
        self.eStart = eStart
        self.eMax = eMax
    }

    /// Ê = E.
    public static let none = ExpertSaturation(eStart: 1, eMax: .infinity)

    /// Ê for `experts` E ≥ 1.
    public func effectiveExperts(_ experts: Double) -> Double {
        let inner = 1 / (1 / eStart - 1 / eMax)
        return 1 / (1 / (experts - 1 + inner) + 1 / eMax)
    }

    enum CodingKeys: String, CodingKey { case eStart = "e_start", eMax = "e_max" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        eStart = try c.decode(Double.self, forKey: .eStart)
        eMax = try c.decodeIfPresent(Double.self, forKey: .eMax) ?? .infinity
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eStart, forKey: .eStart)
        if eMax.isFinite { try c.encode(eMax, forKey: .eMax) } else { try c.encodeNil(forKey: .eMax) }
    }
}

/// Clark et al.'s (arXiv 2202.01169) law for routed models, bilinear in the logarithms:
///
///     ln L(N, E) = a·ln N + b·ln Ê + c·ln N·ln Ê + d
///
/// N: parameters of the dense base model (here: active non-embedding parameters, which
/// the E experts of a layer share at fixed active size), E: experts, Ê: `ExpertSaturation`.
/// a < 0: bigger base models do better; b < 0: more experts help; c > 0: the help
/// shrinks as N grows. Natural logarithms (a and b do not depend on the base; c and d do).
public struct RoutedScalingLaw: Codable, Sendable, Equatable {
    public var a: Double
    public var b: Double
    public var c: Double
    public var d: Double
    public var saturation: ExpertSaturation

    public init(a: Double, b: Double, c: Double, d: Double, saturation: ExpertSaturation = .none) {
        self.a = a
        self.b = b
        self.c = c
        self.d = d
        self.saturation = saturation
    }

    /// ln L(N, E).
    public func logLoss(parameters n: Double, experts e: Double) -> Double {
        let ln = log(n), le = log(saturation.effectiveExperts(e))
        return a * ln + b * le + c * ln * le + d
    }

    /// L(N, E).
    public func loss(parameters n: Double, experts e: Double) -> Double { exp(logLoss(parameters: n, experts: e)) }

    /// Clark et al.'s effective parameter count N̄: the base size whose E = 1 model reaches
    /// the loss of (N, E), from a·ln N̄ + b·l₁ + c·ln N̄·l₁ + d = ln L(N, E) with l₁ = ln Ê(1).
    /// N̄ / N is the effective-parameter multiplier of routing. NaN when a + c·l₁ = 0.
    public func effectiveParameters(parameters n: Double, experts e: Double) -> Double {
        let l1 = log(saturation.effectiveExperts(1))
        let slope = a + c * l1
        guard slope != 0 else { return .nan }
        return exp((logLoss(parameters: n, experts: e) - b * l1 - d) / slope)
    }

    /// Fits a, b, c, d by linear least squares in ln L for a fixed `saturation`.
    /// Needs ≥ 4 points with ≥ 2 distinct N and ≥ 2 distinct E (else the columns are
    /// dependent and this throws); N, E ≥ 1 and L > 0.
    public static func fit(parameters n: [Double], experts e: [Double], loss: [Double],
                           saturation: ExpertSaturation = .none) throws -> (law: RoutedScalingLaw, fit: GoodnessOfFit) {
        guard n.count == e.count, e.count == loss.count, n.count >= 4 else {
            throw SparseMoEError.invalidArgument(op: "RoutedScalingLaw.fit", message: "need at least 4 points (N, E, L), got \(n.count)")
        }
        guard n.allSatisfy({ $0 >= 1 && $0.isFinite }), e.allSatisfy({ $0 >= 1 && $0.isFinite }), loss.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw SparseMoEError.invalidArgument(op: "RoutedScalingLaw.fit", message: "N and E must be finite and ≥ 1, every loss finite and > 0")
        }
        guard Set(n).count >= 2, Set(e).count >= 2 else {
            throw SparseMoEError.invalidArgument(op: "RoutedScalingLaw.fit", message: "need at least 2 distinct base sizes N (got \(Set(n).count)) and 2 distinct expert counts E (got \(Set(e).count))")
        }
        let rows = zip(n, e).map { (ni, ei) -> [Double] in
            let ln = log(ni), le = log(saturation.effectiveExperts(ei))
            return [ln, le, ln * le, 1]
        }
        let beta = try LinearLeastSquares.solve(design: rows, targets: loss.map { log($0) })
        let law = RoutedScalingLaw(a: beta[0], b: beta[1], c: beta[2], d: beta[3], saturation: saturation)
        let predicted = zip(n, e).map { law.logLoss(parameters: $0, experts: $1) }
        return (law, GoodnessOfFit(measured: loss.map { log($0) }, predicted: predicted))
    }

    /// As `fit(parameters:experts:loss:saturation:)`, choosing E_start and E_max from the
    /// candidate lists (every pair with E_start < E_max) by the smallest squared error in
    /// ln L, as Clark et al. fit them jointly. `.infinity` in `eMaxes` = no saturation.
    public static func fit(parameters n: [Double], experts e: [Double], loss: [Double],
                           eStarts: [Double], eMaxes: [Double]) throws -> (law: RoutedScalingLaw, fit: GoodnessOfFit) {
        var best: (law: RoutedScalingLaw, fit: GoodnessOfFit)?
        var lastError: Error?
        for s in eStarts where s > 0 {
            for m in eMaxes where m > s {
                do {
                    let r = try fit(parameters: n, experts: e, loss: loss, saturation: ExpertSaturation(eStart: s, eMax: m))
                    if best == nil || r.fit.rmse < best!.fit.rmse - 1e-15 { best = r }
                } catch { lastError = error }
            }
        }
        guard let best else {
            throw lastError ?? SparseMoEError.invalidArgument(op: "RoutedScalingLaw.fit", message: "no candidate pair with 0 < E_start < E_max")
        }
        return best
    }
}
