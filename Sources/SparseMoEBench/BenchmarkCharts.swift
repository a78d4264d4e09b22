import Foundation
import SparseMoE
import SparseMoEReporting

/// GFLOP/s of a reference implementation on a workload (read from the PyTorch script's JSON
/// lines: `workload`, `forward_gflops`, `forward_backward_gflops`).
public struct ReferenceThroughput: Codable, Sendable {
    public var workload: String
    public var forwardGFLOPS: Double
    public var forwardBackwardGFLOPS: Double

    enum CodingKeys: String, CodingKey {
        case workload, forwardGFLOPS = "forward_gflops", forwardBackwardGFLOPS = "forward_backward_gflops"
    }

    /// The JSON lines of a file; lines without `forward_gflops` (other records) are skipped.
    public static func load(jsonLines path: String) throws -> [ReferenceThroughput] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SparseMoEError.file(path: path, message: "cannot read the reference results (JSON lines)")
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            try? JSONDecoder().decode(ReferenceThroughput.self, from: Data(line.utf8))
        }
    }
}

/// The plots of `moe bench --out DIR` (SVG, and PNG beside them where a converter exists).
public enum BenchmarkCharts {
    /// Bars per workload: op, grouped roofline, dense sgemm and (if given) PyTorch; forward
    /// and forward + backward. Returns the SVG's URL.
    @discardableResult
    public static func writeWorkloads(_ results: [ExpertBenchmarkResult], reference: [ReferenceThroughput] = [],
                                      referenceName: String = "PyTorch eager", to dir: URL) throws -> URL {
        let labels = results.map(\.workload)
        func ref(_ r: ExpertBenchmarkResult, _ fb: Bool) -> Double {
            guard let x = reference.first(where: { $0.workload == r.workload }) else { return .nan }
            return fb ? x.forwardBackwardGFLOPS : x.forwardGFLOPS
        }
        var series: [(name: String, values: [Double], color: String)] = [
            ("forward: SparseMoE routedExperts", results.map(\.forwardGFLOPS), "#1f77b4"),
            ("forward: grouped sgemm roofline", results.map(\.rooflineGroupedGFLOPS), "#aec7e8"),
        ]
        if !reference.isEmpty { series.append(("forward: \(referenceName)", results.map { ref($0, false) }, "#ff7f0e")) }
        series += [
            ("fwd+bwd: SparseMoE routedExperts", results.map(\.forwardBackwardGFLOPS), "#2ca02c"),
            ("fwd+bwd: grouped sgemm roofline", results.map(\.rooflineGroupedForwardBackwardGFLOPS), "#98df8a"),
        ]
        if !reference.isEmpty { series.append(("fwd+bwd: \(referenceName)", results.map { ref($0, true) }, "#ffbb78")) }
        series.append(("dense sgemm, same FLOPs", results.map(\.rooflineDenseGFLOPS), "#999999"))
        let threads = results.first?.threads ?? Threads.count
        let svg = SVGChart.barChart(title: "MoE expert computation, useful GFLOP/s (\(threads) threads)", unit: "GFLOP/s",
                                    labels: labels, series: series, width: 820)
        let url = dir.appendingPathComponent("workloads_gflops.svg")
        try SVGChart.write(svg, to: url)
        return url
    }

    /// A sweep as a line chart of milliseconds (`experts`: x = E on a log axis) or GFLOP/s.
    @discardableResult
    public static func writeSweep(_ sweep: ExpertSweep, points: [SweepPoint], to dir: URL) throws -> URL {
        let x: (SweepPoint) -> Double
        let xLabel: String
        switch sweep {
        case .experts: x = { Double($0.numExperts) }; xLabel = "experts E (K·F = 1024 fixed: E = 1 is a dense FFN of 1024)"
        case .topk: x = { Double($0.topK) }; xLabel = "top-k K (mixtral-like, E = 8, F = 1024)"
        case .tokens: x = { Double($0.tokens) }; xLabel = "tokens T (mixtral-like)"
        case .threads: x = { Double($0.threads) }; xLabel = "threads"
        }
        let svg: String
        if sweep == .experts {
            svg = SVGChart.lineChart(title: "Cost at fixed active FLOPs as experts grow (T=2048, C=512)", xLabel: xLabel, yLabel: "milliseconds",
                                     series: [
                                        .init(name: "fwd+bwd: routedExperts", points: points.map { (x($0), $0.forwardBackwardMS) }, color: "#2ca02c"),
                                        .init(name: "fwd+bwd: sgemm roofline", points: points.map { (x($0), $0.rooflineGroupedForwardBackwardMS) }, color: "#98df8a"),
                                        .init(name: "forward: routedExperts", points: points.map { (x($0), $0.forwardMS) }, color: "#1f77b4"),
                                        .init(name: "forward: sgemm roofline", points: points.map { (x($0), $0.rooflineGroupedForwardMS) }, color: "#aec7e8"),
                                     ], logX: true)
        } else {
            svg = SVGChart.lineChart(title: "\(sweep.rawValue) sweep: useful GFLOP/s", xLabel: xLabel, yLabel: "GFLOP/s",
                                     series: [
                                        .init(name: "forward: routedExperts", points: points.map { (x($0), $0.forwardGFLOPS) }, color: "#1f77b4"),
                                        .init(name: "forward: sgemm roofline", points: points.map { (x($0), $0.rooflineGroupedGFLOPS) }, color: "#aec7e8"),
                                        .init(name: "fwd+bwd: routedExperts", points: points.map { (x($0), $0.forwardBackwardGFLOPS) }, color: "#2ca02c"),
                                        .init(name: "fwd+bwd: sgemm roofline", points: points.map { (x($0), $0.rooflineGroupedForwardBackwardGFLOPS) }, color: "#98df8a"),
                                     ], logX: true)
        }
        let url = dir.appendingPathComponent("sweep_\(sweep.rawValue).svg")
        try SVGChart.write(svg, to: url)
        return url
    }

    /// Speedup of `threads` threads over one, per workload: op and roofline.
    @discardableResult
    public static func writeThreadScaling(_ points: [ThreadScalingPoint], to dir: URL) throws -> URL {
        let n = points.first?.threads ?? 2
        let svg = SVGChart.barChart(title: "Speedup on \(n) threads over 1 thread", unit: "×", labels: points.map(\.workload), series: [
            ("forward: routedExperts", points.map(\.forwardSpeedup), "#1f77b4"),
            ("forward: sgemm roofline", points.map(\.rooflineForwardSpeedup), "#aec7e8"),
            ("fwd+bwd: routedExperts", points.map(\.forwardBackwardSpeedup), "#2ca02c"),
            ("fwd+bwd: sgemm roofline", points.map(\.rooflineForwardBackwardSpeedup), "#98df8a"),
        ])
        let url = dir.appendingPathComponent("sweep_threads.svg")
        try SVGChart.write(svg, to: url)
        return url
    }
}
