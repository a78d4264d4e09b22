import Foundation
import SparseMoECore

/// Minimal SVG charts for reports (loss curves, GFLOP/s bars, expert-load heatmaps).
/// Pure text output; `SVGChart.writePNG` converts with `rsvg-convert` or ImageMagick
/// when one is installed.
public enum SVGChart {
    /// One line of a line chart.
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        public init(name: String, points: [(x: Double, y: Double)], color: String) {
            self.name = name
            self.points = points
            self.color = color
        }
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func fmt(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        if v == v.rounded() && a < 1e15 { return String(format: "%.0f", v) }
        if a >= 1000 { return String(format: "%.0f", v) }
        if a >= 10 { return String(format: "%.1f", v) }
        return String(format: "%.2f", v)
    }

    /// A line chart with axes, ticks and a legend.
    public static func lineChart(title: String, xLabel: String, yLabel: String, series: [Series],
                                 width: Int = 720, height: Int = 420, logX: Bool = false) -> String {
        let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0)
        let pw = Double(width) - left - right, ph = Double(height) - top - bottom
        let all = series.flatMap(\.points).filter { $0.y.isFinite }
        let tx: (Double) -> Double = logX ? { log2(max($0, 1e-9)) } : { $0 }
        let xs = all.map { tx($0.x) }, ys = all.map(\.y)
        let (x0, x1) = (xs.min() ?? 0, max(xs.max() ?? 1, (xs.min() ?? 0) + 1e-9))
        var (y0, y1) = (ys.min() ?? 0, ys.max() ?? 1)
        if y1 - y0 < 1e-9 { y1 = y0 + 1 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        func px(_ x: Double) -> Double { left + (tx(x) - x0) / (x1 - x0) * pw }
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * ph }
        var svg = header(width, height, title)
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#444\"/>\n"
        for i in 0...5 {
            let y = y0 + (y1 - y0) * Double(i) / 5
            svg += "<line x1=\"\(left)\" x2=\"\(left + pw)\" y1=\"\(py(y))\" y2=\"\(py(y))\" stroke=\"#ddd\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(py(y) + 4)\" text-anchor=\"end\" font-size=\"11\">\(fmt(y))</text>\n"
        }
        // x ticks: powers of two on a log axis, otherwise round steps (1, 2 or 5 × 10ⁿ).
        var xTicks: [Double] = []
        if logX {
            xTicks = stride(from: x0.rounded(.up), through: x1, by: 1).map { pow(2, $0) }
        } else {
            let raw = (x1 - x0) / 5, mag = pow(10, (log10(max(raw, 1e-12))).rounded(.down))
            let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
            xTicks = stride(from: (x0 / step).rounded(.up) * step, through: x1, by: step).map { $0 }
        }
        for xv in xTicks {
            svg += "<text x=\"\(px(xv))\" y=\"\(top + ph + 16)\" text-anchor=\"middle\" font-size=\"11\">\(fmt(xv))</text>\n"
        }
        svg += "<text x=\"\(left + pw / 2)\" y=\"\(Double(height) - 10)\" text-anchor=\"middle\" font-size=\"12\">\(esc(xLabel))</text>\n"
        svg += "<text x=\"16\" y=\"\(top + ph / 2)\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 16 \(top + ph / 2))\">\(esc(yLabel))</text>\n"
        for (i, s) in series.enumerated() {
            let pts = s.points.filter { $0.y.isFinite }.map { "\(px($0.x)),\(py($0.y))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\" points=\"\(pts)\"/>\n"
            if s.points.count <= 40 {
                for p in s.points where p.y.isFinite {
                    svg += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"2.5\" fill=\"\(s.color)\"/>"
                }
            }
            let ly = top + 14 + Double(i) * 16
            svg += "<rect x=\"\(left + pw - 170)\" y=\"\(ly - 9)\" width=\"12\" height=\"3\" fill=\"\(s.color)\"/>"
            svg += "<text x=\"\(left + pw - 152)\" y=\"\(ly - 4)\" font-size=\"11\">\(esc(s.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// Grouped horizontal bars: one group per label, one bar per series value.
    public static func barChart(title: String, unit: String, labels: [String], series: [(name: String, values: [Double], color: String)],
                                width: Int = 720) -> String {
        let barH = 14.0, gap = 10.0, left = 130.0, top = 40.0
        let groupH = Double(series.count) * barH + gap
        let height = Int(top + Double(labels.count) * groupH + 40 + Double(series.count) * 16)
        let maxV = max(series.flatMap(\.values).filter(\.isFinite).max() ?? 1, 1e-9)
        let pw = Double(width) - left - 80
        var svg = header(width, height, title)
        for (g, label) in labels.enumerated() {
            let gy = top + Double(g) * groupH
            svg += "<text x=\"\(left - 8)\" y=\"\(gy + groupH / 2)\" text-anchor=\"end\" font-size=\"12\">\(esc(label))</text>\n"
            for (i, s) in series.enumerated() where g < s.values.count {
                let v = s.values[g]
                let w = v.isFinite ? v / maxV * pw : 0
                let y = gy + Double(i) * barH
                svg += "<rect x=\"\(left)\" y=\"\(y)\" width=\"\(w)\" height=\"\(barH - 2)\" fill=\"\(s.color)\"/>"
                svg += "<text x=\"\(left + w + 4)\" y=\"\(y + barH - 4)\" font-size=\"10\">\(fmt(v))</text>\n"
            }
        }
        let ly = top + Double(labels.count) * groupH + 10
        for (i, s) in series.enumerated() {
            svg += "<rect x=\"\(left)\" y=\"\(ly + Double(i) * 16)\" width=\"12\" height=\"10\" fill=\"\(s.color)\"/>"
            svg += "<text x=\"\(left + 18)\" y=\"\(ly + Double(i) * 16 + 9)\" font-size=\"11\">\(esc(s.name)) (\(esc(unit)))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// Heatmaps stacked vertically: one panel per entry, rows × columns of values.
    /// Used for the expert load per layer over training (rows = experts, columns = time).
    /// With `center` (the balanced share 1/E) colours diverge: blue below, red above.
    public static func heatmaps(title: String, panels: [(name: String, values: [[Double]])], rowLabel: String,
                                columnLabel: String, center: Double? = nil, cellWidth: Double = 9, cellHeight: Double = 11) -> String {
        let all = panels.flatMap { $0.values.flatMap { $0 } }
        let maxV = max(all.max() ?? 1, 1e-12)
        let maxDev = max(all.map { abs($0 - (center ?? 0)) }.max() ?? 1, 1e-12)
        let left = 70.0, top = 40.0, gap = 26.0
        let columns = panels.map { $0.values.first?.count ?? 0 }.max() ?? 0
        let heights = panels.map { Double($0.values.count) * cellHeight }
        let width = Int(left + Double(columns) * cellWidth + 30)
        let height = Int(top + heights.reduce(0, +) + gap * Double(panels.count) + 40)
        var svg = header(max(width, 480), height, title)
        var y = top
        for (p, panel) in panels.enumerated() {
            svg += "<text x=\"\(left)\" y=\"\(y + 12)\" font-size=\"12\">\(esc(panel.name))</text>\n"
            y += 16
            for (r, row) in panel.values.enumerated() {
                svg += "<text x=\"\(left - 6)\" y=\"\(y + Double(r) * cellHeight + cellHeight - 2)\" text-anchor=\"end\" font-size=\"9\">e\(r)</text>"
                for (c, v) in row.enumerated() {
                    let color = center.map { divergingColor((v - $0) / maxDev) } ?? heatColor(min(max(v / maxV, 0), 1))
                    svg += "<rect x=\"\(left + Double(c) * cellWidth)\" y=\"\(y + Double(r) * cellHeight)\" width=\"\(cellWidth)\" height=\"\(cellHeight)\" fill=\"\(color)\"/>"
                }
                svg += "\n"
            }
            y += heights[p] + gap - 16
        }
        let legend = center.map { String(format: "colour: share of assignments; white = balanced (%.3f), red above, blue below (full colour at ±%.3f)", $0, maxDev) }
            ?? "colour: share of assignments, 0 (light) to \(fmt(maxV)) (dark)"
        svg += "<text x=\"\(left)\" y=\"\(y + 8)\" font-size=\"11\">rows: \(esc(rowLabel)); columns: \(esc(columnLabel))</text>\n"
        svg += "<text x=\"\(left)\" y=\"\(y + 24)\" font-size=\"11\">\(esc(legend))</text>\n"
        return svg + "</svg>\n"
    }

    /// t in [-1, 1]: blue (−1) → white (0) → red (+1).
    static func divergingColor(_ t: Double) -> String {
        let u = min(max(t, -1), 1)
        let (r, g, b) = u >= 0 ? (255.0, 255 - 200 * u, 255 - 210 * u) : (255 + 210 * u, 255 + 150 * u, 255.0)
        return String(format: "#%02x%02x%02x", Int(r), Int(g), Int(b))
    }

    static func heatColor(_ t: Double) -> String {
        // light yellow → dark red
        let r = Int(255 - 80 * t), g = Int(250 - 220 * t), b = Int(200 - 190 * t)
        return String(format: "#%02x%02x%02x", r, g, b)
    }

    static func header(_ w: Int, _ h: Int, _ title: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(esc(title))</text>\n"
    }

    /// Writes `svg` to `url` and, when `rsvg-convert` or ImageMagick's `convert` is
    /// installed, a PNG beside it. Returns the PNG's URL if one was made.
    @discardableResult
    public static func write(_ svg: String, to url: URL) throws -> URL? {
        try AtomicFile.write(Data(svg.utf8), to: url)
        let png = url.deletingPathExtension().appendingPathExtension("png")
        for (tool, args) in [("/usr/bin/rsvg-convert", ["-o", png.path, url.path]), ("/usr/bin/convert", [url.path, png.path])] {
            guard FileManager.default.isExecutableFile(atPath: tool) else { continue }
            if tool.hasSuffix("convert") && !tool.hasSuffix("rsvg-convert") && !isImageMagick(tool) { continue }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            do { try p.run(); p.waitUntilExit() } catch { continue }
            if p.terminationStatus == 0, FileManager.default.fileExists(atPath: png.path) { return png }
        }
        return nil
    }

    static func isImageMagick(_ tool: String) -> Bool {
        let p = Process(), pipe = Pipe()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["-version"]
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return out.contains("ImageMagick")
    }
}
