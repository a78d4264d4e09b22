import SparseMoECore

/// Token ids written as text, the form `--tokens` takes: decimal integers separated by
/// single commas, nothing else, e.g. `1,2,3`. Strict: no spaces, no empty items
/// (`1,,2`, a leading or trailing comma), no signs, each id in 0...Int32.max.
public enum TokenList {
    /// Parses `text`; throws `invalidArgument(op: option)` naming the item (1-based), its
    /// character offset and its text.
    public static func parse(_ text: String, option: String = "--tokens") throws -> [Int32] {
        func fail(_ message: String) -> SparseMoEError {
            .invalidArgument(op: option, message: message + "; write token ids as integers separated by commas, without spaces, e.g. \(option) 1,2,3")
        }
        guard !text.isEmpty else { throw fail("token list is empty: give at least one token id") }
        var ids: [Int32] = []
        var offset = 0
        for (index, item) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let position = "item \(index + 1) (at character \(offset + 1))"
            offset += item.count + 1
            guard !item.isEmpty else { throw fail("\(position) is empty") }
            guard item.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                if item.contains(where: \.isWhitespace) { throw fail("\(position) '\(item)' contains a space") }
                if item.first == "-", item.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber }), !item.dropFirst().isEmpty {
                    throw fail("\(position) '\(item)' is negative; token ids are ≥ 0")
                }
                throw fail("\(position) '\(item)' is not a token id (a non-negative integer)")
            }
            guard let id = Int32(item) else { throw fail("\(position) '\(item)' exceeds the largest token id \(Int32.max)") }
            ids.append(id)
        }
        return ids
    }
}
