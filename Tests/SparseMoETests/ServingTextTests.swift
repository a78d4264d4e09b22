import Foundation
import XCTest
@testable import SparseMoEServer
import SparseMoE

/// The text side of the server: streaming UTF-8 decoding, stop strings, the text codec and
/// the request fields, each against a plain reference (decode everything at once, search the
/// whole text, the tokenizer's own decode).
final class ServingTextTests: XCTestCase {
    /// Splits `bytes` at random places into pieces (some empty).
    private func randomPieces(_ bytes: [UInt8], _ rng: inout RandomGenerator) -> [[UInt8]] {
        var pieces: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let n = min(bytes.count - i, Int(rng.next() % 5))
            pieces.append(Array(bytes[i..<(i + n)]))
            i += n
        }
        return pieces
    }

    func testUTF8StreamDecoderEmitsWholeCharactersAndMatchesOneShotDecoding() {
        var rng = RandomGenerator(seed: 7)
        let text = "héllo € 😀 ü 中文 a"
        for _ in 0..<200 {
            var d = UTF8StreamDecoder()
            var out = ""
            for piece in randomPieces(Array(text.utf8), &rng) {
                let s = d.append(piece)
                XCTAssertFalse(s.contains("\u{FFFD}"), "a valid text never shows a replacement character")
                out += s
            }
            out += d.finish()
            XCTAssertEqual(out, text)
        }
        // Random bytes (mostly invalid UTF-8): the pieces add up to the one-shot decoding.
        for _ in 0..<300 {
            let bytes = (0..<Int(rng.next() % 24)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var d = UTF8StreamDecoder()
            var out = ""
            for piece in randomPieces(bytes, &rng) { out += d.append(piece) }
            out += d.finish()
            XCTAssertEqual(out, String(decoding: bytes, as: UTF8.self), "\(bytes)")
        }
    }

    func testUTF8StreamDecoderHoldsBackOnlyAnIncompleteCharacter() {
        var d = UTF8StreamDecoder()
        XCTAssertEqual(d.append([0xE2]), "")        // € = E2 82 AC
        XCTAssertEqual(d.append([0x82]), "")
        XCTAssertEqual(d.append([0xAC, 0x41]), "€A")
        XCTAssertEqual(d.append([0xFF]), "\u{FFFD}")  // never valid: not held
        XCTAssertEqual(d.append([0xF0, 0x9F]), "")
        XCTAssertEqual(d.finish(), "\u{FFFD}")       // truncated at the end
    }

    /// The text before the earliest occurrence of any stop string (the reference).
    private func truncated(_ text: String, _ stops: [String]) -> (String, Bool) {
        let bytes = Array(text.utf8)
        var best: Int?
        for s in stops.map({ Array($0.utf8) }) where s.count <= bytes.count {
            for i in 0...(bytes.count - s.count) where Array(bytes[i..<(i + s.count)]) == s {
                if best == nil || i < best! { best = i }
                break
            }
        }
        guard let best else { return (text, false) }
        return (String(decoding: bytes[..<best], as: UTF8.self), true)
    }

    func testStopStringMatcherAgreesWithSearchingTheWholeText() {
        var rng = RandomGenerator(seed: 11)
        let alphabet = ["a", "b", "\n", "é"]
        let stopSets = [["ab"], ["ba\n", "bb"], ["é\n", "aaa", "\nb"], ["b"]]
        for _ in 0..<500 {
            let stops = stopSets[Int(rng.next() % UInt64(stopSets.count))]
            let pieces = (0..<Int(rng.next() % 8)).map { _ in
                (0..<Int(rng.next() % 3)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined()
            }
            var m = StopStringMatcher(stops: stops)
            var out = ""
            for p in pieces { out += m.append(p) }
            out += m.finish()
            let (expected, found) = truncated(pieces.joined(), stops)
            XCTAssertEqual(out, expected, "\(pieces) stops \(stops)")
            XCTAssertEqual(m.stopped, found)
        }
    }

    func testStopStringMatcherHoldsBackAPossibleStart() {
        var m = StopStringMatcher(stops: ["END"])
        XCTAssertEqual(m.append("abcE"), "abc")
        XCTAssertEqual(m.append("N"), "")
        XCTAssertEqual(m.append("x"), "ENx")   // not the stop string after all
        XCTAssertEqual(m.append("yEND tail"), "y")
        XCTAssertTrue(m.stopped)
        XCTAssertEqual(m.append("more"), "")
        XCTAssertEqual(m.finish(), "")
    }

    func testTextCodecOfALibraryModelIsTheByteTokenizer() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("codec-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let codec = try TextCodec(directory: dir, native: true, vocabSize: 264, rawConfig: nil)
        XCTAssertEqual(codec.stopTokens, [ByteTokenizer.eos])
        XCTAssertEqual(try codec.encode("hé"), ByteTokenizer().encode("hé"))
        XCTAssertEqual(codec.decode([104, 258]), ByteTokenizer().decode([104, 258]))
        XCTAssertEqual(codec.bytes(of: 104), [104])
        XCTAssertEqual(codec.bytes(of: 258), Array("<eos>".utf8))
        XCTAssertNil(codec.note)
    }

    func testTextCodecOfAHuggingFaceFolderWithoutTokenizer() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("codec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let codec = try TextCodec(directory: dir, native: false, vocabSize: 300, rawConfig: ["eos_token_id": .array([.int(2), .int(7)])])
        XCTAssertEqual(codec.stopTokens, [2, 7])
        XCTAssertEqual(try codec.encode("hé"), [104, 0xC3, 0xA9])
        XCTAssertEqual(codec.decode([104, 0xC3, 0xA9]), "hé")
        XCTAssertNotNil(codec.note)
        XCTAssertThrowsError(try TextCodec(directory: dir, native: false, vocabSize: 100, rawConfig: nil)) { error in
            XCTAssertEqual(error as? TextCodecError, .noTokenizer(tokenizerPath: dir.appendingPathComponent("tokenizer.json").path, vocabSize: 100))
            XCTAssertTrue("\(error)".contains("tokenizer.json"))
        }
        XCTAssertEqual(TextCodec.eosTokens(native: false, rawConfig: ["eos_token_id": .int(5)]), [5])
        XCTAssertEqual(TextCodec.eosTokens(native: false, rawConfig: [:]), [])
    }

    /// A BPE token's bytes, concatenated over a sequence, are what the tokenizer's decode reads.
    func testTextCodecBytesOfBPETokensAddUpToTheDecodedText() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/hf/tokenizer-gpt2")
        let codec = try TextCodec(directory: fixtures, native: false, vocabSize: 316, rawConfig: ["eos_token_id": .int(0)])
        guard case let .byteLevelBPE(tokenizer) = codec.kind else { return XCTFail("expected the folder's tokenizer.json") }
        let text = "Hello wörld, 東京 🚀!<|endoftext|>"
        let ids = try codec.encode(text)
        XCTAssertEqual(ids, try tokenizer.encode(text))
        XCTAssertEqual(ids.last, 0, "the added token")
        XCTAssertEqual(codec.stopTokens, [0])
        var d = UTF8StreamDecoder()
        var streamed = ""
        for id in ids { streamed += d.append(codec.bytes(of: id)) }
        streamed += d.finish()
        XCTAssertEqual(streamed, tokenizer.decode(ids))
        XCTAssertEqual(streamed, text)
    }

    func testCompletionParametersDefaultsAndForms() throws {
        let p = try CompletionParameters.parse(Data(#"{"prompt": "hi", "user": "x", "logit_bias": {}}"#.utf8))
        XCTAssertEqual(p.prompt, .text("hi"))
        XCTAssertNil(p.model)
        XCTAssertEqual(p.maxTokens, 16)
        XCTAssertEqual(p.temperature, 1)
        XCTAssertNil(p.topP)
        XCTAssertNil(p.topK)
        XCTAssertNil(p.seed)
        XCTAssertEqual(p.stop, [])
        XCTAssertFalse(p.stream)
        XCTAssertEqual(try CompletionParameters.parse(Data(#"{"prompt": ["hi"]}"#.utf8)).prompt, .text("hi"))
        XCTAssertEqual(try CompletionParameters.parse(Data(#"{"prompt": [[1, 2]]}"#.utf8)).prompt, .tokens([1, 2]))
        XCTAssertEqual(try CompletionParameters.parse(Data(#"{"prompt": [1, 2.0], "stop": "x", "max_tokens": null}"#.utf8)),
                       { var q = CompletionParameters(prompt: .tokens([1, 2])); q.stop = ["x"]; return q }())
        let q = try CompletionParameters.parse(Data(#"{"model": "m", "prompt": "a", "max_tokens": 3, "temperature": 0, "top_p": 0.5, "top_k": 2, "seed": 9, "stop": ["x", "y"], "stream": true, "stream_options": {"include_usage": true}}"#.utf8))
        XCTAssertEqual(q.model, "m")
        XCTAssertEqual(q.sampling, SamplingOptions(temperature: 0, topK: 2, topP: 0.5))
        XCTAssertEqual(q.maxTokens, 3)
        XCTAssertEqual(q.seed, 9)
        XCTAssertEqual(q.stop, ["x", "y"])
        XCTAssertTrue(q.stream)
        XCTAssertTrue(q.includeUsage)
    }

    /// A streamed text chunk written by StreamChunkEncoder is byte for byte what JSONEncoder
    /// writes for the same CompletionResponse: every ASCII character alone and inside text,
    /// non-ASCII text (accents, CJK, emoji, U+2028), slashes, and random strings.
    func testStreamChunkEncoderMatchesJSONEncoder() {
        let encoder = StreamChunkEncoder(id: "cmpl-7/\"x\"", created: 1_764_590_000, model: "tiny/moe é")
        func reference(_ text: String) -> String {
            CompletionServer.json(CompletionResponse(id: "cmpl-7/\"x\"", created: 1_764_590_000, model: "tiny/moe é",
                                                     choices: [CompletionChoice(text: text, finishReason: nil)], usage: nil))
        }
        var texts = (0..<128).map { String(UnicodeScalar(UInt8($0))) }
        texts += ["", "ROMEO: What light", "a\"b\\c/d\n\t\u{7f}", "é ü 東京 🙂 \u{2028}\u{2029}", "\u{0}\u{1f}x\u{1b}[0m"]
        var rng = RandomGenerator(seed: 11)
        let alphabet: [UnicodeScalar] = (0..<128).map { UnicodeScalar(UInt8($0)) } + ["é", "東", "🙂", "\u{2028}", "\u{feff}"]
        for _ in 0..<300 {
            var t = ""
            for _ in 0..<Int(rng.next() % 12) { t.unicodeScalars.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            texts.append(t)
        }
        for t in texts { XCTAssertEqual(encoder.json(t), reference(t), "text \(t.unicodeScalars.map { $0.value })") }
    }
}

