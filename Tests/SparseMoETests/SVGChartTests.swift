import XCTest
import Foundation
#if canImport(FoundationXML)
import FoundationXML
@testable import SparseMoEReporting
#endif

/// Every chart must be well-formed XML (a browser or converter rejects anything else).
final class SVGChartTests: XCTestCase {
    func assertWellFormed(_ svg: String, _ name: String) {
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "\(name): \(parser.parserError.map { "\($0)" } ?? "parse failed")")
    }

    func testChartsAreWellFormedXML() {
        let series = SVGChart.Series(name: "a <b> & c", points: [(1, 2), (2, 1.5), (4, .nan), (8, 1)], color: "#123456")
        assertWellFormed(SVGChart.lineChart(title: "t", xLabel: "x", yLabel: "y", series: [series]), "line")
        assertWellFormed(SVGChart.lineChart(title: "t", xLabel: "x", yLabel: "y", series: [series], logX: true), "log line")
        assertWellFormed(SVGChart.barChart(title: "t", unit: "GFLOP/s", labels: ["w1", "w2"],
                                           series: [("op", [1, 2], "#111111"), ("ref", [2, .nan], "#222222")]), "bars")
        let panels: [(name: String, values: [[Double]])] = [("layer 0", [[0.1, 0.2], [0.3, 0.4]]), ("layer 1", [[0.25, 0.25], [0.2, 0.3]])]
        assertWellFormed(SVGChart.heatmaps(title: "h", panels: panels, rowLabel: "experts", columnLabel: "time"), "heatmap")
        assertWellFormed(SVGChart.heatmaps(title: "h", panels: panels, rowLabel: "experts", columnLabel: "time", center: 0.25), "diverging heatmap")
    }
}
