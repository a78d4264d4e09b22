import XCTest
@testable import SparseMoECore
@testable import SparseMoENN

/// The MoE layer against a naive per-token reference (loop over tokens, loop over the
/// selected experts, plain loops for each FFN), and its backward against finite differences.
final class MoELayerTests: XCTestCase {
    // MARK: naive reference

    private func act(_ v: Float, _ kind: FeedForwardKind) -> Float {
        switch kind {
        case .swiglu: return v / (1 + Foundation.exp(-v))
        case .relu: return max(0, v)
        case .gelu: return 0.5 * v * (1 + Float(Foundation.erf(Double(v) / 2.0.squareRoot())))
        case .geluTanh:
            let u = 0.7978845608 * (v + 0.044715 * v * v * v)
            return 0.5 * v * (1 + Foundation.tanh(u))
        }
    }

    /// FFN_e(x) for one token row, plain loops.
    private func naiveExpert(_ ex: Experts, _ e: Int, _ x: [Float]) -> [Float] {
        let (c, f) = (ex.hiddenSize, ex.intermediateSize)
        let w1 = ex.w1.scalars, w2 = ex.w2.scalars, w3 = ex.w3?.scalars, b1 = ex.b1?.scalars, b2 = ex.b2?.scalars
        var h = [Float](repeating: 0, count: f)
        for j in 0..<f {
            var a: Float = b1?[e * f + j] ?? 0, u: Float = 0
            for i in 0..<c {
                a += w1[(e * f + j) * c + i] * x[i]
                if let w3 { u += w3[(e * f + j) * c + i] * x[i] }
            }
            h[j] = ex.kind == .swiglu ? act(a, .swiglu) * u : act(a, ex.kind)
        }
        var y = [Float](repeating: 0, count: c)
        for i in 0..<c {
            var s: Float = b2?[e * c + i] ?? 0
            for j in 0..<f { s += w2[(e * c + i) * f + j] * h[j] }
            y[i] = s
        }
        return y
    }

    /// y[t] = Σ_s gate[t,s]·FFN_{e[t,s]}(x[t]) (+ shared) from the routing decisions.
    private func naiveLayer(_ layer: MoELayer, _ x: Tensor, _ routing: Routing) -> [Float] {
        let (t, c, k) = (x.shape[0], x.shape[1], routing.experts.shape[1])
        let xs = x.scalars, idx = routing.experts.indexScalars, g = routing.gates.scalars
        var out = [Float](repeating: 0, count: t * c)
        for tok in 0..<t {
            let row = Array(xs[(tok * c)..<((tok + 1) * c)])
            for s in 0..<k where idx[tok * k + s] >= 0 {
                let y = naiveExpert(layer.experts, Int(idx[tok * k + s]), row)
                for i in 0..<c { out[tok * c + i] += g[tok * k + s] * y[i] }
            }
        }
        return out
    }

    private func makeLayer(router: any Router, kind: FeedForwardKind = .swiglu, e: Int, c: Int = 6, f: Int = 5,
                           shared: Bool = false, gating: SharedExpertGating = .none, seed: UInt64 = 1) throws -> MoELayer {
        var rng = RandomGenerator(seed: seed)
        let experts = try Experts(kind: kind, numExperts: e, hiddenSize: c, intermediateSize: f, rng: &rng)
        if let b1 = experts.b1 { for i in 0..<b1.count { b1.floats[i] = rng.uniform(-0.5, 0.5) } }
        if let b2 = experts.b2 { for i in 0..<b2.count { b2.floats[i] = rng.uniform(-0.5, 0.5) } }
        let sharedFFN = shared ? try FeedForward(kind: .swiglu, hiddenSize: c, intermediateSize: 7, rng: &rng) : nil
        return try MoELayer(router: router, experts: experts, shared: sharedFFN, sharedGating: gating,
                            losses: try MoELossConfig(balanceCoefficient: 0.1, zLossCoefficient: 0.01), rng: &rng)
    }

    // MARK: forward

    func testEveryRouterAndExpertKindMatchesNaive() throws {
        let (t, c, e) = (11, 6, 4)
        var rng = RandomGenerator(seed: 5)
        let routers: [(String, any Router)] = [
            ("topk", try TopKRouter(hiddenSize: c, numExperts: e, topK: 2, rng: &rng)),
            ("topk-norenorm", try TopKRouter(hiddenSize: c, numExperts: e, topK: 3, renormalize: false, rng: &rng)),
            ("switch-capacity", try TopKRouter.switchTop1(hiddenSize: c, numExperts: e, capacityFactor: 1.0, rng: &rng)),
            ("topk-capacity-prob", try TopKRouter(hiddenSize: c, numExperts: e, topK: 2, capacity: try CapacityLimit(factor: 0.75, policy: .probability), rng: &rng)),
            ("noisy", try NoisyTopKRouter(hiddenSize: c, numExperts: e, topK: 2, rng: &rng)),
            ("expert-choice", try ExpertChoiceRouter(hiddenSize: c, numExperts: e, capacityFactor: 1.5, rng: &rng)),
            ("sigmoid-groups", try SigmoidBiasRouter(hiddenSize: c, numExperts: e, topK: 2, nGroup: 2, topkGroup: 1, routedScalingFactor: 2, rng: &rng)),
            ("hash", try HashRouter(numExperts: e)),
        ]
        let ids = Tensor(indices: (0..<Int32(t)).map { $0 * 7 + 3 }, shape: [t])
        for (name, router) in routers {
            for kind in FeedForwardKind.allCases {
                let layer = try makeLayer(router: router, kind: kind, e: e, c: c)
                let x = randomTensor([t, c], seed: 9)
                var ctx = RoutingContext(training: true, rng: RandomGenerator(seed: 3), tokenIds: ids)
                let out = try withNoGrad { try layer(x, context: &ctx) }
                // Same routing again with the same generator state: the reference uses it.
                var ctx2 = RoutingContext(training: true, rng: RandomGenerator(seed: 3), tokenIds: ids)
                let routing = try withNoGrad { try router.route(x, context: &ctx2) }
                assertClose(out.output.scalars, naiveLayer(layer, x, routing), atol: 2e-5, rtol: 1e-4, "\(name) \(kind)")
            }
        }
    }

    func testCapacityDropsAndReportsTheRate() throws {
        var rng = RandomGenerator(seed: 2)
        let router = try TopKRouter.switchTop1(hiddenSize: 6, numExperts: 4, capacityFactor: 0.5, rng: &rng)
        let layer = try makeLayer(router: router, e: 4)
        let x = randomTensor([16, 6], seed: 4)
        var ctx = RoutingContext()
        let out = try layer(x, context: &ctx)
        let stats = RoutingStatistics(routing: out.routing, router: layer.router)
        // capacity = ceil(0.5 · 16 · 1 / 4) = 2 per expert: at most 8 of 16 tokens survive.
        XCTAssertLessThanOrEqual(stats.tokensPerExpert.max()!, 2)
        XCTAssertEqual(stats.dropped, 16 - stats.tokensPerExpert.reduce(0, +))
        XCTAssertGreaterThanOrEqual(stats.dropped, 8)
        XCTAssertEqual(stats.dropRate, Double(stats.dropped) / 16, accuracy: 1e-12)
        // The expert op ran exactly the surviving assignments.
        XCTAssertEqual(out.dispatch.tokensPerExpert, stats.tokensPerExpert)
        XCTAssertEqual(out.dispatch.assignments, 16 - stats.dropped)
        // A dropped token's output is exactly zero (it passes through the residual outside the layer).
        var ctx2 = RoutingContext()
        let routing = try router.route(x, context: &ctx2)
        for tok in 0..<16 where routing.experts.int32s[tok] < 0 {
            XCTAssertEqual(Array(out.output.scalars[(tok * 6)..<((tok + 1) * 6)]), [Float](repeating: 0, count: 6))
        }
    }

    func testOneHotRoutingSelectsKnownExperts() throws {
        // Router weight rows are scaled unit vectors: token i (= basis vector i) goes to expert i
        // with probability ≈ 1; with k = 1 and no renormalisation the gate is that probability.
        var rng = RandomGenerator(seed: 3)
        let router = try TopKRouter(hiddenSize: 4, numExperts: 4, topK: 1, renormalize: false, rng: &rng)
        router.weight.zero()
        for i in 0..<4 { router.weight.floats[i * 4 + i] = 30 }
        let layer = try makeLayer(router: router, e: 4, c: 4)
        var basis = [Float](repeating: 0, count: 16)
        for i in 0..<4 { basis[i * 4 + (3 - i)] = 1 }
        let x = Tensor(basis, shape: [4, 4])
        var ctx = RoutingContext()
        let routing = try router.route(x, context: &ctx)
        XCTAssertEqual(routing.experts.indexScalars, [3, 2, 1, 0])
        for g in routing.gates.scalars { XCTAssertEqual(g, 1, accuracy: 1e-6) }
        let out = try layer(x, context: &ctx)
        for tok in 0..<4 {
            let expected = naiveExpert(layer.experts, 3 - tok, Array(basis[(tok * 4)..<((tok + 1) * 4)]))
            assertClose(Array(out.output.scalars[(tok * 4)..<((tok + 1) * 4)]), expected, atol: 1e-5, rtol: 1e-4, "token \(tok)")
        }
    }

    func testSharedExpertsAddedAndGated() throws {
        var rng = RandomGenerator(seed: 4)
        for gating in [SharedExpertGating.none, .sigmoid] {
            let router = try TopKRouter(hiddenSize: 6, numExperts: 3, topK: 2, rng: &rng)
            let layer = try makeLayer(router: router, e: 3, shared: true, gating: gating)
            let x = randomTensor([5, 6], seed: 6)
            var ctx = RoutingContext()
            let out = try withNoGrad { try layer(x, context: &ctx) }
            let routing = try withNoGrad { try router.route(x, context: &ctx) }
            var expected = naiveLayer(layer, x, routing)
            let sharedOut = withNoGrad { layer.shared!(x) }.scalars
            let gateLogits = layer.sharedGate.map { gate in withNoGrad { gate(x) }.scalars }
            for tok in 0..<5 {
                let g: Float = gateLogits.map { 1 / (1 + Foundation.exp(-$0[tok])) } ?? 1
                for i in 0..<6 { expected[tok * 6 + i] += g * sharedOut[tok * 6 + i] }
            }
            assertClose(out.output.scalars, expected, atol: 2e-5, rtol: 1e-4, "shared \(gating)")
        }
    }

    // MARK: backward

    func testWholeLayerBackwardMatchesFiniteDifferences() throws {
        var rng = RandomGenerator(seed: 8)
        let router = try TopKRouter(hiddenSize: 5, numExperts: 4, topK: 2, rng: &rng)
        let layer = try makeLayer(router: router, e: 4, c: 5, f: 3, shared: true, gating: .sigmoid)
        let x = randomTensor([7, 5], seed: 10)
        let params = [x] + layer.parameters
        _ = try checkGradients("MoE layer output", inputs: params, eps: 1e-3, tolerance: 3e-2) { _ in
            var ctx = RoutingContext()
            return try layer(x, context: &ctx).output
        }
        _ = try checkGradients("MoE aux loss", inputs: [x, router.weight], eps: 1e-3, tolerance: 3e-2) { _ in
            var ctx = RoutingContext()
            return try layer(x, context: &ctx).auxLoss!
        }
    }

    /// `routedScalingFactor` s on the softmax router: the same experts, every gate s times the
    /// unscaled router's (independent of the scaling code: the softmax top-k gates of an
    /// identically seeded router), and the layer's gradients still match finite differences.
    func testRoutedScalingFactorScalesTheSoftmaxGates() throws {
        let (c, e) = (5, 4)
        var rngA = RandomGenerator(seed: 21), rngB = RandomGenerator(seed: 21)
        let plain = try TopKRouter(hiddenSize: c, numExperts: e, topK: 2, rng: &rngA)
        let scaled = try TopKRouter(hiddenSize: c, numExperts: e, topK: 2, routedScalingFactor: 2.5, rng: &rngB)
        XCTAssertEqual(plain.weight.scalars, scaled.weight.scalars)
        let x = randomTensor([9, c], seed: 4)
        var ctx = RoutingContext()
        let a = try withNoGrad { try plain.route(x, context: &ctx) }
        let b = try withNoGrad { try scaled.route(x, context: &ctx) }
        XCTAssertEqual(a.experts.indexScalars, b.experts.indexScalars)
        assertClose(b.gates.scalars, a.gates.scalars.map { 2.5 * $0 }, atol: 1e-6, rtol: 1e-6, "scaled gates")
        let layer = try makeLayer(router: scaled, e: e, c: c, f: 3)
        _ = try checkGradients("MoE layer, scaled gates", inputs: [x] + layer.parameters, eps: 1e-3, tolerance: 3e-2) { _ in
            var ctx = RoutingContext()
            return try layer(x, context: &ctx).output
        }
    }

    func testMLPExpertsAndSigmoidRouterBackward() throws {
        var rng = RandomGenerator(seed: 12)
        let router = try SigmoidBiasRouter(hiddenSize: 5, numExperts: 4, topK: 2, nGroup: 2, topkGroup: 2, routedScalingFactor: 1.5, rng: &rng)
        let layer = try makeLayer(router: router, kind: .gelu, e: 4, c: 5, f: 3, shared: true)
        let x = randomTensor([6, 5], seed: 13)
        _ = try checkGradients("MoE gelu/sigmoid", inputs: [x] + layer.parameters.filter { $0 !== router.bias }, eps: 1e-3, tolerance: 3e-2) { _ in
            var ctx = RoutingContext()
            return try layer(x, context: &ctx).output
        }
    }

    // MARK: routing behaviour

    func testAuxFreeBiasUpdateMovesTowardsBalance() throws {
        var rng = RandomGenerator(seed: 14)
        let router = try SigmoidBiasRouter(hiddenSize: 4, numExperts: 4, topK: 1, rng: &rng)
        router.weight.zero()
        for i in 0..<4 { router.weight.floats[0 * 4 + i] = 2 }  // expert 0 wins for positive inputs
        let x = Tensor.uniform([32, 4], low: 0.1, high: 1, using: &rng)
        var ctx = RoutingContext(training: true)
        _ = try router.route(x, context: &ctx)
        XCTAssertEqual(router.pendingLoad[0], 32)
        router.updateBias(rate: 0.01)
        XCTAssertEqual(router.bias.scalars, [-0.01, 0.01, 0.01, 0.01])
        XCTAssertEqual(router.pendingLoad, [0, 0, 0, 0])
        // Inference does not count load.
        var eval = RoutingContext(training: false)
        _ = try router.route(x, context: &eval)
        XCTAssertEqual(router.pendingLoad, [0, 0, 0, 0])
    }

    /// Router capabilities are protocol requirements: the trainer calls them on `any Router`.
    /// The sigmoid-bias router implements them; the others keep the no-op defaults.
    func testRouterCapabilitiesThroughTheProtocol() throws {
        var rng = RandomGenerator(seed: 15)
        let sigmoid = try SigmoidBiasRouter(hiddenSize: 4, numExperts: 4, topK: 1, rng: &rng)
        let topK = try TopKRouter(hiddenSize: 4, numExperts: 4, topK: 1, rng: &rng)
        let x = Tensor.uniform([16, 4], low: 0.1, high: 1, using: &rng)
        for router in [sigmoid, topK] as [any Router] {
            var ctx = RoutingContext(training: true)
            _ = try router.route(x, context: &ctx)
            router.updateBias(rate: 0.5)
        }
        // Loads counted in training forwards moved the sigmoid router's bias: ±0.5 each (or 0 at the mean).
        XCTAssertTrue(sigmoid.bias.scalars.allSatisfy { [-0.5, 0, 0.5].contains($0) })
        XCTAssertNotEqual(sigmoid.bias.scalars, [0, 0, 0, 0])
        XCTAssertEqual(sigmoid.pendingLoad, [0, 0, 0, 0])
        var ctx = RoutingContext(training: true)
        _ = try sigmoid.route(x, context: &ctx)
        XCTAssertEqual(sigmoid.pendingLoad.reduce(0, +), 16)
        (sigmoid as any Router).discardPendingLoad()
        XCTAssertEqual(sigmoid.pendingLoad, [0, 0, 0, 0])
        // σ scores are not a distribution: no entropy; softmax probabilities have one.
        XCTAssertFalse((sigmoid as any Router).probabilitiesAreDistribution)
        XCTAssertTrue((topK as any Router).probabilitiesAreDistribution)
        var eval = RoutingContext()
        XCTAssertNil(RoutingStatistics(routing: try sigmoid.route(x, context: &eval), router: sigmoid).routerEntropy)
        XCTAssertNotNil(RoutingStatistics(routing: try topK.route(x, context: &eval), router: topK).routerEntropy)
    }

    func testHashRoutingIsDeterministic() throws {
        let a = try HashRouter(numExperts: 8), b = try HashRouter(numExperts: 8)
        let ids = (0..<Int32(200)).map { $0 }
        XCTAssertEqual(ids.map(a.expert(for:)), ids.map(b.expert(for:)))
        // expert(id) = splitmix64(UInt32(id) ⊕ seed) mod E; expected values from an independent Python SplitMix64.
        XCTAssertEqual(([0, 1, 17, 199, -1] as [Int32]).map(a.expert(for:)), [7, 1, 3, 5, 0])
        let counts = Dictionary(grouping: ids.map(a.expert(for:)), by: { $0 }).mapValues(\.count)
        XCTAssertEqual(counts.count, 8, "all experts used")
        XCTAssertThrowsError(try a.route(Tensor(zeros: [3, 4]), context: &emptyContext)) { XCTAssertTrue("\($0)".contains("token ids")) }
    }

    func testStatisticsAgainstHandCounts() throws {
        let routing = Routing(experts: Tensor(indices: [0, 1, 0, -1, 0, 2], shape: [3, 2]),
                              gates: Tensor(repeating: 0.5, shape: [3, 2]),
                              probs: Tensor(repeating: 0.25, shape: [3, 4]), dropped: 1)
        let s = RoutingStatistics(routing: routing, numExperts: 4)
        XCTAssertEqual(s.tokensPerExpert, [3, 1, 1, 0])
        XCTAssertEqual(s.idleExperts, 1)
        XCTAssertEqual(s.maxOverMean, 3 / 1.25, accuracy: 1e-12)
        XCTAssertEqual(s.dropRate, 1.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(s.routerEntropy!, Foundation.log(4.0), accuracy: 1e-6)
        let mean = 1.25, sd = ((3 - mean) * (3 - mean) + 2 * (1 - mean) * (1 - mean) + mean * mean) / 4
        XCTAssertEqual(s.coefficientOfVariation, sd.squareRoot() / mean, accuracy: 1e-12)
    }

    func testInvalidConfigurationsNameTheField() {
        var rng = RandomGenerator(seed: 1)
        func field(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch let e as SparseMoEError {
                if case let .invalidConfig(f, _) = e { return f }
                return "\(e)"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(field { _ = try TopKRouter(hiddenSize: 4, numExperts: 4, topK: 5, rng: &rng) }, "top_k")
        XCTAssertEqual(field { _ = try TopKRouter(hiddenSize: 4, numExperts: 4, topK: 0, rng: &rng) }, "top_k")
        XCTAssertEqual(field { _ = try TopKRouter(hiddenSize: 4, numExperts: 4, topK: 2, routedScalingFactor: 0, rng: &rng) }, "routed_scaling_factor")
        XCTAssertEqual(field { _ = try CapacityLimit(factor: 0) }, "capacity_factor")
        XCTAssertEqual(field { _ = try CapacityLimit(factor: -1) }, "capacity_factor")
        XCTAssertEqual(field { _ = try SigmoidBiasRouter(hiddenSize: 4, numExperts: 6, topK: 2, nGroup: 4, topkGroup: 1, rng: &rng) }, "n_group")
        XCTAssertEqual(field { _ = try SigmoidBiasRouter(hiddenSize: 4, numExperts: 8, topK: 2, nGroup: 4, topkGroup: 5, rng: &rng) }, "topk_group")
        XCTAssertEqual(field { _ = try ExpertChoiceRouter(hiddenSize: 4, numExperts: 4, capacityFactor: 0, rng: &rng) }, "capacity_factor")
        XCTAssertEqual(field {
            let r = try TopKRouter(hiddenSize: 4, numExperts: 4, topK: 2, rng: &rng)
            _ = try MoELayer(router: r, experts: try Experts(kind: .swiglu, numExperts: 3, hiddenSize: 4, intermediateSize: 4, rng: &rng),
                             losses: try MoELossConfig(), rng: &rng)
        }, "num_experts")
        // Mismatched width at call time: a shape error naming hidden_size.
        XCTAssertThrowsError(try {
            let r = try TopKRouter(hiddenSize: 4, numExperts: 2, topK: 1, rng: &rng)
            let l = try MoELayer(router: r, experts: try Experts(kind: .swiglu, numExperts: 2, hiddenSize: 4, intermediateSize: 4, rng: &rng),
                                 losses: try MoELossConfig(), rng: &rng)
            var ctx = RoutingContext()
            _ = try l(Tensor(zeros: [3, 5]), context: &ctx)
        }()) { XCTAssertTrue("\($0)".contains("hidden_size"), "\($0)") }
    }
}

nonisolated(unsafe) private var emptyContext = RoutingContext()
import Foundation
