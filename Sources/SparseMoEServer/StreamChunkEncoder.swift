import Foundation

/// The JSON of a streamed text chunk (`CompletionResponse` with one choice, no usage), written
/// without `JSONEncoder`: a server at 16 streams spent 6 % of its time encoding these, one per
/// token. Everything but the text is fixed for a request, so the bytes around it are encoded
/// once (by `JSONEncoder`, sorted keys, slashes unescaped, as `CompletionServer.json`); the
/// text is escaped as `JSONEncoder` escapes it. The output is byte-identical to
/// `CompletionServer.json(CompletionResponse(…))` (tested on every ASCII character, non-ASCII
/// text and random strings).
struct StreamChunkEncoder {
    private let prefix: String
    private let suffix: String

    init(id: String, created: Int, model: String) {
        prefix = #"{"choices":[{"finish_reason":null,"index":0,"logprobs":null,"text":"#
        suffix = #"}],"created":"# + String(created) + #","id":"# + CompletionServer.json(id) + #","model":"#
            + CompletionServer.json(model) + #","object":"text_completion"}"#
    }

    /// The chunk carrying `text` (not the last one: its `finish_reason` is null).
    func json(_ text: String) -> String {
        var out = prefix
        out.reserveCapacity(prefix.utf8.count + suffix.utf8.count + text.utf8.count + 2)
        Self.appendQuoted(text, to: &out)
        out += suffix
        return out
    }

    /// `"text"` with `"` and `\` escaped, \b \f \n \r \t by name, other controls below U+0020
    /// as \u00xx; everything else (slashes, non-ASCII) as it is.
    static func appendQuoted(_ text: String, to out: inout String) {
        out.append("\"")
        var plainStart = text.unicodeScalars.startIndex
        var i = plainStart
        let scalars = text.unicodeScalars
        while i != scalars.endIndex {
            let v = scalars[i].value
            let escape: String?
            switch v {
            case 0x22: escape = "\\\""
            case 0x5C: escape = "\\\\"
            case 0x08: escape = "\\b"
            case 0x0C: escape = "\\f"
            case 0x0A: escape = "\\n"
            case 0x0D: escape = "\\r"
            case 0x09: escape = "\\t"
            case 0..<0x20: escape = "\\u00" + (v < 0x10 ? "0" : "") + String(v, radix: 16)
            default: escape = nil
            }
            if let escape {
                out.unicodeScalars.append(contentsOf: scalars[plainStart..<i])
                out += escape
                plainStart = scalars.index(after: i)
            }
            i = scalars.index(after: i)
        }
        out.unicodeScalars.append(contentsOf: scalars[plainStart..<scalars.endIndex])
        out.append("\"")
    }
}
