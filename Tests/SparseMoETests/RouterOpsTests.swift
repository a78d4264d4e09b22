import XCTest
@testable import SparseMoECore

/// Router kernels against naive Swift references, hand-computed values and finite differences.
final class RouterOpsTests: XCTestCase {
    /// Naive top-k: stable sort by value descending (ties: lower index).
    private func naiveTopK(_ row: [Float], _ k: Int) -> [Int] {
        Array(row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(k))
    }

    private func naiveSoftmax(_ row: [Float]) -> [Float] {
        let m = row.max()!
        let ex = row.map { Foundation.exp(Double($0 - m)) }
        let s = ex.reduce(0, +)
        return ex.map { Float($0 / s) }
    }

    func testSoftmaxTopKMatchesNaive() throws {
        for (t, e, k) in [(1, 1, 1), (5, 8, 2), (9, 7, 3), (3, 64, 8)] {
            for renorm in [false, true] {
                let logits = randomTensor([t, e], seed: UInt64(t * 100 + e), scale: 3)
                let sel = softmaxTopK(logits, topK: k, renormalize: renorm)
                for i in 0..<t {
                    let p = naiveSoftmax(Array(logits.scalars[(i * e)..<((i + 1) * e)]))
                    let idx = naiveTopK(p, k)
                    XCTAssertEqual(sel.indices.indexScalars[(i * k)..<((i + 1) * k)].map(Int.init), idx)
                    var w = idx.map { p[$0] }
                    if renorm { let s = w.reduce(0, +); w = w.map { $0 / s } }
                    assertClose(Array(sel.weights.scalars[(i * k)..<((i + 1) * k)]), w, atol: 1e-6, rtol: 1e-5, "weights")
                    assertClose(Array(sel.probs.scalars[(i * e)..<((i + 1) * e)]), p, atol: 1e-6, rtol: 1e-5, "probs")
                }
            }
        }
    }

    func testTiesGoToLowerIndex() throws {
        let logits = Tensor([0, 1, 1, 0, 1], shape: [1, 5])
        let sel = softmaxTopK(logits, topK: 3, renormalize: true)
        XCTAssertEqual(sel.indices.indexScalars, [1, 2, 4])
        let hand = softmaxTopK(Tensor([5, -5, 0, 0, 10, -10], shape: [2, 3]), topK: 1, renormalize: false)
        XCTAssertEqual(hand.indices.indexScalars, [0, 1])
    }

    func testSoftmaxTopKGradients() throws {
        for renorm in [false, true] {
            let logits = randomTensor([4, 6], seed: 3, scale: 2)
            _ = try checkGradients("softmaxTopK weights renorm=\(renorm)", inputs: [logits], eps: 1e-3) {
                softmaxTopK($0[0], topK: 2, renormalize: renorm).weights
            }
            _ = try checkGradients("softmaxTopK probs", inputs: [logits], eps: 1e-3) {
                softmaxTopK($0[0], topK: 2, renormalize: renorm).probs
            }
        }
    }

    /// Transcription of transformers' DeepseekV3TopkRouter/MoE selection into plain loops.
    private func naiveDeepSeek(_ logits: [Float], bias: [Float], e: Int, k: Int, nGroup: Int, topkGroup: Int,
                               normalize: Bool, scaling: Float) -> ([Int], [Float]) {
        let s = logits.map { 1 / (1 + Foundation.exp(-$0)) }
        var choice = zip(s, bias).map { $0 + $1 }
        let g = e / nGroup
        if nGroup > 1 {
            let gs = (0..<nGroup).map { gi -> Float in
                let part = Array(choice[(gi * g)..<((gi + 1) * g)])
                return naiveTopK(part, min(2, g)).map { part[$0] }.reduce(0, +)
            }
            let keep = Set(naiveTopK(gs, topkGroup))
            for gi in 0..<nGroup where !keep.contains(gi) { for j in 0..<g { choice[gi * g + j] = -.infinity } }
        }
        let idx = naiveTopK(choice, k)
        var w = idx.map { s[$0] }
        if normalize { let d = w.reduce(0, +) + 1e-20; w = w.map { $0 / d } }
        return (idx, w.map { $0 * scaling })
    }

    func testSigmoidTopKMatchesNaiveWithGroups() throws {
        let (t, e, k) = (7, 8, 2)
        let logits = randomTensor([t, e], seed: 11, scale: 3)
        let bias = randomTensor([e], seed: 12, scale: 0.5)
        for (ng, tg) in [(1, 1), (4, 2), (2, 1)] {
            for norm in [false, true] {
                let sel = sigmoidTopK(logits, bias: bias, topK: k, nGroup: ng, topkGroup: tg, normalize: norm, scaling: 2.5)
                for i in 0..<t {
                    let (idx, w) = naiveDeepSeek(Array(logits.scalars[(i * e)..<((i + 1) * e)]), bias: bias.scalars, e: e, k: k,
                                                 nGroup: ng, topkGroup: tg, normalize: norm, scaling: 2.5)
                    XCTAssertEqual(sel.indices.indexScalars[(i * k)..<((i + 1) * k)].map(Int.init), idx, "row \(i) groups \(ng)/\(tg)")
                    assertClose(Array(sel.weights.scalars[(i * k)..<((i + 1) * k)]), w, atol: 1e-6, rtol: 1e-5, "weights")
                }
            }
        }
    }

    func testGroupLimitedSelectionExcludesGroups() throws {
        // 4 groups of 2; group 3 has the single highest expert but group sums favour groups 0 and 1.
        let logits = Tensor([2, 2, 1.9, 1.9, -5, -5, 3, -9], shape: [1, 8])
        let sel = sigmoidTopK(logits, bias: nil, topK: 2, nGroup: 4, topkGroup: 2, normalize: true)
        XCTAssertEqual(Set(sel.indices.indexScalars), [0, 1])
        // The bias only steers selection: a large bias on expert 5 selects it, its weight uses the unbiased score.
        let bias = Tensor([0, 0, 0, 0, 0, 10, 0, 0], shape: [8])
        let sel2 = sigmoidTopK(logits, bias: bias, topK: 1, normalize: false)
        XCTAssertEqual(sel2.indices.indexScalars, [5])
        XCTAssertEqual(sel2.weights.item, 1 / (1 + Foundation.exp(5)), accuracy: 1e-6)
    }

    func testSigmoidTopKGradients() throws {
        let logits = randomTensor([5, 8], seed: 21, scale: 2)
        let bias = randomTensor([8], seed: 22, scale: 0.3)
        for norm in [false, true] {
            _ = try checkGradients("sigmoidTopK weights norm=\(norm)", inputs: [logits], eps: 1e-3) {
                sigmoidTopK($0[0], bias: bias, topK: 3, nGroup: 2, topkGroup: 1, normalize: norm, scaling: 1.5).weights
            }
        }
        _ = try checkGradients("sigmoid scores", inputs: [logits], eps: 1e-3) {
            sigmoidTopK($0[0], bias: nil, topK: 2, normalize: true).probs
        }
    }

    func testTopKOpGradient() throws {
        let x = randomTensor([3, 9], seed: 31)
        let (v, i) = topK(x, topK: 4)
        for r in 0..<3 {
            let row = Array(x.scalars[(r * 9)..<((r + 1) * 9)])
            XCTAssertEqual(i.indexScalars[(r * 4)..<((r + 1) * 4)].map(Int.init), naiveTopK(row, 4))
            XCTAssertEqual(Array(v.scalars[(r * 4)..<((r + 1) * 4)]), naiveTopK(row, 4).map { row[$0] })
        }
        _ = try checkGradients("topK", inputs: [x], eps: 1e-3) { topK($0[0], topK: 4).values }
    }

    func testExpertChoicePicksTopTokensPerExpert() throws {
        let (t, e, cap) = (10, 4, 3)
        let scores = randomTensor([t, e], seed: 41)
        let (idx, w) = expertChoice(scores, capacity: cap)
        for x in 0..<e {
            let column = (0..<t).map { scores.scalars[$0 * e + x] }
            let chosen = Set(naiveTopK(column, cap))
            for tok in 0..<t {
                XCTAssertEqual(idx.indexScalars[tok * e + x], chosen.contains(tok) ? Int32(x) : -1)
                XCTAssertEqual(w.scalars[tok * e + x], chosen.contains(tok) ? column[tok] : 0)
            }
        }
        _ = try checkGradients("expertChoice", inputs: [scores], eps: 1e-3) { expertChoice($0[0], capacity: cap).weights }
    }

    func testCapacityPolicies() throws {
        // 4 tokens, k = 2, 3 experts, capacity 2. Expert 0 is everyone's first choice.
        let idx = Tensor(indices: [0, 1, 0, 2, 0, 1, 0, 1], shape: [4, 2])
        let w = Tensor([0.6, 0.4, 0.5, 0.5, 0.9, 0.1, 0.7, 0.3], shape: [4, 2])
        let (byPos, d1) = applyCapacity(indices: idx, weights: w, numExperts: 3, capacity: 2, policy: .position)
        XCTAssertEqual(d1, 3)  // expert 0: tokens 2,3 dropped; expert 1: token 3's slot dropped (tokens 0, 2 first)
        XCTAssertEqual(byPos.indexScalars, [0, 1, 0, 2, -1, 1, -1, -1])
        let (byProb, d2) = applyCapacity(indices: idx, weights: w, numExperts: 3, capacity: 2, policy: .probability)
        XCTAssertEqual(d2, 3)  // expert 0 keeps 0.9 (t2) and 0.7 (t3); expert 1 keeps 0.4 (t0), 0.3 (t3)
        XCTAssertEqual(byProb.indexScalars, [-1, 1, -1, 2, 0, -1, 0, 1])
    }

    /// transformers' load_balancing_loss_func for one layer, written out:
    /// mean over tokens of one_hot(selected) → [K, E]; mean of probs → [E]; E · Σ.
    private func hfLoadBalancing(_ probs: [Float], _ sel: [Int32], t: Int, e: Int, k: Int) -> Double {
        var tokensPerExpert = [[Double]](repeating: [Double](repeating: 0, count: e), count: k)
        for i in 0..<t { for s in 0..<k { tokensPerExpert[s][Int(sel[i * k + s])] += 1 / Double(t) } }
        var probPerExpert = [Double](repeating: 0, count: e)
        for i in 0..<t { for j in 0..<e { probPerExpert[j] += Double(probs[i * e + j]) / Double(t) } }
        var total = 0.0
        for s in 0..<k { for j in 0..<e { total += tokensPerExpert[s][j] * probPerExpert[j] } }
        return total * Double(e)
    }

    func testLoadBalancingLossMatchesTransformersFormula() throws {
        let (t, e, k) = (12, 6, 2)
        let logits = randomTensor([t, e], seed: 51, scale: 2)
        let sel = softmaxTopK(logits, topK: k, renormalize: true)
        let loss = loadBalancingLoss(probs: sel.probs, selected: sel.indices)
        XCTAssertEqual(Double(loss.item), hfLoadBalancing(sel.probs.scalars, sel.indices.indexScalars, t: t, e: e, k: k), accuracy: 1e-5)
        // Hand value: perfectly balanced probs and counts give loss = K.
        let uniform = Tensor(repeating: 0.25, shape: [4, 4])
        let balanced = Tensor(indices: [0, 1, 2, 3, 1, 0, 3, 2], shape: [4, 2])
        XCTAssertEqual(loadBalancingLoss(probs: uniform, selected: balanced).item, 2, accuracy: 1e-6)
        // Sequence-level: mean of per-sequence losses.
        let g2 = loadBalancingLoss(probs: sel.probs, selected: sel.indices, groups: 3)
        var expected = 0.0
        for g in 0..<3 {
            expected += hfLoadBalancing(Array(sel.probs.scalars[(g * 4 * e)..<((g + 1) * 4 * e)]),
                                        Array(sel.indices.indexScalars[(g * 4 * k)..<((g + 1) * 4 * k)]), t: 4, e: e, k: k) / 3
        }
        XCTAssertEqual(Double(g2.item), expected, accuracy: 1e-5)
        // Gradient flows through probs (counts fixed): finite differences on the probabilities.
        let p = Tensor.uniform([t, e], low: 0, high: 1, using: &rngForTests)
        _ = try checkGradients("load balancing", inputs: [p]) { loadBalancingLoss(probs: $0[0], selected: sel.indices, groups: 2) }
    }

    func testZLoss() throws {
        let logits = randomTensor([5, 7], seed: 61, scale: 3)
        var expected = 0.0
        for i in 0..<5 {
            let row = logits.scalars[(i * 7)..<((i + 1) * 7)].map(Double.init)
            let m = row.max()!
            let lse = m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +))
            expected += lse * lse / 5
        }
        XCTAssertEqual(Double(routerZLoss(logits).item), expected, accuracy: 1e-4)
        _ = try checkGradients("z-loss", inputs: [logits], eps: 1e-3) { routerZLoss($0[0]) }
    }

    func testInvalidArgumentsNameTheField() {
        let logits = Tensor(zeros: [4, 8])
        XCTAssertThrowsError(try Check.softmaxTopK(logits, topK: 9)) { XCTAssertTrue("\($0)".contains("k must be")) }
        XCTAssertThrowsError(try Check.softmaxTopK(logits, topK: 0))
        XCTAssertThrowsError(try Check.sigmoidTopK(logits, bias: nil, topK: 2, nGroup: 3, topkGroup: 1)) {
            XCTAssertTrue("\($0)".contains("n_group"), "\($0)")
        }
        XCTAssertThrowsError(try Check.sigmoidTopK(logits, bias: nil, topK: 2, nGroup: 4, topkGroup: 5)) {
            XCTAssertTrue("\($0)".contains("topk_group"), "\($0)")
        }
        XCTAssertThrowsError(try Check.expertChoice(logits, capacity: 0))
        XCTAssertThrowsError(try Check.loadBalancingLoss(probs: logits, selected: Tensor(zeros: [3, 2], dtype: .int32), groups: 1))
        XCTAssertNoThrow(try Check.softmaxTopK(logits, topK: 8))
    }
}

nonisolated(unsafe) private var rngForTests = RandomGenerator(seed: 77)
import Foundation

final class RouterCombineOpsTests: XCTestCase {
    func testNoisyLogitsForwardAndGradients() throws {
        let clean = randomTensor([3, 5], seed: 1), raw = randomTensor([3, 5], seed: 2, scale: 2), noise = randomTensor([3, 5], seed: 3)
        let out = noisyLogits(clean: clean, rawStd: raw, noise: noise)
        let (cs, ns, rs) = (clean.scalars, noise.scalars, raw.scalars)
        let expected: [Float] = (0..<15).map { i in
            let sp: Float = Foundation.log(1 + Foundation.exp(rs[i]))
            return cs[i] + ns[i] * sp
        }
        assertClose(out.scalars, expected, atol: 1e-5, rtol: 1e-5, "noisy logits")
        _ = try checkGradients("noisyLogits", inputs: [clean, raw]) { noisyLogits(clean: $0[0], rawStd: $0[1], noise: noise) }
    }

    func testGatedSharedCombine() throws {
        let r = randomTensor([4, 3], seed: 4), s = randomTensor([4, 3], seed: 5), g = randomTensor([4, 1], seed: 6, scale: 2)
        let out = gatedSharedCombine(routed: r, shared: s, gate: g)
        let (rs, ss, gs) = (r.scalars, s.scalars, g.scalars)
        let expected: [Float] = (0..<12).map { i in
            let sig: Float = 1 / (1 + Foundation.exp(-gs[i / 3]))
            return rs[i] + ss[i] * sig
        }
        assertClose(out.scalars, expected, atol: 1e-6, rtol: 1e-5, "gated shared")
        _ = try checkGradients("gatedSharedCombine", inputs: [r, s, g]) { gatedSharedCombine(routed: $0[0], shared: $0[1], gate: $0[2]) }
        XCTAssertThrowsError(try Check.gatedSharedCombine(routed: r, shared: s, gate: Tensor(zeros: [3])))
    }
}
