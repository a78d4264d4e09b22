import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore
@testable import SparseMoETraining

/// Naive AdamW of one parameter in Double, transcribed from the PyTorch docs'
/// algorithm (decoupled decay θ ← θ − lr·wd·θ, then the bias-corrected Adam step).
private struct NaiveAdamW {
    var p: [Double], m: [Double], v: [Double]
    var t = 0
    init(_ p: [Float]) { self.p = p.map(Double.init); m = Array(repeating: 0, count: p.count); v = m }
    mutating func step(_ g: [Float], lr: Double, b1: Double, b2: Double, eps: Double, wd: Double) {
        t += 1
        for i in p.indices {
            let gi = Double(g[i])
            p[i] -= lr * wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            let mHat = m[i] / (1 - pow(b1, Double(t))), vHat = v[i] / (1 - pow(b2, Double(t)))
            p[i] -= lr * mHat / (vHat.squareRoot() + eps)
        }
    }
}

final class TrainingOptimizerTests: XCTestCase {
    private func setGrad(_ t: Tensor, seed: UInt64, scale: Float = 1) {
        var rng = RandomGenerator(seed: seed)
        t.grad = Tensor.normal(t.shape, std: scale, using: &rng)
    }

    /// The vectorised kernel (blocks over threads, SIMD clones) gives the bits of the plain
    /// scalar Float loop it replaced, element for element: same operations, same order, no
    /// fused multiply-adds; the gradient scale is the product the clipping pass made.
    /// Sizes below and above the parallel threshold, with remainders.
    func testAdamWKernelMatchesScalarFloatLoopBitForBit() throws {
        let (lr, b1, b2, eps, wd) = (3e-3, 0.9, 0.95, 1e-8, 0.1)
        for (n, threads, scale) in [(37, 1, Float(1)), (40_013, 1, 0.37), (40_013, 2, 1), (8192 * 5 + 1, 2, 0.61)] {
            var rng = RandomGenerator(seed: UInt64(n))
            var p = Tensor.normal([n], std: 1, using: &rng).scalars
            var m = Tensor.normal([n], std: 0.1, using: &rng).scalars
            var v = Tensor.uniform([n], low: 0, high: 0.01, using: &rng).scalars
            let g = Tensor.normal([n], std: 0.5, using: &rng).scalars
            var (ep, em, ev) = (p, m, v)
            let step: Int64 = 7
            // The scalar loop, written out in Float.
            let decay = Float(1.0 - lr * wd), stepSize = Float(lr / (1.0 - pow(b1, Double(step))))
            let bc2Sqrt = Float((1.0 - pow(b2, Double(step))).squareRoot())
            let (c1, fb2, c2, feps) = (Float(1.0 - b1), Float(b2), Float(1.0 - b2), Float(eps))
            for i in 0..<n {
                let gi = g[i] * scale, pi = ep[i] * decay
                let mi = em[i] + c1 * (gi - em[i])
                let vi = ev[i] * fb2 + c2 * gi * gi
                let denom = vi.squareRoot() / bc2Sqrt + feps
                em[i] = mi; ev[i] = vi
                ep[i] = pi - stepSize * (mi / denom)
            }
            Threads.with(threads) {
                moe_adamw_step(&p, &m, &v, g, scale, Int64(n), lr, b1, b2, eps, wd, step)
            }
            for (name, got, want) in [("param", p, ep), ("m", m, em), ("v", v, ev)] {
                let bad = (0..<n).first { got[$0].bitPattern != want[$0].bitPattern }
                XCTAssertNil(bad, "\(name)[\(bad ?? 0)] = \(got[bad ?? 0]), scalar loop \(want[bad ?? 0]); n = \(n), \(threads) threads")
            }
        }
    }

    /// Clipping inside the step (`clipScale` + `step(lr:gradientScale:)`, what the trainer
    /// does) gives the same parameters, bit for bit, as scaling the gradients first
    /// (`clipGradients` + `step(lr:)`), and leaves the gradients unscaled.
    func testClipScaleInsideTheStepMatchesClippingFirst() throws {
        func model(seed: UInt64) -> [(String, Tensor)] {
            var rng = RandomGenerator(seed: seed)
            return [("a", Tensor.normal([300, 7], std: 1, using: &rng, requiresGrad: true)),
                    ("b", Tensor.normal([40_001], std: 1, using: &rng, requiresGrad: true))]
        }
        let (first, fused) = (model(seed: 5), model(seed: 5))
        let optFirst = try AdamW(namedParameters: first), optFused = try AdamW(namedParameters: fused)
        for step in 0..<3 {
            for (i, (_, t)) in first.enumerated() { setGrad(t, seed: UInt64(10 * step + i), scale: 3) }
            for (i, (_, t)) in fused.enumerated() { setGrad(t, seed: UInt64(10 * step + i), scale: 3) }
            let gradsBefore = fused.map { $0.1.grad!.scalars }
            let clipped = optFirst.clipGradients(maxNorm: 1)
            let clip = AdamW.clipScale(norm: optFused.gradientNorm(), maxNorm: 1)
            XCTAssertEqual(clip, clipped)
            XCTAssertLessThan(clip.scale, 1, "the test must clip")
            optFirst.step(lr: 1e-2)
            optFused.step(lr: 1e-2, gradientScale: clip.scale)
            for ((name, a), (_, b)) in zip(first, fused) {
                XCTAssertEqual(a.scalars.map(\.bitPattern), b.scalars.map(\.bitPattern), "\(name) after step \(step)")
            }
            XCTAssertEqual(fused.map { $0.1.grad!.scalars }, gradsBefore, "gradients left unscaled")
        }
    }

    func testAdamWMatchesNaiveFormulaOverSteps() throws {
        let config = AdamWConfig(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1)
        for (n, wd) in [(1, 0.0), (7, 0.1), (33, 0.0), (40_001, 0.1)] {
            let p = randomTensor([n], seed: UInt64(n))
            var naive = NaiveAdamW(p.scalars)
            let opt = try AdamW(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: wd)], config: config)
            for step in 0..<6 {
                let lr = 1e-2 * Double(step + 1) / 3  // a changing rate, as under a schedule
                setGrad(p, seed: UInt64(100 * n + step), scale: step == 3 ? 1e-4 : 1)
                naive.step(p.grad!.scalars, lr: lr, b1: config.beta1, b2: config.beta2, eps: config.eps, wd: wd)
                opt.step(lr: lr)
                let got = p.scalars
                var maxErr = 0.0
                for i in 0..<n { maxErr = max(maxErr, abs(Double(got[i]) - naive.p[i]) / max(1, abs(naive.p[i]))) }
                XCTAssertLessThan(maxErr, 2e-6, "n=\(n) wd=\(wd) step \(step + 1)")
            }
            XCTAssertEqual(opt.stepCount, 6)
        }
    }

    /// Groups (decay on/off, lr scale), nil gradients skipped with their own step count,
    /// frozen parameters untouched.
    func testGroupsNilGradientsAndFrozen() throws {
        let decayed = randomTensor([3, 4], seed: 1), plain = randomTensor([5], seed: 2)
        let sometimes = randomTensor([2, 2], seed: 3), frozen = randomTensor([4, 3], seed: 4)
        let config = AdamWConfig(weightDecay: 0.5)
        let opt = try AdamW(groups: [
            ParameterGroup(parameters: [("a.weight", decayed), ("s.weight", sometimes), ("f.weight", frozen)], weightDecay: 0.5),
            ParameterGroup(parameters: [("a.bias", plain)], weightDecay: 0, lrScale: 2),
        ], config: config)
        opt.frozen = ["f.weight"]
        var nd = NaiveAdamW(decayed.scalars), np = NaiveAdamW(plain.scalars), ns = NaiveAdamW(sometimes.scalars)
        let frozenBefore = frozen.scalars
        for step in 0..<4 {
            opt.zeroGrad()
            setGrad(decayed, seed: 10 + UInt64(step)); setGrad(plain, seed: 20 + UInt64(step))
            setGrad(frozen, seed: 30 + UInt64(step))
            if step >= 2 { setGrad(sometimes, seed: 40 + UInt64(step)) }
            let lr = 0.01
            nd.step(decayed.grad!.scalars, lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.5)
            np.step(plain.grad!.scalars, lr: 2 * lr, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0)
            if step >= 2 { ns.step(sometimes.grad!.scalars, lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.5) }
            let sometimesBefore = sometimes.scalars
            opt.step(lr: lr)
            if step < 2 { XCTAssertEqual(sometimes.scalars, sometimesBefore, "nil gradient must skip the parameter") }
        }
        assertClose(decayed.scalars, nd.p.map(Float.init), atol: 1e-6, rtol: 1e-5, "decayed group")
        assertClose(plain.scalars, np.p.map(Float.init), atol: 1e-6, rtol: 1e-5, "no-decay group with lr scale 2")
        assertClose(sometimes.scalars, ns.p.map(Float.init), atol: 1e-6, rtol: 1e-5, "parameter with 2 of 4 gradients")
        XCTAssertEqual(frozen.scalars, frozenBefore)
        let state = opt.exportState()
        XCTAssertEqual(state["state.s.weight.step"]?.indexScalars, [2])
        XCTAssertEqual(state["state.a.weight.step"]?.indexScalars, [4])
        XCTAssertNil(state["state.f.weight.exp_avg"])
        XCTAssertEqual(state[AdamW.stepCountKey]?.indexScalars, [4])
        opt.zeroGrad()
        XCTAssertNil(decayed.grad); XCTAssertNil(frozen.grad)
        XCTAssertEqual(opt.freeze { $0.hasSuffix("bias") }, ["a.bias"])
        XCTAssertEqual(opt.frozen, ["f.weight", "a.bias"])
        XCTAssertEqual(opt.trainableParameters.map(\.name), ["a.weight", "s.weight"])
    }

    func testNoDecayRuleAndDefaultGroups() throws {
        let noDecay = ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight",
                       "model.layers.3.self_attn.q_norm.weight", "model.layers.1.mlp.gate.e_score_correction_bias",
                       "lm.bias", "transformer.ln_f.weight", "transformer.wte.weight", "transformer.h.0.ln_1.weight",
                       "model.embed_positions.weight"]
        for name in noDecay { XCTAssertTrue(AdamW.excludesWeightDecay(name: name, rank: 2), name) }
        let decay = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.experts.gate_up_proj",
                     "lm_head.weight", "model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.down_proj"]
        for name in decay { XCTAssertFalse(AdamW.excludesWeightDecay(name: name, rank: 2), name) }
        XCTAssertTrue(AdamW.excludesWeightDecay(name: "layer.scale", rank: 1))
        // Tied embedding listed twice: kept once, under its first name, no decay.
        let emb = randomTensor([10, 4], seed: 1), w = randomTensor([4, 4], seed: 2), g = randomTensor([4], seed: 3)
        let groups = AdamW.defaultGroups([("lm_head.weight", emb), ("q_proj.weight", w), ("norm.weight", g),
                                          ("embed_tokens.weight", emb)], weightDecay: 0.1)
        XCTAssertEqual(groups.count, 2)
        XCTAssertEqual(groups[0].parameters.map(\.name), ["q_proj.weight"]); XCTAssertEqual(groups[0].weightDecay, 0.1)
        XCTAssertEqual(groups[1].parameters.map(\.name), ["lm_head.weight", "norm.weight"]); XCTAssertEqual(groups[1].weightDecay, 0)
        XCTAssertNoThrow(try AdamW(namedParameters: [("lm_head.weight", emb), ("embed_tokens.weight", emb)]))
        // Errors: same tensor twice in explicit groups, duplicate names, bad config.
        XCTAssertThrowsError(try AdamW(groups: [ParameterGroup(parameters: [("a", emb), ("b", emb)], weightDecay: 0)])) { e in
            XCTAssertTrue("\(e)".contains("same tensor"), "\(e)")
        }
        XCTAssertThrowsError(try AdamW(groups: [ParameterGroup(parameters: [("a", emb), ("a", w)], weightDecay: 0)]))
        XCTAssertThrowsError(try AdamW(groups: [], config: AdamWConfig(beta2: 1)))
        XCTAssertThrowsError(try AdamW(groups: [ParameterGroup(parameters: [("i", Tensor(zeros: [2], dtype: .int32))], weightDecay: 0)]))
    }

    /// The sum of squares behind the gradient norm reads four streams in 32 double lanes; each
    /// SIMD level (scalar, AVX2, AVX-512, as this CPU has them) must give the same bits, and all
    /// of them the naive sequential sum to 1e-12. Magnitudes spread over 2^±24 make the order of
    /// additions show in the last bits, so a level that combined its lanes differently would fail.
    func testSumOfSquaresSameBitsAtEverySIMDLevel() {
        let original = moe_weight_simd_level()
        defer { _ = moe_weight_set_simd_level(original) }
        var rng = RandomGenerator(seed: 77)
        for n in [0, 1, 7, 31, 32, 33, 63, 100, 4_095, 4_096 + 13, 70_001, 1_048_583] {
            let x = (0..<n).map { _ in rng.normal() * Float(pow(2.0, Double(Int(rng.next() % 49) - 24))) }
            let naive = x.reduce(0.0) { $0 + Double($1) * Double($1) }
            var sums: [Int32: Double] = [:]
            for level: Int32 in [0, 2, 3] where moe_weight_set_simd_level(level) == level {
                sums[level] = x.withUnsafeBufferPointer { moe_grad_norm_sq($0.baseAddress, Int64(n)) }
                XCTAssertEqual(sums[level]!, naive, accuracy: naive * 1e-12, "n \(n), level \(level)")
            }
            XCTAssertEqual(Set(sums.values.map(\.bitPattern)).count, min(sums.count, 1), "n \(n): \(sums)")
        }
    }

    func testGradientNormAndClippingAgainstNaive() throws {
        let params = [randomTensor([1], seed: 1), randomTensor([17, 3], seed: 2), randomTensor([70_001], seed: 3),
                      randomTensor([4], seed: 4)]
        for (i, p) in params.enumerated() where i != 3 { setGrad(p, seed: UInt64(50 + i)) }  // params[3]: nil grad
        var naiveSq = 0.0
        for p in params { for x in p.grad?.scalars ?? [] { naiveSq += Double(x) * Double(x) } }
        let naive = naiveSq.squareRoot()
        let norm = AdamW.gradientNorm(params)
        XCTAssertEqual(norm, naive, accuracy: naive * 1e-12)
        // Kernel vs its sequential C reference, and independence of the thread count.
        let big = params[2].grad!
        XCTAssertEqual(OptimizerKernels.sumOfSquares(big), moe_grad_norm_sq_naive(big.floats, Int64(big.count)),
                       accuracy: naiveSq * 1e-12)
        let one = Threads.with(1) { AdamW.gradientNorm(params) }, two = Threads.with(2) { AdamW.gradientNorm(params) }
        XCTAssertEqual(one, two)
        // Over 256 · 4096 elements the chunks grow past the minimum size.
        let huge = randomTensor([1_048_583], seed: 9)
        let h1 = Threads.with(1) { OptimizerKernels.sumOfSquares(huge) }
        let h2 = Threads.with(2) { OptimizerKernels.sumOfSquares(huge) }
        let hRef = moe_grad_norm_sq_naive(huge.floats, Int64(huge.count))
        XCTAssertEqual(h1, h2)
        XCTAssertEqual(h1, hRef, accuracy: hRef * 1e-12)
        // No clipping when the norm is under the limit.
        let before = params.map { $0.grad?.scalars }
        let loose = AdamW.clipGradients(params, maxNorm: naive * 2)
        XCTAssertEqual(loose.scale, 1); XCTAssertEqual(loose.norm, norm)
        XCTAssertEqual(params.map { $0.grad?.scalars }, before)
        // Clipping to a tenth.
        let maxNorm = naive / 10
        let clipped = AdamW.clipGradients(params, maxNorm: maxNorm)
        let s = Float(maxNorm / (naive + 1e-6))
        XCTAssertEqual(clipped.scale, s); XCTAssertTrue(clipped.isFinite)
        for (p, b) in zip(params, before) { XCTAssertEqual(p.grad?.scalars, b.map { $0.map { $0 * s } }) }
        XCTAssertEqual(AdamW.gradientNorm(params), maxNorm, accuracy: maxNorm * 1e-5)
        XCTAssertNil(params[3].grad)
        let g1 = params[1].grad!.scalars
        AdamW.scaleGradients(params, by: 0.25)
        XCTAssertEqual(params[1].grad!.scalars, g1.map { $0 * 0.25 })
    }

    func testNonFiniteGradientsAreReportedAndLeftAlone() throws {
        for bad in [Float.nan, .infinity, -.infinity] {
            let a = randomTensor([9], seed: 1), b = randomTensor([50_000], seed: 2)
            setGrad(a, seed: 3); setGrad(b, seed: 4)
            b.grad!.floats[49_999] = bad
            let before = a.grad!.scalars
            let r = AdamW.clipGradients([a, b], maxNorm: 1e-3)
            XCTAssertFalse(r.isFinite, "\(bad)"); XCTAssertEqual(r.scale, 1)
            XCTAssertEqual(a.grad!.scalars, before)
            let opt = try AdamW(namedParameters: [("a.weight", a), ("b.weight", b)])
            XCTAssertFalse(opt.gradientNorm().isFinite)
            opt.frozen = ["b.weight"]
            XCTAssertTrue(opt.clipGradients(maxNorm: 1).isFinite, "frozen parameters are left out of the norm")
        }
    }

    /// Export after 3 steps, import into a fresh optimiser over copies of the
    /// parameters: the next 4 steps are bit-identical to the uninterrupted run.
    func testStateExportImportContinuesBitIdentically() throws {
        func makeParams() -> [(name: String, tensor: Tensor)] {
            [("embed_tokens.weight", randomTensor([11, 5], seed: 1)), ("q_proj.weight", randomTensor([5, 5], seed: 2)),
             ("norm.weight", randomTensor([5], seed: 3)), ("experts.down_proj", randomTensor([3, 40_000], seed: 4))]
        }
        let schedule = LRSchedule(peak: 3e-3, warmupSteps: 2, totalSteps: 7)
        func run(_ opt: AdamW, _ params: [(name: String, tensor: Tensor)], steps: Range<Int>) {
            for step in steps {
                opt.zeroGrad()
                for (i, p) in params.enumerated() where !(i == 2 && step == 1) {  // one nil gradient
                    // Gradient depends on the current parameters, as a real loss would.
                    var rng = RandomGenerator(seed: UInt64(1000 * step + i))
                    let g = Tensor.normal(p.tensor.shape, std: 0.1, using: &rng)
                    for j in 0..<g.count { g.floats[j] += p.tensor.floats[j] }
                    p.tensor.grad = g
                }
                opt.clipGradients(maxNorm: 50)
                opt.step(lr: schedule.lr(step: step))
            }
        }
        let config = AdamWConfig(weightDecay: 0.1)
        let paramsA = makeParams()
        let optA = try AdamW(namedParameters: paramsA, config: config)
        run(optA, paramsA, steps: 0..<3)
        let saved = optA.exportState()
        let paramsB: [(name: String, tensor: Tensor)] = paramsA.map { ($0.name, $0.tensor.copy()) }
        run(optA, paramsA, steps: 3..<7)

        let optB = try AdamW(namedParameters: paramsB, config: config)
        try optB.importState(saved)
        XCTAssertEqual(optB.stepCount, 3)
        run(optB, paramsB, steps: 3..<7)
        for (a, b) in zip(paramsA, paramsB) { XCTAssertEqual(a.tensor.scalars, b.tensor.scalars, a.name) }
        let ea = optA.exportState(), eb = optB.exportState()
        XCTAssertEqual(Set(ea.keys), Set(eb.keys))
        for (k, t) in ea {
            if t.dtype == .int32 { XCTAssertEqual(t.indexScalars, eb[k]!.indexScalars, k) }
            else { XCTAssertEqual(t.scalars, eb[k]!.scalars, k) }
        }
        // Exported tensors are copies.
        saved["state.q_proj.weight.exp_avg"]!.floats[0] += 1
        XCTAssertNotEqual(optA.exportState()["state.q_proj.weight.exp_avg"]!.scalars[0], saved["state.q_proj.weight.exp_avg"]!.scalars[0])
    }

    func testImportErrors() throws {
        let w = randomTensor([2, 3], seed: 1)
        let opt = try AdamW(namedParameters: [("w.weight", w)])
        setGrad(w, seed: 2); opt.step(lr: 1e-3)
        let good = opt.exportState()
        var unknown = good; unknown["state.x.weight.exp_avg"] = Tensor(zeros: [2, 3])
        XCTAssertThrowsError(try opt.importState(unknown)) { e in XCTAssertTrue("\(e)".contains("x.weight"), "\(e)") }
        var shape = good; shape["state.w.weight.exp_avg_sq"] = Tensor(zeros: [3, 2])
        XCTAssertThrowsError(try opt.importState(shape)) { e in XCTAssertTrue("\(e)".contains("[3, 2]"), "\(e)") }
        var missing = good; missing["state.w.weight.step"] = nil
        XCTAssertThrowsError(try opt.importState(missing))
        var noCount = good; noCount[AdamW.stepCountKey] = nil
        XCTAssertThrowsError(try opt.importState(noCount))
        // A failed import changes nothing.
        let before = opt.exportState()
        XCTAssertEqual(before["state.w.weight.exp_avg"]!.scalars, good["state.w.weight.exp_avg"]!.scalars)
        XCTAssertNoThrow(try opt.importState(good))
        // An empty state (only the counter) resets the moments.
        let fresh = Tensor(zeros: [1], dtype: .int32)
        try opt.importState([AdamW.stepCountKey: fresh])
        XCTAssertEqual(opt.stepCount, 0); XCTAssertEqual(opt.exportState().count, 1)
    }
}
