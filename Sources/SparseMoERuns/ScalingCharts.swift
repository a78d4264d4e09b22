import Foundation
import SparseMoE
import SparseMoEReporting

/// The SVG charts of a sweep (PNG beside each when a converter is installed):
/// loss_vs_parameters.svg, loss_vs_compute.svg, loss_vs_experts.svg, effective_parameters.svg.
public enum ScalingCharts {
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    /// x values spread evenly in log between lo and hi.
    static func logSpace(_ lo: Double, _ hi: Double, _ n: Int = 40) -> [Double] {
        (0..<n).map { exp(log(lo) + (log(hi) - log(lo)) * Double($0) / Double(n - 1)) }
    }

    /// Writes the charts into `folder`; returns the SVG files written.
    @discardableResult
    public static func write(results: [ScalingPointResult], fits: ScalingFits, to folder: URL) throws -> [URL] {
        let ok = results.filter { $0.status == .ok && $0.validationLoss != nil }
        var written: [URL] = []
        func save(_ svg: String, _ name: String) throws {
            let url = folder.appendingPathComponent(name)
            try SVGChart.write(svg, to: url)
            written.append(url)
        }
        // Loss against parameters (dense, full budget) with L(N), and the predicted point.
        let dense = ok.filter { $0.point.experts == nil && $0.point.fraction == 1 }.sorted { $0.parameters < $1.parameters }
        if !dense.isEmpty {
            var series = [SVGChart.Series(name: "dense runs", points: dense.map { (Double($0.parameters), $0.validationLoss!) }, color: colors[0])]
            let predicted = ok.filter { $0.point.role == .prediction }
            if let law = fits.parameters?.law {
                let hi = max(Double(dense.last!.parameters), Double(predicted.map(\.parameters).max() ?? 0))
                series.append(SVGChart.Series(name: String(format: "fit %.3g·N^-%.3f + %.3f", law.a, law.alpha, law.c),
                                              points: logSpace(Double(dense.first!.parameters), hi).map { ($0, law($0)) }, color: colors[1]))
            }
            if !predicted.isEmpty {
                series.append(SVGChart.Series(name: "held-out run (measured)", points: predicted.map { (Double($0.parameters), $0.validationLoss!) }, color: colors[2]))
            }
            try save(SVGChart.lineChart(title: "Loss against parameters (\(fits.grid) grid, \(fits.budget.rawValue) budget)",
                                        xLabel: "non-embedding parameters N (log scale)", yLabel: "validation loss (nats/token)",
                                        series: series, logX: true), "loss_vs_parameters.svg")
        }
        // Loss against compute: every dense shape over its fractions, the frontier law.
        let allDense = ok.filter { $0.point.experts == nil && $0.point.role == .grid }
        if !allDense.isEmpty {
            var shapes: [ScalingShape] = []
            for r in allDense where !shapes.contains(r.point.shape) { shapes.append(r.point.shape) }
            var series = shapes.enumerated().map { i, s in
                let runs = allDense.filter { $0.point.shape == s }.sorted { $0.trainingFlops < $1.trainingFlops }
                return SVGChart.Series(name: "L\(s.layers) C\(s.hidden) F\(s.ffn)", points: runs.map { ($0.trainingFlops, $0.validationLoss!) },
                                       color: colors[i % colors.count])
            }
            if let law = fits.compute?.law {
                let cs = allDense.map(\.trainingFlops)
                series.append(SVGChart.Series(name: String(format: "frontier fit, α = %.3f", law.alpha),
                                              points: logSpace(cs.min()!, cs.max()!).map { ($0, law($0)) }, color: "#000000"))
            }
            try save(SVGChart.lineChart(title: "Loss against training compute", xLabel: "training FLOPs C (log scale)",
                                        yLabel: "validation loss (nats/token)", series: series, logX: true), "loss_vs_compute.svg")
        }
        // Loss against E per base, with the routed law; and the effective-parameter multiplier.
        let moe = ok.filter { $0.point.experts != nil && $0.point.role == .grid }
        var bases: [Int] = []
        for r in moe where !bases.contains(r.parameters) { bases.append(r.parameters) }
        if !moe.isEmpty {
            var series: [SVGChart.Series] = []
            var multipliers: [SVGChart.Series] = []
            for (i, n) in bases.enumerated() {
                let runs = moe.filter { $0.parameters == n }.sorted { $0.point.experts! < $1.point.experts! }
                let color = colors[(2 * i) % colors.count]
                series.append(SVGChart.Series(name: "N = \(n) measured", points: runs.map { (Double($0.point.experts!), $0.validationLoss!) }, color: color))
                if let law = fits.routed?.law {
                    let es = logSpace(1, Double(runs.last!.point.experts!), 24)
                    series.append(SVGChart.Series(name: "N = \(n) fit", points: es.map { ($0, law.loss(parameters: Double(n), experts: $0)) },
                                                  color: colors[(2 * i + 1) % colors.count]))
                    multipliers.append(SVGChart.Series(name: "N = \(n)", points: es.map { ($0, law.effectiveParameters(parameters: Double(n), experts: $0) / Double(n)) },
                                                       color: color))
                }
            }
            try save(SVGChart.lineChart(title: "Loss against experts at fixed active size", xLabel: "experts E (log scale)",
                                        yLabel: "validation loss (nats/token)", series: series, logX: true), "loss_vs_experts.svg")
            if !multipliers.isEmpty {
                try save(SVGChart.lineChart(title: "Effective-parameter multiplier of routing (Clark et al.)", xLabel: "experts E (log scale)",
                                            yLabel: "N̄ / N (dense parameters worth the same loss)", series: multipliers, logX: true),
                         "effective_parameters.svg")
            }
        }
        return written
    }
}
