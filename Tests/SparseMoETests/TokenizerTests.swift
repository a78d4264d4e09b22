import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels

/// Byte-level BPE against the `tokenizers` library's own encodings (Tests/Fixtures/hf/tokenizer-*).
final class ByteLevelBPETokenizerTests: XCTestCase {
    struct Case: Decodable { let text: String; let ids: [Int32]; let decoded: String }
    struct Expected: Decodable { let vocab_size: Int; let cases: [Case] }

    func check(_ name: String) throws {
        let dir = ownHFFixture(name)
        let tok = try ByteLevelBPETokenizer(url: dir.appendingPathComponent("tokenizer.json"))
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        XCTAssertEqual(tok.vocab.count, expected.vocab_size)
        XCTAssertGreaterThan(expected.cases.count, 5)
        for c in expected.cases {
            XCTAssertEqual(try tok.encode(c.text), c.ids, "\(name): \(c.text.debugDescription)")
            XCTAssertEqual(tok.decode(c.ids), c.decoded, name)
        }
    }

    func testGPT2PreTokenizer() throws { try check("tokenizer-gpt2") }
    func testQwenSplitPreTokenizerWithNFC() throws { try check("tokenizer-qwen-split") }

    func testByteAlphabetIsABijection() {
        XCTAssertEqual(Set(ByteLevelBPETokenizer.byteToChar).count, 256)
        XCTAssertEqual(ByteLevelBPETokenizer.byteToChar[32], "Ġ")
        XCTAssertEqual(ByteLevelBPETokenizer.byteToChar[10], "Ċ")
    }

    func testRefusesOtherTokenizers() {
        let metaspace = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}}"#
        XCTAssertThrowsError(try ByteLevelBPETokenizer(json: Data(metaspace.utf8))) { XCTAssertTrue("\($0)".contains("pre_tokenizer"), "\($0)") }
        let unigram = #"{"model": {"type": "Unigram", "vocab": []}}"#
        XCTAssertThrowsError(try ByteLevelBPETokenizer(json: Data(unigram.utf8))) { XCTAssertTrue("\($0)".contains("model.type"), "\($0)") }
        XCTAssertThrowsError(try ByteLevelBPETokenizer(json: Data("{not json".utf8))) { XCTAssertTrue("\($0)".contains("malformed"), "\($0)") }
    }
}

final class SamplingTests: XCTestCase {
    let logits: [Float] = [0.3, 2.0, -1.0, 1.2, 2.0, 0.0, -3.0, 1.9, 0.5]

    func testGreedyAndTopOneAreArgmax() throws {
        XCTAssertEqual(Sampler.argmax(logits), 1, "ties go to the lower id")
        var greedy = try Sampler(options: .greedy)
        var top1 = try Sampler(options: SamplingOptions(temperature: 0.7, topK: 1), seed: 9)
        for _ in 0..<20 {
            XCTAssertEqual(greedy.sample(logits), 1)
            XCTAssertEqual(top1.sample(logits), 1)
        }
    }

    /// Naive reference: softmax(l/T), keep the k best, then the nucleus of mass p, renormalise.
    func naive(_ l: [Float], t: Double, k: Int?, p: Double?) -> [Double] {
        let e = l.map { Foundation.exp(Double($0) / t) }
        let z = e.reduce(0, +)
        var probs = e.map { $0 / z }
        let order = probs.indices.sorted { probs[$0] != probs[$1] ? probs[$0] > probs[$1] : $0 < $1 }
        var kept = Array(order.prefix(k ?? l.count))
        if let p {
            let mass = kept.reduce(0) { $0 + probs[$1] }
            var acc = 0.0, n = 0
            while n < kept.count { acc += probs[kept[n]] / mass; n += 1; if acc >= p { break } }
            kept = Array(kept.prefix(n))
        }
        for i in probs.indices where !kept.contains(i) { probs[i] = 0 }
        let s = probs.reduce(0, +)
        return probs.map { $0 / s }
    }

    func testDistributionMatchesNaiveFiltering() {
        for (t, k, p) in [(1.0, nil, nil), (0.5, 3, nil), (1.3, nil, 0.8), (0.9, 4, 0.5), (2.0, 9, 0.999), (1.0, nil, 0.01)] as [(Double, Int?, Double?)] {
            let got = Sampler.distribution(logits, options: SamplingOptions(temperature: Float(t), topK: k, topP: p.map(Float.init)))
            let want = naive(logits, t: t, k: k, p: p)
            for i in logits.indices { XCTAssertEqual(Double(got[i]), want[i], accuracy: 1e-6, "T \(t) k \(String(describing: k)) p \(String(describing: p)) id \(i)") }
        }
        // top-p 0.01 keeps only the most probable token.
        XCTAssertEqual(Sampler.distribution(logits, options: SamplingOptions(topP: 0.01)).filter { $0 > 0 }.count, 1)
    }

    /// Seeded draws are reproducible and their frequencies follow the distribution.
    func testDrawsFollowDistributionAndSeed() throws {
        let options = SamplingOptions(temperature: 0.8, topK: 5, topP: 0.9)
        let p = Sampler.distribution(logits, options: options)
        var a = try Sampler(options: options, seed: 42), b = try Sampler(options: options, seed: 42)
        var counts = [Int](repeating: 0, count: logits.count)
        let n = 20000
        for _ in 0..<n {
            let x = a.sample(logits)
            XCTAssertEqual(x, b.sample(logits))
            counts[x] += 1
        }
        for i in logits.indices {
            if p[i] == 0 { XCTAssertEqual(counts[i], 0, "filtered id \(i) drawn") }
            XCTAssertEqual(Double(counts[i]) / Double(n), Double(p[i]), accuracy: 0.015, "id \(i)")
        }
    }

    func testInvalidOptions() {
        XCTAssertThrowsError(try Sampler(options: SamplingOptions(temperature: -1)))
        XCTAssertThrowsError(try Sampler(options: SamplingOptions(topK: 0)))
        XCTAssertThrowsError(try Sampler(options: SamplingOptions(topP: 0)))
        XCTAssertThrowsError(try Sampler(options: SamplingOptions(topP: 1.5)))
    }

    /// Greedy generation with the KV cache equals greedy re-running the whole prefix each step.
    func testCachedGenerationEqualsFullRecompute() throws {
        let model = try HuggingFaceModel.load(directory: ownHFFixture("qwen2-moe-step2-mlponly")).model
        let prompt: [Int32] = [3, 17, 42, 5]
        var sampler = try Sampler(options: .greedy)
        var seen: [Int32] = []
        let new = try model.generate(prompt: prompt, maxNewTokens: 10, sampler: &sampler) { seen.append($0) }
        XCTAssertEqual(new.count, 10)
        XCTAssertEqual(seen, new)
        var seq = prompt
        for _ in 0..<10 {
            let l = try model.forward(Tensor(indices: seq, shape: [1, seq.count])).logits
            let v = model.config.vocabSize
            seq.append(Int32(Sampler.argmax(Array(l.scalars[((seq.count - 1) * v)..<(seq.count * v)]))))
        }
        XCTAssertEqual(Array(seq.dropFirst(prompt.count)), new)
        // Stop tokens end early; the sequence limit caps the length.
        var s2 = try Sampler(options: .greedy)
        XCTAssertEqual(try model.generate(prompt: prompt, maxNewTokens: 10, sampler: &s2, stopTokens: [new[2]]), Array(new.prefix(3)))
        var s3 = try Sampler(options: .greedy)
        let long = try model.generate(prompt: prompt, maxNewTokens: 1000, sampler: &s3)
        XCTAssertEqual(long.count, model.config.maxSequenceLength - prompt.count + 1)
    }
}
