import Foundation
import SparseMoECore

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (GPT-2, RoBERTa,
/// Mixtral-style Llama-3 / Qwen / OLMo / DeepSeek-V3 tokenizers are all of this kind).
///
/// Supported `tokenizer.json` parts: `model` of type BPE (`vocab`, `merges` as "a b" strings
/// or [a, b] pairs, `ignore_merges`); `pre_tokenizer` ByteLevel (GPT-2 split pattern when
/// `use_regex`), or a Sequence of Split (Regex, behaviour Isolated) and ByteLevel; `normalizer`
/// null or NFC; `added_tokens` matched literally before anything else. Anything else is
/// refused with an error naming the field — SentencePiece-style (Metaspace) tokenizers are
/// not byte-level BPE.
///
/// Encoding: added tokens split off; the rest split by the pre-tokenizer pattern, each
/// piece's UTF-8 bytes mapped to GPT-2's printable byte alphabet, then the lowest-ranked
/// adjacent pair merged until no merge applies. Decoding maps the byte alphabet back to
/// bytes and decodes UTF-8 (invalid sequences become U+FFFD).
public final class ByteLevelBPETokenizer: @unchecked Sendable {
    public let vocab: [String: Int32]
    public let idToToken: [Int32: String]
    let ranks: [String: Int]  // "a b" → rank
    let pattern: NSRegularExpression
    let addedTokens: [(String, Int32)]
    let nfc: Bool
    let ignoreMerges: Bool

    /// GPT-2's pattern: contractions, letters, digits, other symbols, whitespace.
    public static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// byte → printable character (GPT-2 `bytes_to_unicode`), and back.
    package static let byteToChar: [Character] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()
    static let charToByte: [Character: UInt8] = {
        var m: [Character: UInt8] = [:]
        for (b, c) in byteToChar.enumerated() { m[c] = UInt8(b) }
        return m
    }()

    /// Reads `tokenizer.json`; errors name the file and the field.
    public convenience init(url: URL) throws {
        let data = try UserFile.read(url, what: "a tokenizer.json")
        do {
            try self.init(json: data)
        } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: url.path, message: e.description)
        }
    }

    public init(json data: Data) throws {
        func bad(_ field: String, _ message: String) -> SparseMoEError { .invalidConfig(field: field, message: message) }
        guard let root = try? JSONDecoder().decode([String: JSONValue].self, from: data) else {
            throw bad("tokenizer.json", "malformed JSON (expected one object)")
        }
        guard case let .object(model)? = root["model"] else { throw bad("model", "missing") }
        guard case let .string(type)? = model["type"], type == "BPE" else {
            throw bad("model.type", "\(model["type"] ?? .null): only BPE is supported")
        }
        guard case let .object(v)? = model["vocab"] else { throw bad("model.vocab", "missing or not an object") }
        var vocab: [String: Int32] = [:]
        for (token, id) in v {
            guard case let .int(i) = id, let i32 = Int32(exactly: i) else { throw bad("model.vocab", "id of '\(token)' is not an integer: \(id)") }
            vocab[token] = i32
        }
        var ranks: [String: Int] = [:]
        if case let .array(merges)? = model["merges"] {
            for (r, m) in merges.enumerated() {
                switch m {
                case let .string(s): ranks[s] = ranks[s] ?? r
                case let .array(pair):
                    guard pair.count == 2, case let .string(a) = pair[0], case let .string(b) = pair[1] else {
                        throw bad("model.merges[\(r)]", "expected \"a b\" or [a, b], got \(m)")
                    }
                    ranks["\(a) \(b)"] = ranks["\(a) \(b)"] ?? r
                default: throw bad("model.merges[\(r)]", "expected \"a b\" or [a, b], got \(m)")
                }
            }
        } else { throw bad("model.merges", "missing or not an array") }
        if case .bool(true)? = model["byte_fallback"] { throw bad("model.byte_fallback", "true: SentencePiece-style byte fallback is not byte-level BPE") }
        ignoreMerges = model["ignore_merges"] == .bool(true)

        var added: [(String, Int32)] = []
        if case let .array(list)? = root["added_tokens"] {
            for t in list {
                guard case let .object(o) = t, case let .string(content)? = o["content"], case let .int(id)? = o["id"],
                      let i32 = Int32(exactly: id) else { throw bad("added_tokens", "entry \(t) needs content and id") }
                added.append((content, i32))
                vocab[content] = vocab[content] ?? i32
            }
        }
        // Longest first, so that a token is not matched by its own prefix.
        addedTokens = added.filter { !$0.0.isEmpty }.sorted { $0.0.count > $1.0.count }

        switch root["normalizer"] {
        case nil, .null?: nfc = false
        case let .object(o)? where o["type"] == .string("NFC"): nfc = true
        case let other?: throw bad("normalizer", "\(other): only null or NFC is supported")
        }

        var patternSource = Self.gpt2Pattern
        func byteLevel(_ o: [String: JSONValue], _ field: String) throws -> Bool {
            guard o["type"] == .string("ByteLevel") else { throw bad(field, "\(JSONValue.object(o)): expected ByteLevel") }
            if o["add_prefix_space"] == .bool(true) { throw bad(field + ".add_prefix_space", "true is not supported") }
            return o["use_regex"] != .bool(false)
        }
        switch root["pre_tokenizer"] {
        case let .object(o)? where o["type"] == .string("ByteLevel"):
            _ = try byteLevel(o, "pre_tokenizer")
        case let .object(o)? where o["type"] == .string("Sequence"):
            guard case let .array(steps)? = o["pretokenizers"], steps.count == 2,
                  case let .object(split) = steps[0], split["type"] == .string("Split"),
                  case let .object(pattern)? = split["pattern"], case let .string(regex)? = pattern["Regex"],
                  case let .object(bl) = steps[1] else {
                throw bad("pre_tokenizer", "only Sequence[Split(Regex), ByteLevel] is supported")
            }
            if let behavior = split["behavior"], behavior != .string("Isolated") {
                throw bad("pre_tokenizer.pretokenizers[0].behavior", "\(behavior): only Isolated is supported")
            }
            if try byteLevel(bl, "pre_tokenizer.pretokenizers[1]") { throw bad("pre_tokenizer.pretokenizers[1].use_regex", "true after a Split is not supported") }
            patternSource = regex
        default:
            throw bad("pre_tokenizer", "\(root["pre_tokenizer"] ?? .null): a byte-level BPE tokenizer needs a ByteLevel pre-tokenizer")
        }
        do { pattern = try NSRegularExpression(pattern: patternSource) } catch {
            throw bad("pre_tokenizer", "the split pattern does not compile: \(error.localizedDescription)")
        }
        self.vocab = vocab
        self.ranks = ranks
        var inverse: [Int32: String] = [:]
        for (t, i) in vocab where inverse[i] == nil || addedTokens.contains(where: { $0.0 == t }) { inverse[i] = t }
        idToToken = inverse
    }

    /// Token ids of `text`.
    public func encode(_ text: String) throws -> [Int32] {
        var out: [Int32] = []
        var rest = Substring(nfc ? text.precomposedStringWithCanonicalMapping : text)
        while !rest.isEmpty {
            // The earliest added token (longest at the same place).
            var hit: (Range<Substring.Index>, Int32)?
            for (content, id) in addedTokens {
                if let r = rest.range(of: content), hit == nil || r.lowerBound < hit!.0.lowerBound { hit = (r, id) }
            }
            let plain = hit.map { rest[..<$0.0.lowerBound] } ?? rest
            out += try encodePlain(String(plain))
            guard let (r, id) = hit else { break }
            out.append(id)
            rest = rest[r.upperBound...]
        }
        return out
    }

    func encodePlain(_ text: String) throws -> [Int32] {
        guard !text.isEmpty else { return [] }
        var out: [Int32] = []
        let ns = text as NSString
        for m in pattern.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            let piece = ns.substring(with: m.range)
            let symbols = String(piece.utf8.map { Self.byteToChar[Int($0)] })
            if ignoreMerges, let id = vocab[symbols] { out.append(id); continue }
            for s in bpe(symbols) {
                guard let id = vocab[s] else {
                    throw SparseMoEError.invalidArgument(op: "tokenizer", message: "symbol '\(s)' of '\(piece)' is not in the vocabulary")
                }
                out.append(id)
            }
        }
        return out
    }

    /// Merges adjacent symbols by rank until no pair is in the merge table.
    func bpe(_ word: String) -> [String] {
        var parts = word.map { String($0) }
        while parts.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(parts.count - 1) {
                if let r = ranks[parts[i] + " " + parts[i + 1]], best == nil || r < best!.rank { best = (r, i) }
            }
            guard let (_, i) = best else { break }
            parts[i] += parts[i + 1]
            parts.remove(at: i + 1)
        }
        return parts
    }

    /// Text of `ids` (unknown ids are skipped).
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: bytes(of: ids), as: UTF8.self)
    }

    /// The UTF-8 bytes `ids` stand for (unknown ids are skipped); one token may hold part of a
    /// character, so a stream of tokens decodes by bytes.
    package func bytes(of ids: [Int32]) -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids {
            guard let token = idToToken[id] else { continue }
            if addedTokens.contains(where: { $0.1 == id }) { bytes += Array(token.utf8); continue }
            for ch in token {
                if let b = Self.charToByte[ch] { bytes.append(b) } else { bytes += Array(String(ch).utf8) }
            }
        }
        return bytes
    }
}
