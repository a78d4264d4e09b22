/// Checks that every rank of a job was started with the same settings, before the first
/// collective whose sizes depend on them (a rank with another model would otherwise fail in a
/// broadcast of another size — or, over MPI, not fail at all).
///
/// Each rank describes its settings as named fields (`name`, `value` as text). Rank 0's
/// fields travel to every rank as text (its length, then its UTF-8 bytes, one float per byte:
/// exact); each rank compares them with its own, field by field, and one all-reduce of one
/// flag per field of rank 0 (plus one for fields rank 0 lacks) tells every rank how many
/// ranks differ in which field. A difference throws `SettingsMismatch` on every rank, naming
/// the fields. Every rank must call it, first. Costs three collectives.
public enum SettingsAgreement {
    /// Throws `SettingsMismatch` on every rank when any rank's `fields` differ from rank 0's.
    public static func check(_ fields: [(name: String, value: String)], communicator c: any Communicator) throws {
        guard c.size > 1 else { return }
        try c.accounted(as: .settingsCheck) {
            let mine = fields.map { "\($0.name)=\(escape($0.value))" }.joined(separator: "\n")
            var length: [Float] = [Float(c.rank == 0 ? mine.utf8.count : 0)]
            try c.broadcast(&length, root: 0)
            var bytes = c.rank == 0 ? mine.utf8.map(Float.init) : [Float](repeating: 0, count: Int(length[0]))
            try c.broadcast(&bytes, root: 0)
            let rootText = String(decoding: bytes.map { UInt8($0) }, as: UTF8.self)
            let rootFields: [(name: String, value: String)] = rootText.isEmpty ? [] : rootText.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                return (String(parts[0]), parts.count > 1 ? unescape(String(parts[1])) : "")
            }
            let own = Dictionary(fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            let rootNames = Set(rootFields.map(\.name))
            // One flag per field of rank 0, then one for fields only this rank has.
            let extra = fields.map(\.name).filter { !rootNames.contains($0) }
            var flags = rootFields.map { own[$0.name] == $0.value ? Float(0) : 1 }
            flags.append(extra.isEmpty ? 0 : 1)
            try c.allReduceSum(&flags)
            guard flags.contains(where: { $0 > 0 }) else { return }
            var differences: [SettingsMismatch.Field] = []
            for (i, f) in rootFields.enumerated() where flags[i] > 0 {
                differences.append(.init(name: f.name, rootValue: f.value, thisRankValue: own[f.name], ranksDiffering: Int(flags[i])))
            }
            for name in extra { differences.append(.init(name: name, rootValue: nil, thisRankValue: own[name], ranksDiffering: 1)) }
            if extra.isEmpty && flags.last! > 0 {
                differences.append(.init(name: "(a field rank 0 does not have)", rootValue: nil, thisRankValue: nil, ranksDiffering: Int(flags.last!)))
            }
            throw SettingsMismatch(rank: c.rank, size: c.size, fields: differences)
        }
    }

    static func escape(_ s: String) -> String { s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n") }
    static func unescape(_ s: String) -> String {
        var out = "", escaped = false
        for ch in s {
            if escaped { out.append(ch == "n" ? "\n" : ch); escaped = false } else if ch == "\\" { escaped = true } else { out.append(ch) }
        }
        return out
    }
}

/// The ranks of a job were started with different settings.
public struct SettingsMismatch: Error, CustomStringConvertible, Equatable {
    public struct Field: Sendable, Equatable {
        public var name: String
        /// Rank 0's value (nil: rank 0 has no such field).
        public var rootValue: String?
        /// This rank's value (nil: this rank has no such field).
        public var thisRankValue: String?
        /// How many ranks differ from rank 0 in this field.
        public var ranksDiffering: Int
    }

    public var rank: Int
    public var size: Int
    public var fields: [Field]

    /// The differing fields' names.
    public var names: [String] { fields.map(\.name) }

    public var description: String {
        let list = fields.map { f -> String in
            var s = f.name + " (rank 0: \(f.rootValue ?? "absent")"
            if rank != 0 { s += ", rank \(rank): \(f.thisRankValue ?? "absent")" }
            return s + "; \(f.ranksDiffering) of \(size) ranks differ from rank 0)"
        }
        return "rank \(rank): the ranks were started with different settings: \(list.joined(separator: "; ")). "
            + "Every rank must get the same flags, configuration and data."
    }
}

extension CommunicationKind {
    /// The startup comparison of the ranks' settings (`SettingsAgreement`).
    public static let settingsCheck = CommunicationKind("settings check")
}
