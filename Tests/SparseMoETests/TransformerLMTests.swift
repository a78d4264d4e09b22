import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels

final class TransformerLMTests: XCTestCase {
    static func tinyConfig(moe: Bool = true, latent: Bool = false, position: PositionEncoding = .rope) -> TransformerConfig {
        var m = MoEConfig(numExperts: 3, topK: 2, expertIntermediateSize: 5)
        m.sharedExperts = 1
        m.sharedExpertIntermediateSize = 4
        m.sharedGating = .sigmoid
        m.firstDense = 1
        var c = TransformerConfig(vocabSize: 11, hiddenSize: 8, numLayers: 2, numHeads: 2, numKVHeads: 1,
                                  maxSequenceLength: 16, intermediateSize: 6, moe: moe ? m : nil)
        c.positionEncoding = position
        c.qkNorm = latent ? .none : .perHead
        c.attentionBias = !latent
        c.initStd = 0.3
        if latent {
            c.latentAttention = LatentAttentionConfig(qLoraRank: 6, kvLoraRank: 4, qkNopeHeadDim: 2, qkRopeHeadDim: 2, vHeadDim: 3)
            c.ropeStyle = .interleaved
        }
        return c
    }

    func testParameterNamesFollowTheHuggingFaceLayout() throws {
        let model = try TransformerLM(config: Self.tinyConfig(), seed: 1)
        let names = Set(model.namedParameters().map(\.name))
        for n in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
                  "model.layers.0.self_attn.q_norm.weight", "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate.weight",
                  "model.layers.1.mlp.experts.gate_proj", "model.layers.1.mlp.shared_expert.up_proj.weight",
                  "model.layers.1.mlp.shared_expert_gate.weight", "model.norm.weight", "lm_head.weight"] {
            XCTAssertTrue(names.contains(n), "missing \(n)")
        }
        XCTAssertEqual(model.parameterCount, model.parameters.reduce(0) { $0 + $1.count })
    }

    func testWholeModelGradientsMatchFiniteDifferences() throws {
        for (latent, position) in [(false, PositionEncoding.rope), (true, .rope), (false, .learned)] {
            let model = try TransformerLM(config: Self.tinyConfig(latent: latent, position: position), seed: 2)
            let tokens = Tensor(indices: [1, 4, 7, 2, 9, 3, 0, 5], shape: [2, 4])
            let params = model.parameters.filter { $0.requiresGrad }
            _ = try checkGradients("TransformerLM latent=\(latent) \(position)", inputs: params, eps: 1e-3, tolerance: 5e-2) { _ in
                let out = try model.forward(tokens)
                return add(out.logits.mean(), out.auxLoss!)
            }
        }
    }

    func testCausalModelIgnoresTheFuture() throws {
        let model = try TransformerLM(config: Self.tinyConfig(), seed: 3)
        let a = try withNoGrad { try model.forward(Tensor(indices: [1, 2, 3, 4, 5], shape: [1, 5])).logits.scalars }
        let b = try withNoGrad { try model.forward(Tensor(indices: [1, 2, 3, 9, 0], shape: [1, 5])).logits.scalars }
        XCTAssertEqual(Array(a[0..<(3 * 11)]), Array(b[0..<(3 * 11)]))
        XCTAssertNotEqual(Array(a[(3 * 11)...]), Array(b[(3 * 11)...]))
    }

    func testOutOfVocabularyTokenIdsThrow() throws {
        // Token ids are user data: the model throws (the embedding op would trap).
        let model = try TransformerLM(config: Self.tinyConfig(), seed: 3)
        for bad: Int32 in [11, -1] {
            XCTAssertThrowsError(try model.forward(Tensor(indices: [1, bad, 3], shape: [1, 3]))) { e in
                XCTAssertTrue("\(e)".contains("id \(bad) at position 1") && "\(e)".contains("V = 11"), "\(e)")
            }
        }
        XCTAssertNoThrow(try withNoGrad { try model.forward(Tensor(indices: [0, 10, 3], shape: [1, 3])) })
    }

    /// Logits of `ids` run through `cache`: the first three as one prompt, then one at a time.
    func logitsDecodedInto(_ cache: KVCache, _ model: TransformerLM, _ ids: [Int32]) throws -> [Float] {
        try withNoGrad {
            var pieces = try model.forward(Tensor(indices: Array(ids[0..<3]), shape: [1, 3]), options: ForwardOptions(cache: cache)).logits.scalars
            for i in 3..<ids.count {
                pieces += try model.forward(Tensor(indices: [ids[i]], shape: [1, 1]), options: ForwardOptions(cache: cache)).logits.scalars
            }
            return pieces
        }
    }

    func testKVCacheDecodingEqualsFullRecomputation() throws {
        for latent in [false, true] {
            let model = try TransformerLM(config: Self.tinyConfig(latent: latent), seed: 4)
            let ids: [Int32] = [3, 1, 4, 1, 5, 9, 2]
            let full = try withNoGrad { try model.forward(Tensor(indices: ids, shape: [1, 7])).logits.scalars }
            let cache = KVCache(capacity: 16)
            let pieces = try logitsDecodedInto(cache, model, ids)
            assertClose(pieces, full, atol: 2e-5, rtol: 1e-4, "KV cache latent=\(latent)")
        }
    }

    /// The cache's buffers are not zero-filled: decoding into recycled memory full of NaNs gives
    /// the logits of a full recomputation (only the positions written are read), through the
    /// one-sequence path and the ragged batch path.
    func testKVCacheOnDirtyMemoryReadsOnlyWhatItWrote() throws {
        let model = try TransformerLM(config: Self.tinyConfig(), seed: 4)
        let capacity = 1 << 15  // 4 floats per position (1 KV head of 4): 512 KiB buffers, from the pool
        func dirtyCache() -> KVCache {
            do { _ = (0..<8).map { _ in Tensor(uninitialized: [capacity * 4]) } }  // released to the pool
            StoragePool.shared.fillIdleBlocks(byte: 0xFF)
            return KVCache(capacity: capacity)
        }
        let ids: [Int32] = [3, 1, 4, 1, 5, 9, 2]
        let full = try withNoGrad { try model.forward(Tensor(indices: ids, shape: [1, 7])).logits.scalars }
        let cache = dirtyCache()
        let pieces = try logitsDecodedInto(cache, model, ids)
        assertClose(pieces, full, atol: 2e-5, rtol: 1e-4, "one sequence, dirty cache memory")

        // Two sequences in one ragged batch, then one more token each, against clean caches.
        let prompts: [[Int32]] = [[3, 1, 4], [2, 7]], next: [Int32] = [5, 6]
        let dirty = [dirtyCache(), dirtyCache()], clean = [KVCache(capacity: 16), KVCache(capacity: 16)]
        let v = Self.tinyConfig().vocabSize
        try withNoGrad {
            let first = try model.forward(chunks: zip(prompts, dirty).map { SequenceChunk(tokens: $0, cache: $1) }).logits.scalars
            let second = try model.forward(chunks: zip(next, dirty).map { SequenceChunk(tokens: [$0], cache: $1) }).logits.scalars
            for i in 0..<2 {
                let p = try model.forward(Tensor(indices: prompts[i], shape: [1, prompts[i].count]),
                                          options: ForwardOptions(cache: clean[i], lastPositionLogitsOnly: true)).logits.scalars
                let n = try model.forward(Tensor(indices: [next[i]], shape: [1, 1]),
                                          options: ForwardOptions(cache: clean[i], lastPositionLogitsOnly: true)).logits.scalars
                assertClose(Array(first[(i * v)..<((i + 1) * v)]), p, atol: 1e-4, rtol: 1e-4, "ragged prompt \(i), dirty cache memory")
                assertClose(Array(second[(i * v)..<((i + 1) * v)]), n, atol: 1e-4, rtol: 1e-4, "ragged next token \(i), dirty cache memory")
            }
        }
    }

    func testInvalidConfigsNameTheField() {
        func field(_ mutate: (inout TransformerConfig) -> Void) -> String {
            var c = Self.tinyConfig()
            mutate(&c)
            do { try c.validate(); return "valid" } catch let SparseMoEError.invalidConfig(f, _) { return f } catch { return "\(error)" }
        }
        XCTAssertEqual(field { $0.numHeads = 3 }, "num_attention_heads")
        XCTAssertEqual(field { $0.numKVHeads = 3 }, "num_key_value_heads")
        XCTAssertEqual(field { $0.moe!.topK = 4 }, "moe.top_k")
        XCTAssertEqual(field { $0.moe!.capacityFactor = 0 }, "moe.capacity_factor")
        XCTAssertEqual(field { $0.moe!.nGroup = 2 }, "moe.n_group")
        XCTAssertEqual(field { $0.moe!.capacityGroups = 0 }, "moe.capacity_groups")
        XCTAssertEqual(field { $0.moe!.routedScalingFactor = 0 }, "moe.routed_scaling_factor")
        XCTAssertEqual(field { $0.moe!.router = .noisyTopK; $0.moe!.routedScalingFactor = 2 }, "moe.routed_scaling_factor")
        XCTAssertEqual(field { $0.moe!.routedScalingFactor = 2 }, "valid")
        XCTAssertEqual(field { $0.vocabSize = 0 }, "vocab_size")
        XCTAssertEqual(field { _ in }, "valid")
    }
}
