import Foundation
import SparseMoE
import SparseMoEModels

/// Text ↔ token ids for a model folder, and the tokens that end a completion.
///
/// Which tokenizer a folder gets:
/// - a library model (`moe train` output): the byte tokenizer (`ByteTokenizer`, eos 258);
/// - a Hugging Face folder with `tokenizer.json`: that byte-level BPE tokenizer;
/// - a Hugging Face folder without one, vocabulary ≥ 256: the UTF-8 bytes of the text are the
///   token ids (the byte fallback; `note` says so);
/// - otherwise there is no text codec (an error naming the missing file).
///
/// Stop tokens: the byte tokenizer's eos for a library model, config.json's `eos_token_id`
/// (one id or a list) for a Hugging Face folder.
public struct TextCodec: Sendable {
    /// How text becomes ids.
    public enum Kind: Sendable {
        case byteTokenizer
        case byteLevelBPE(ByteLevelBPETokenizer)
        case byteFallback
    }

    public let kind: Kind
    /// Embedding rows of the model: valid ids are 0..<vocabSize.
    public let vocabSize: Int
    /// Tokens that end a completion (the model's end-of-sequence ids).
    public let stopTokens: Set<Int32>
    /// A line for the user where the choice is a guess (the byte fallback), else nil.
    public let note: String?

    public init(kind: Kind, vocabSize: Int, stopTokens: Set<Int32>, note: String? = nil) {
        self.kind = kind
        self.vocabSize = vocabSize
        self.stopTokens = stopTokens
        self.note = note
    }

    /// The codec of a model folder: `native` is `ModelFiles.isNative(directory)`, `rawConfig`
    /// the Hugging Face config.json (nil for a library model). Throws when the folder has no
    /// usable tokenizer (the message names the tokenizer.json it looked for) or its
    /// tokenizer.json is unreadable.
    public init(directory: URL, native: Bool, vocabSize: Int, rawConfig: [String: JSONValue]?) throws {
        let stop = Self.eosTokens(native: native, rawConfig: rawConfig)
        if native {
            self.init(kind: .byteTokenizer, vocabSize: vocabSize, stopTokens: stop)
            return
        }
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        if FileManager.default.fileExists(atPath: tokenizerURL.path) {
            self.init(kind: .byteLevelBPE(try ByteLevelBPETokenizer(url: tokenizerURL)), vocabSize: vocabSize, stopTokens: stop)
            return
        }
        guard vocabSize >= 256 else { throw TextCodecError.noTokenizer(tokenizerPath: tokenizerURL.path, vocabSize: vocabSize) }
        self.init(kind: .byteFallback, vocabSize: vocabSize, stopTokens: stop,
                  note: "no tokenizer.json in \(directory.path); using UTF-8 bytes as token ids (byte fallback)")
    }

    /// End-of-sequence ids: the byte tokenizer's for a library model, else config.json's
    /// `eos_token_id` (an integer or a list of them; absent = none).
    public static func eosTokens(native: Bool, rawConfig: [String: JSONValue]?) -> Set<Int32> {
        var stop: Set<Int32> = []
        if native { stop.insert(ByteTokenizer.eos) }
        switch rawConfig?["eos_token_id"] {
        case let .int(i)?: if let t = Int32(exactly: i) { stop.insert(t) }
        case let .array(a)?: for case let .int(i) in a { if let t = Int32(exactly: i) { stop.insert(t) } }
        default: break
        }
        return stop
    }

    /// Token ids of `text` (no special tokens added).
    public func encode(_ text: String) throws -> [Int32] {
        switch kind {
        case .byteTokenizer: return ByteTokenizer().encode(text)
        case let .byteLevelBPE(tokenizer): return try tokenizer.encode(text)
        case .byteFallback: return text.utf8.map { Int32($0) }
        }
    }

    /// Text of `ids`; invalid UTF-8 becomes U+FFFD. The byte tokenizer renders its special
    /// tokens as `<eos>` etc.; the BPE tokenizer skips unknown ids.
    public func decode(_ ids: [Int32]) -> String {
        switch kind {
        case .byteTokenizer: return ByteTokenizer().decode(ids)
        case let .byteLevelBPE(tokenizer): return tokenizer.decode(ids)
        case .byteFallback: return String(decoding: ids.map { UInt8(clamping: $0) }, as: UTF8.self)
        }
    }

    /// The UTF-8 bytes of one token (possibly part of a character): `decode` of a sequence
    /// is the UTF-8 decoding of its tokens' bytes, which a stream decodes piece by piece.
    public func bytes(of token: Int32) -> [UInt8] {
        switch kind {
        case .byteTokenizer: return token >= 0 && token < 256 ? [UInt8(token)] : Array(ByteTokenizer().decode([token]).utf8)
        case let .byteLevelBPE(tokenizer): return tokenizer.bytes(of: [token])
        case .byteFallback: return [UInt8(clamping: token)]
        }
    }
}

/// Why a model folder has no text codec.
public enum TextCodecError: Error, Equatable, CustomStringConvertible {
    case noTokenizer(tokenizerPath: String, vocabSize: Int)

    public var description: String {
        switch self {
        case let .noTokenizer(path, vocab):
            return "text needs \(path) (a byte-level BPE tokenizer.json), or a vocabulary of at least 256 ids for the byte fallback; this model has \(vocab)"
        }
    }
}
