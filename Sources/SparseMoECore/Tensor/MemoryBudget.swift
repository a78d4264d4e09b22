import Foundation

/// How much memory a request made from user-given sizes (a config's `vocab_size`, a
/// batch size, a KV cache length) may take, checked before anything is allocated.
///
/// Tensor allocation does not throw (an allocation failure inside the library is a
/// fatal error), so every place that allocates from sizes a user chose estimates the
/// bytes first and calls `check`, which throws `SparseMoEError.invalidConfig` naming the
/// field, the bytes needed and the bytes available.
///
/// Available bytes: `MemAvailable` of `/proc/meminfo` (free memory plus reclaimable
/// caches), else the physical memory (`ProcessInfo.physicalMemory`).
/// Sizes multiply with `product`, which saturates at `Int.max` instead of trapping.
public enum MemoryBudget {
    /// Bytes this process can still allocate, and where the number comes from.
    public static func available() -> (bytes: Int, source: String) {
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }) {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int(fields[1]) {
                return (product(kib, fields.count >= 3 && fields[2] == "kB" ? 1024 : 1), "MemAvailable in /proc/meminfo")
            }
        }
        let physical = ProcessInfo.processInfo.physicalMemory
        return (physical > UInt64(Int.max) ? Int.max : Int(physical), "physical memory")
    }

    /// Throws `invalidConfig(field:)` when `bytes` exceed `availableBytes` (default: `available()`).
    /// `what` says what was estimated ("the parameters of the model (4 bytes each)").
    public static func check(_ bytes: Int, for what: String, field: String, availableBytes: Int? = nil) throws {
        let (have, source) = availableBytes.map { ($0, "the given budget") } ?? available()
        guard bytes > have else { return }
        throw SparseMoEError.invalidConfig(
            field: field,
            message: "\(what) need \(describe(bytes)), but only \(describe(have)) are available (\(source)); make the model or batch smaller")
    }

    /// "123,456,789 bytes (117.7 MiB)"; `Int.max` reads "more than 9.2e18 bytes".
    public static func describe(_ bytes: Int) -> String {
        if bytes == Int.max { return "more than 9.2e18 bytes (the size overflows a 64-bit count)" }
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = Double(bytes), unit = "bytes"
        for u in units where v >= 1024 { v /= 1024; unit = u }
        return unit == "bytes" ? "\(bytes) bytes" : "\(bytes) bytes (\(String(format: "%.1f", v)) \(unit))"
    }

    /// x₁·x₂·…, or `Int.max` when it overflows (or any factor is negative: no valid size).
    public static func product(_ factors: Int...) -> Int { product(factors) }

    /// x₁·x₂·… over an array; `Int.max` on overflow or a negative factor.
    public static func product(_ factors: [Int]) -> Int {
        var p = 1
        for f in factors {
            guard f >= 0 else { return Int.max }
            let (r, overflow) = p.multipliedReportingOverflow(by: f)
            if overflow { return Int.max }
            p = r
        }
        return p
    }

    /// x₁+x₂+…, or `Int.max` when it overflows.
    public static func sum(_ terms: [Int]) -> Int {
        var s = 0
        for t in terms {
            let (r, overflow) = s.addingReportingOverflow(t)
            if overflow || t == Int.max { return Int.max }
            s = r
        }
        return s
    }
}
