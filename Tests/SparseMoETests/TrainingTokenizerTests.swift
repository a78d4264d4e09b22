import XCTest
@testable import SparseMoECore
@testable import SparseMoETraining

final class TrainingTokenizerTests: XCTestCase {
    let tok = ByteTokenizer()

    func testRoundTripMultilingualAndEmoji() {
        let texts = [
            "", "a", "Hello, world!\n", "Grüße aus Köln — ça va? ñ",
            "日本語のテキスト、中文文本。한국어 텍스트", "Ελληνικά, русский, עברית, العربية, हिन्दी",
            "emoji: 😀🎉👩‍👩‍👧‍👦🏳️‍🌈 flags 🇩🇪🇯🇵, skin 👍🏽", "combining: e\u{301} a\u{308}\u{0}\u{7f}",
            "<mask> and <pad> stay text", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝄞 \u{10FFFF}",
        ]
        for text in texts {
            let ids = tok.encode(text)
            XCTAssertEqual(ids.count, text.utf8.count, text)
            XCTAssertTrue(ids.allSatisfy { $0 >= 0 && $0 < 256 }, text)
            XCTAssertEqual(tok.decode(ids), text)
        }
        // 4-byte emoji is four tokens with its UTF-8 bytes.
        XCTAssertEqual(tok.encode("😀"), [0xF0, 0x9F, 0x98, 0x80])
    }

    func testRandomScalarsRoundTrip() {
        var rng = RandomGenerator(seed: 5)
        for _ in 0..<200 {
            var s = String.UnicodeScalarView()
            for _ in 0..<rng.int(below: 40) {
                // Any scalar value except surrogates.
                var v = UInt32(rng.int(below: 0x110000))
                if (0xD800...0xDFFF).contains(v) { v = 0x41 }
                s.append(Unicode.Scalar(v)!)
            }
            let text = String(s)
            XCTAssertEqual(tok.decode(tok.encode(text)), text)
        }
    }

    func testSpecialTokensAndLossyDecoding() {
        XCTAssertEqual(ByteTokenizer.vocabularySize, 260)
        let ids = tok.encode("hi", addBOS: true, addEOS: true)
        XCTAssertEqual(ids, [ByteTokenizer.bos, 104, 105, ByteTokenizer.eos])
        XCTAssertEqual(tok.decode(ids), "<bos>hi<eos>")
        XCTAssertEqual(tok.decode([104, ByteTokenizer.mask, 105, ByteTokenizer.pad]), "h<mask>i<pad>")
        XCTAssertEqual(tok.decode([300, -1]), "<unk:300><unk:-1>")
        // Invalid UTF-8: a lone continuation byte and a truncated sequence become U+FFFD.
        XCTAssertEqual(tok.decode([0x80, 0x41]), "\u{FFFD}A")
        XCTAssertEqual(tok.decode([0x41, 0xE6, 0x97]), "A\u{FFFD}")
        // A special token between the bytes of one character splits it: both halves are invalid.
        let euro = tok.encode("€")  // E2 82 AC
        XCTAssertEqual(tok.decode([euro[0], ByteTokenizer.mask, euro[1], euro[2]]), "\u{FFFD}<mask>\u{FFFD}\u{FFFD}")
        XCTAssertEqual(tok.bytes(of: [ByteTokenizer.bos, 0x41, 300, 0x42]), [0x41, 0x42])
        XCTAssertTrue(ByteTokenizer.isSpecial(ByteTokenizer.mask))
        XCTAssertFalse(ByteTokenizer.isSpecial(255))
        XCTAssertEqual(tok.encode(bytes: [0, 255, 10]), [0, 255, 10])
    }
}
