import Foundation
import SparseMoE
import SparseMoEReporting

/// A fitted power law with intervals, as written to fits.json.
public struct PowerLawReport: Codable, Sendable {
    /// What x is ("non-embedding active parameters", "tokens", "training FLOPs").
    public var x: String
    public var a: EstimateWithInterval
    public var alpha: EstimateWithInterval
    public var c: EstimateWithInterval
    public var fit: GoodnessOfFit
    /// Ids of the points fitted.
    public var points: [String]
    public var law: PowerLaw { PowerLaw(a: a.value, alpha: alpha.value, c: c.value) }
}

/// The routed law with intervals, and the effective-parameter multiplier N̄/N per MoE point.
public struct RoutedLawReport: Codable, Sendable {
    public var a: EstimateWithInterval
    public var b: EstimateWithInterval
    public var c: EstimateWithInterval
    public var d: EstimateWithInterval
    public var saturation: ExpertSaturation
    /// Goodness of fit in ln L.
    public var fit: GoodnessOfFit
    public var points: [String]
    public var multipliers: [Multiplier]
    public struct Multiplier: Codable, Sendable {
        public var parameters: Int
        public var experts: Int
        /// N̄ / N, from the fitted law.
        public var multiplier: Double
    }
    public var law: RoutedScalingLaw { RoutedScalingLaw(a: a.value, b: b.value, c: c.value, d: d.value, saturation: saturation) }
    enum CodingKeys: String, CodingKey { case a, b, c, d, saturation, fit, points, multipliers }
}

/// The fit's prediction for the held-out larger point, and (after `--predict`) its measurement.
public struct PredictionReport: Codable, Sendable {
    public var id: String
    /// "dense L(N)" or "routed L(N, E)".
    public var law: String
    public var parameters: Int
    public var predicted: EstimateWithInterval
    public var measured: Double?
    /// measured − predicted (nats).
    public var error: Double?
}

/// Everything `moe scaling` fitted, written as fits.json. A fit the points cannot support
/// is nil, with the reason in `notes`.
public struct ScalingFits: Codable, Sendable {
    public var grid: String
    public var budget: ScalingBudget
    /// Dense L(N) at budget fraction 1.
    public var parameters: PowerLawReport?
    /// L(D) of the largest dense shape over its budget fractions.
    public var data: PowerLawReport?
    /// The compute-optimal frontier over all dense runs (ids, by compute) and L(C) on it.
    public var frontier: [String]
    public var compute: PowerLawReport?
    /// Clark et al.'s routed law over the MoE points.
    public var routed: RoutedLawReport?
    public var prediction: PredictionReport?
    public var notes: [String]
    public var bootstrap: BootstrapSettings
    public struct BootstrapSettings: Codable, Sendable {
        public var resamples: Int
        public var level: Double
        public var seed: UInt64
    }

    /// Candidate E_start and E_max of the routed fit (∞ = no saturation).
    public static let eStarts: [Double] = [1, 1.5, 2, 3]
    public static let eMaxes: [Double] = [32, 64, 128, 256, 512, .infinity]

    /// Fits the laws to the `ok` results of `sweep` (prediction points excluded) and
    /// predicts `target` (when given). Intervals: `resamples` bootstrap refits, seeded.
    public static func compute(results: [ScalingPointResult], grid: ScalingGrid, budget: ScalingBudget,
                               target: ScalingPlan? = nil, resamples: Int = 500, level: Double = 0.9, seed: UInt64 = 0) -> ScalingFits {
        let ok = results.filter { $0.status == .ok && $0.point.role == .grid && $0.validationLoss != nil }
        var notes: [String] = []
        let failed = results.filter { $0.status == .failed }
        if !failed.isEmpty { notes.append("\(failed.count) point(s) failed and are left out: \(failed.map(\.id).joined(separator: ", "))") }
        func loss(_ r: ScalingPointResult) -> Double { r.validationLoss! }

        // Dense L(N) at fraction 1; the prediction of a dense target rides along as a 4th value.
        let denseFull = ok.filter { $0.point.experts == nil && $0.point.fraction == 1 }
        var prediction: PredictionReport?
        let denseTarget = target.flatMap { $0.point.experts == nil ? Double($0.parameters) : nil }
        let parameters = powerLaw("non-embedding active parameters", denseFull, x: { Double($0.parameters) }, extra: denseTarget,
                                  resamples: resamples, level: level, seed: seed, notes: &notes, label: "dense L(N)")
        if let t = target, let n = denseTarget, let p = parameters {
            prediction = PredictionReport(id: t.point.id, law: "dense L(N)", parameters: t.parameters, predicted: p.extra ?? EstimateWithInterval(value: p.report.law(n), low: nil, high: nil), measured: nil, error: nil)
        }
        // L(D): the largest dense shape over its fractions.
        var data: PowerLawReport?
        if let biggest = ok.filter({ $0.point.experts == nil }).max(by: { $0.parameters < $1.parameters }) {
            let runs = ok.filter { $0.point.experts == nil && $0.point.shape == biggest.point.shape }
            data = powerLaw("tokens", runs, x: { Double($0.tokens) }, extra: nil, resamples: resamples, level: level, seed: seed,
                            notes: &notes, label: "L(D)")?.report
        }
        // Compute frontier over every dense run.
        let dense = ok.filter { $0.point.experts == nil }
        let idx = ComputeFrontier.indices(compute: dense.map(\.trainingFlops), loss: dense.map(loss))
        let frontierRuns = idx.map { dense[$0] }
        let computeLaw = powerLaw("training FLOPs", frontierRuns, x: { $0.trainingFlops }, extra: nil, resamples: resamples, level: level,
                                  seed: seed, notes: &notes, label: "L(C) on the frontier")?.report
        // Routed law.
        let moe = ok.filter { $0.point.experts != nil }
        var routed: RoutedLawReport?
        let moeTarget = target.flatMap { t in t.point.experts.map { (Double(t.parameters), Double($0)) } }
        if moe.isEmpty {
            notes.append("routed L(N, E): no MoE points")
        } else {
            let n = moe.map { Double($0.parameters) }, e = moe.map { Double($0.point.experts!) }, l = moe.map(loss)
            do {
                let (law, fit) = try RoutedScalingLaw.fit(parameters: n, experts: e, loss: l, eStarts: eStarts, eMaxes: eMaxes)
                var estimate = [law.a, law.b, law.c, law.d]
                if let (tn, te) = moeTarget { estimate.append(law.loss(parameters: tn, experts: te)) }
                let ci = Bootstrap.intervals(points: moe.count, estimate: estimate, resamples: resamples, level: level, seed: seed) { idx in
                    let r = try RoutedScalingLaw.fit(parameters: idx.map { n[$0] }, experts: idx.map { e[$0] }, loss: idx.map { l[$0] },
                                                     eStarts: eStarts, eMaxes: eMaxes).law
                    return [r.a, r.b, r.c, r.d] + (moeTarget.map { [r.loss(parameters: $0.0, experts: $0.1)] } ?? [])
                }
                let multipliers = moe.map { r in
                    RoutedLawReport.Multiplier(parameters: r.parameters, experts: r.point.experts!,
                                               multiplier: law.effectiveParameters(parameters: Double(r.parameters), experts: Double(r.point.experts!)) / Double(r.parameters))
                }
                routed = RoutedLawReport(a: ci[0], b: ci[1], c: ci[2], d: ci[3], saturation: law.saturation, fit: fit, points: moe.map(\.id), multipliers: multipliers)
                if let t = target, moeTarget != nil {
                    prediction = PredictionReport(id: t.point.id, law: "routed L(N, E)", parameters: t.parameters, predicted: ci[4], measured: nil, error: nil)
                }
            } catch {
                notes.append("routed L(N, E): \(error)")
            }
        }
        if target != nil && prediction == nil { notes.append("prediction: the law it needs could not be fitted") }
        if let t = target, let r = results.first(where: { $0.id == t.point.id && $0.status == .ok }), let m = r.validationLoss, prediction != nil {
            prediction!.measured = m
            prediction!.error = m - prediction!.predicted.value
        }
        return ScalingFits(grid: grid.name, budget: budget, parameters: parameters?.report, data: data, frontier: frontierRuns.map(\.id),
                           compute: computeLaw, routed: routed, prediction: prediction, notes: notes,
                           bootstrap: BootstrapSettings(resamples: resamples, level: level, seed: seed))
    }

    /// A power law over `runs` with bootstrap intervals; `extra` (an x) adds the law's value
    /// there, with its interval. Nil (and a note) when the runs cannot support a fit.
    static func powerLaw(_ name: String, _ runs: [ScalingPointResult], x: (ScalingPointResult) -> Double, extra: Double?,
                         resamples: Int, level: Double, seed: UInt64, notes: inout [String], label: String)
        -> (report: PowerLawReport, extra: EstimateWithInterval?)? {
        let xs = runs.map(x), ys = runs.map { $0.validationLoss! }
        do {
            let (law, fit) = try PowerLaw.fit(x: xs, y: ys)
            if Set(xs).count == 3 {
                notes.append("\(label): 3 points for 3 coefficients, so the law passes through them exactly; its R² and intervals say nothing (give the grid a 4th point)")
            }
            var estimate = [law.a, law.alpha, law.c]
            if let e = extra { estimate.append(law(e)) }
            let ci = Bootstrap.intervals(points: runs.count, estimate: estimate, resamples: resamples, level: level, seed: seed) { idx in
                let p = try PowerLaw.fit(x: idx.map { xs[$0] }, y: idx.map { ys[$0] }).law
                return [p.a, p.alpha, p.c] + (extra.map { [p($0)] } ?? [])
            }
            return (PowerLawReport(x: name, a: ci[0], alpha: ci[1], c: ci[2], fit: fit, points: runs.map(\.id)), extra == nil ? nil : ci[3])
        } catch {
            notes.append("\(label): \(error)")
            return nil
        }
    }
}
