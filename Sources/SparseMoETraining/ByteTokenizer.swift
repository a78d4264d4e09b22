
/// Byte-level tokenizer: every UTF-8 byte is one token, plus four special tokens.
///
/// Vocabulary (`vocabularySize` = 260):
/// - `0...255`: the bytes of the UTF-8 encoding, so every text encodes and round-trips.
/// - `256` `<pad>`, `257` `<bos>`, `258` `<eos>`, `259` `<mask>` (masked-LM input).
///
/// Task markers of the synthetic corpus are plain text (`"rev: "`, `"math: "`, …), not
/// special tokens: a corpus line is ordinary bytes, so files and the synthetic corpus
/// go through the same path, and `moe generate --prompt "rev: abc|"` works verbatim.
/// A model may use a larger embedding table than `vocabularySize` (e.g. padded to a
/// multiple of 8); ids at or above `vocabularySize` decode as `<unk:ID>`.
///
/// `encode` never interprets special-token spellings in the text: the string `"<mask>"`
/// encodes as its six bytes. Special tokens are added by the caller (BOS/EOS flags,
/// or the masking step).
public struct ByteTokenizer: Sendable, Equatable {
    public static let pad: Int32 = 256
    public static let bos: Int32 = 257
    public static let eos: Int32 = 258
    public static let mask: Int32 = 259
    /// Number of token ids: 256 bytes + 4 special tokens.
    public static let vocabularySize = 260
    /// Spellings used by `decode` for the special tokens, indexed by `id − 256`.
    public static let specialTokenNames = ["<pad>", "<bos>", "<eos>", "<mask>"]

    public init() {}

    public var vocabularySize: Int { Self.vocabularySize }

    /// Token ids of `text`'s UTF-8 bytes, optionally wrapped in `<bos>` … `<eos>`.
    public func encode(_ text: String, addBOS: Bool = false, addEOS: Bool = false) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count + 2)
        if addBOS { out.append(Self.bos) }
        for b in text.utf8 { out.append(Int32(b)) }
        if addEOS { out.append(Self.eos) }
        return out
    }

    /// Token ids of raw bytes (file contents): one token per byte, no validation.
    public func encode<Bytes: Sequence>(bytes: Bytes) -> [Int32] where Bytes.Element == UInt8 {
        bytes.map { Int32($0) }
    }

    /// Text of `tokens`. Runs of byte tokens are decoded as UTF-8 with invalid
    /// sequences replaced by U+FFFD; special tokens render as `<pad>`, `<bos>`, `<eos>`,
    /// `<mask>`; ids outside the vocabulary (negative or ≥ 260) render as `<unk:ID>`.
    public func decode(_ tokens: [Int32]) -> String {
        var text = ""
        var run: [UInt8] = []
        func flush() {
            if !run.isEmpty { text += String(decoding: run, as: UTF8.self); run.removeAll(keepingCapacity: true) }
        }
        for t in tokens {
            if t >= 0 && t < 256 {
                run.append(UInt8(t))
            } else {
                flush()
                text += Self.name(ofSpecial: t)
            }
        }
        flush()
        return text
    }

    /// The bytes of the byte tokens in `tokens`, skipping special and unknown ids.
    public func bytes(of tokens: [Int32]) -> [UInt8] {
        tokens.compactMap { $0 >= 0 && $0 < 256 ? UInt8($0) : nil }
    }

    /// Whether `token` is one of the special tokens (pad, bos, eos, mask).
    public static func isSpecial(_ token: Int32) -> Bool {
        token >= 256 && token < Int32(vocabularySize)
    }

    private static func name(ofSpecial t: Int32) -> String {
        isSpecial(t) ? specialTokenNames[Int(t) - 256] : "<unk:\(t)>"
    }
}
