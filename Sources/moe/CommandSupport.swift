import Foundation

/// Whether standard output is an interactive terminal (progress bars) or a pipe/file (log lines).
var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

/// Writes a line to standard error.
func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// "1,234,567"
func grouped(_ n: Int) -> String {
    let s = String(abs(n))
    var out = ""
    for (i, ch) in s.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return (n < 0 ? "-" : "") + String(out.reversed())
}

/// 1.23 M, 4.5 G, ...
func humanCount(_ v: Double) -> String {
    let a = abs(v)
    if a >= 1e12 { return String(format: "%.2f T", v / 1e12) }
    if a >= 1e9 { return String(format: "%.2f G", v / 1e9) }
    if a >= 1e6 { return String(format: "%.2f M", v / 1e6) }
    if a >= 1e3 { return String(format: "%.1f k", v / 1e3) }
    return String(format: "%.0f", v)
}

/// "1:05" or "1:02:03"
func clock(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "--:--" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}

/// ▁▂▃▄▅▆▇█ bars for values relative to their maximum.
func sparkline(_ values: [Double]) -> String {
    let bars = Array("▁▂▃▄▅▆▇█")
    let m = max(values.max() ?? 0, 1e-12)
    return String(values.map { bars[min(bars.count - 1, Int(($0 / m) * Double(bars.count - 1) + 0.5))] })
}

/// Pads `s` to `width` characters: right-aligned for positive widths, left-aligned for negative.
func pad(_ s: String, _ width: Int) -> String {
    let fill = String(repeating: " ", count: max(0, abs(width) - s.count))
    return width >= 0 ? fill + s : s + fill
}
