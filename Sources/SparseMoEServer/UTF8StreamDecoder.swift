/// Decodes UTF-8 that arrives in pieces (token by token) into text, emitting only whole
/// characters: bytes that begin a character whose remaining bytes have not arrived yet are
/// held back until they do. Invalid sequences become U+FFFD as soon as they are seen to be
/// invalid, so nothing is held back for ever; `finish` flushes what is left.
///
/// Concatenating every `append` result and `finish` gives `String(decoding: allBytes, as: UTF8.self)`.
public struct UTF8StreamDecoder: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    /// The text of `bytes` and any held-back bytes, up to the last complete character.
    public mutating func append(_ bytes: [UInt8]) -> String {
        pending += bytes
        let cut = pending.count - Self.incompleteTail(pending)
        guard cut > 0 else { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// The held-back bytes as text (an incomplete character becomes U+FFFD).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Bytes at the end of `bytes` that are a valid but incomplete character: a lead byte
    /// announcing n bytes followed by fewer than n − 1 continuation bytes. 0 otherwise.
    static func incompleteTail(_ bytes: [UInt8]) -> Int {
        // A character is at most 4 bytes, so its lead byte is among the last 3 of an incomplete tail.
        var i = bytes.count - 1
        while i >= 0 && bytes.count - i <= 3 {
            let b = bytes[i]
            if b & 0xC0 == 0x80 { i -= 1; continue }  // continuation byte: look further back
            let need: Int
            switch b {
            case 0xC2...0xDF: need = 2
            case 0xE0...0xEF: need = 3
            case 0xF0...0xF4: need = 4
            default: return 0  // ASCII or a byte that never starts a character
            }
            let have = bytes.count - i
            return have < need ? have : 0
        }
        return 0
    }
}
