import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels

/// `TransformerLM.forward(chunks:)` against the reference: each sequence run alone through
/// `forward(_:options:)` with its own cache.
final class RaggedBatchForwardTests: XCTestCase {
    /// Sequences with different histories, new-token counts and positions.
    let histories: [[Int32]] = [[1, 2, 3], [], [4, 5, 6, 7, 8, 9], [10]]
    let newTokens: [[Int32]] = [[4], [7, 1, 2, 3, 0], [2], [3, 3]]

    func referenceLogits(_ model: TransformerLM, history: [Int32], new: [Int32], cache: KVCache) throws -> [Float] {
        if !history.isEmpty {
            _ = try model.forward(Tensor(indices: history, shape: [1, history.count]), options: ForwardOptions(cache: cache))
        }
        let out = try model.forward(Tensor(indices: new, shape: [1, new.count]), options: ForwardOptions(cache: cache, lastPositionLogitsOnly: true))
        return out.logits.scalars
    }

    func testEachRowEqualsItsSequenceRunAloneForEveryAttentionAndPositionKind() throws {
        for (latent, position) in [(false, PositionEncoding.rope), (true, .rope), (false, .learned), (false, .sinusoidal)] {
            let config = TransformerLMTests.tinyConfig(latent: latent, position: position)
            let model = try TransformerLM(config: config, seed: 3)
            let v = config.vocabSize
            var caches: [KVCache] = []
            var chunks: [SequenceChunk] = []
            var expected: [[Float]] = []
            for (h, n) in zip(histories, newTokens) {
                expected.append(try referenceLogits(model, history: h, new: n, cache: KVCache(capacity: 16)))
                let cache = KVCache(capacity: 16)
                if !h.isEmpty { _ = try model.forward(Tensor(indices: h, shape: [1, h.count]), options: ForwardOptions(cache: cache)) }
                caches.append(cache)
                chunks.append(SequenceChunk(tokens: n, cache: cache))
            }
            let out = try model.forward(chunks: chunks)
            XCTAssertEqual(out.logits.shape, [chunks.count, v])
            let got = out.logits.scalars
            for i in 0..<chunks.count {
                for j in 0..<v {
                    XCTAssertEqual(got[i * v + j], expected[i][j], accuracy: 1e-4, "latent \(latent) \(position) sequence \(i) logit \(j)")
                }
                XCTAssertEqual(caches[i].length, histories[i].count + newTokens[i].count, "cache \(i) extended by its new tokens")
            }
            // The MoE layers saw all rows at once.
            let rows = newTokens.reduce(0) { $0 + $1.count }
            for case let m? in out.moe { XCTAssertEqual(m.routing.experts.shape[0], rows) }

            // A second step continues every cache: one token each, against the reference.
            let next: [Int32] = [5, 6, 7, 8]
            let second = try model.forward(chunks: zip(next, caches).map { SequenceChunk(tokens: [$0], cache: $1) }).logits.scalars
            for i in 0..<next.count {
                let ref = try referenceLogits(model, history: histories[i] + newTokens[i], new: [next[i]], cache: KVCache(capacity: 16))
                for j in 0..<v { XCTAssertEqual(second[i * v + j], ref[j], accuracy: 1e-4, "second step, latent \(latent) \(position) sequence \(i)") }
            }
        }
    }

    func testBadChunksThrowNamingTheChunk() throws {
        let model = try TransformerLM(config: TransformerLMTests.tinyConfig(), seed: 3)
        let cache = KVCache(capacity: 16)
        XCTAssertThrowsError(try model.forward(chunks: [])) { XCTAssertTrue("\($0)".contains("at least one")) }
        XCTAssertThrowsError(try model.forward(chunks: [SequenceChunk(tokens: [], cache: cache)])) { XCTAssertTrue("\($0)".contains("chunk 0 has no tokens")) }
        XCTAssertThrowsError(try model.forward(chunks: [SequenceChunk(tokens: [1], cache: cache), SequenceChunk(tokens: [2], cache: cache)])) {
            XCTAssertTrue("\($0)".contains("chunk 1 shares its KV cache"), "\($0)")
        }
        XCTAssertThrowsError(try model.forward(chunks: [SequenceChunk(tokens: [1, 2, 3], cache: KVCache(capacity: 2))])) {
            XCTAssertTrue("\($0)".contains("beyond its cache capacity 2"), "\($0)")
        }
        XCTAssertThrowsError(try model.forward(chunks: [SequenceChunk(tokens: [99], cache: cache)]))
    }
}
