import Foundation
import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

final class RoutedExpertsTests: XCTestCase {
    /// One routed-experts problem: inputs and weights for an activation kind.
    struct Problem {
        var x, gates, w1, w2: Tensor
        var w3, b1, b2: Tensor?
        var experts: Tensor
        var activation: ExpertActivation
        var t, c, f, e, k: Int

        func run(_ schedule: ExpertSchedule = .auto) throws -> (output: Tensor, stats: RoutedExpertsStats) {
            try routedExperts(x, experts: experts, gates: gates, w1: w1, w3: w3, w2: w2, b1: b1, b2: b2,
                              activation: activation, schedule: schedule)
        }

        /// Plain per-token loops in Double: the independent reference.
        func reference() -> [Float] {
            var y = [Float](repeating: 0, count: t * c)
            for ti in 0..<t {
                var acc = [Double](repeating: 0, count: c)
                for s in 0..<k {
                    let ex = Int(experts.int32s[ti * k + s])
                    if ex < 0 { continue }
                    var hidden = [Double](repeating: 0, count: f)
                    for fi in 0..<f {
                        var h = b1.map { Double($0.floats[ex * f + fi]) } ?? 0, u = 0.0
                        for ci in 0..<c {
                            let xv = Double(x.floats[ti * c + ci])
                            h += Double(w1.floats[(ex * f + fi) * c + ci]) * xv
                            if let w3 { u += Double(w3.floats[(ex * f + fi) * c + ci]) * xv }
                        }
                        switch activation {
                        case .swiglu: hidden[fi] = h / (1 + Foundation.exp(-h)) * u
                        case .gelu: hidden[fi] = 0.5 * h * (1 + Foundation.erf(h / 2.0.squareRoot()))
                        case .geluTanh: hidden[fi] = 0.5 * h * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (h + 0.044715 * h * h * h)))
                        case .relu: hidden[fi] = max(h, 0)
                        }
                    }
                    for ci in 0..<c {
                        var o = b2.map { Double($0.floats[ex * c + ci]) } ?? 0
                        for fi in 0..<f { o += Double(w2.floats[(ex * c + ci) * f + fi]) * hidden[fi] }
                        acc[ci] += Double(gates.floats[ti * k + s]) * o
                    }
                }
                for ci in 0..<c { y[ti * c + ci] = Float(acc[ci]) }
            }
            return y
        }
    }

    /// Random problem; `route(t, s)` gives the expert of each slot (-1 = dropped).
    func makeProblem(_ activation: ExpertActivation, t: Int, c: Int, f: Int, e: Int, k: Int, biases: Bool = true,
                     seed: UInt64 = 1, route: (Int, Int) -> Int32) throws -> Problem {
        var idx: [Int32] = []
        for ti in 0..<t { for s in 0..<k { idx.append(route(ti, s)) } }
        let swiglu = activation == .swiglu
        return Problem(
            x: randomTensor([t, c], seed: seed), gates: randomTensor([t, k], seed: seed + 1),
            w1: randomTensor([e, f, c], seed: seed + 2, scale: 0.7), w2: randomTensor([e, c, f], seed: seed + 3, scale: 0.7),
            w3: swiglu ? randomTensor([e, f, c], seed: seed + 4, scale: 0.7) : nil,
            b1: biases && !swiglu ? randomTensor([e, f], seed: seed + 5, scale: 0.3) : nil,
            b2: biases ? randomTensor([e, c], seed: seed + 6, scale: 0.3) : nil,
            experts: Tensor(indices: idx, shape: [t, k]), activation: activation, t: t, c: c, f: f, e: e, k: k)
    }

    /// Odd sizes, dropped slots, an expert that receives no tokens, every activation, every schedule.
    func testForwardMatchesNaiveReference() throws {
        for activation in ExpertActivation.allCases {
            // E = 4, expert 2 never chosen; every third slot dropped.
            let p = try makeProblem(activation, t: 9, c: 5, f: 7, e: 4, k: 2) { t, s in
                (t + s) % 3 == 0 ? -1 : Int32([0, 1, 3][(t * 2 + s) % 3])
            }
            let ref = p.reference()
            let cRef = Tensor(zeros: [p.t, p.c])
            moe_routed_experts_forward_naive(cRef.floats, p.x.floats, p.experts.int32s, p.gates.floats, p.w1.floats,
                                             p.w3?.floats, p.w2.floats, p.b1?.floats, p.b2?.floats,
                                             9, 5, 7, 4, 2, activation.kernelValue)
            assertClose(cRef.scalars, ref, atol: 1e-5, rtol: 1e-5, "C naive reference \(activation)")
            for schedule in ExpertSchedule.allCases {
                for threads in [1, 2] {
                    let (y, stats) = try Threads.with(threads) { try p.run(schedule) }
                    assertClose(y.scalars, ref, atol: 2e-5, rtol: 1e-4, "\(activation) \(schedule) threads=\(threads)")
                    XCTAssertEqual(stats.tokensPerExpert[2], 0)
                    XCTAssertEqual(stats.tokensPerExpert.reduce(0, +), stats.assignments)
                }
            }
        }
    }

    func testEdgeCases() throws {
        // E = 1, K = 1.
        var p = try makeProblem(.swiglu, t: 3, c: 4, f: 3, e: 1, k: 1) { _, _ in 0 }
        assertClose(try p.run().output.scalars, p.reference(), atol: 2e-5, rtol: 1e-4, "E=1")
        // K = E (expert-choice-like): most slots dropped, expert e picks a few tokens.
        for schedule in [ExpertSchedule.sequential, .parallel] {
            p = try makeProblem(.geluTanh, t: 11, c: 6, f: 9, e: 5, k: 5) { t, s in (t * 7 + s * 3) % 4 == 0 ? Int32(s) : -1 }
            assertClose(try Threads.with(2) { try p.run(schedule) }.output.scalars, p.reference(), atol: 2e-5, rtol: 1e-4, "K=E \(schedule)")
        }
        // Every slot dropped: zero output, nothing executed (FLOPs: ExecutedFLOPsTests).
        p = try makeProblem(.relu, t: 4, c: 3, f: 2, e: 3, k: 2) { _, _ in -1 }
        let (y, stats) = try p.run()
        XCTAssertEqual(y.scalars, [Float](repeating: 0, count: 12))
        XCTAssertEqual(stats.assignments, 0); XCTAssertEqual(stats.tokensPerExpert, [0, 0, 0])
        // A single token, remainder-heavy widths (17, 33).
        p = try makeProblem(.gelu, t: 1, c: 17, f: 33, e: 3, k: 2) { _, s in Int32(2 - s) }
        assertClose(try p.run(.parallel).output.scalars, p.reference(), atol: 3e-5, rtol: 1e-4, "T=1")
    }

    /// Rows per expert and assignments; the FLOPs counted from them are checked in ExecutedFLOPsTests.
    func testStatsCountTokens() throws {
        let p = try makeProblem(.swiglu, t: 5, c: 4, f: 6, e: 3, k: 2) { t, s in s == 1 && t == 0 ? -1 : Int32((t + s) % 3) }
        let (_, stats) = try p.run()
        // pairs: t0:(0,-) t1:(1,2) t2:(2,0) t3:(0,1) t4:(1,2)
        XCTAssertEqual(stats.tokensPerExpert, [3, 3, 3])
        XCTAssertEqual(stats.assignments, 9)
        let mlp = try makeProblem(.relu, t: 5, c: 4, f: 6, e: 3, k: 2) { t, _ in Int32(t % 3) }
        let mlpStats = try mlp.run().stats
        XCTAssertEqual(mlpStats.tokensPerExpert, [4, 4, 2])  // both slots of token t go to expert t mod 3
        XCTAssertEqual(mlpStats.assignments, 10)
    }

    /// Same inputs, same thread count → bit-identical output and gradients, for both schedules.
    func testDeterministicAcrossRuns() throws {
        let p = try makeProblem(.swiglu, t: 64, c: 24, f: 40, e: 6, k: 3, seed: 7) { t, s in
            Int32((t * 5 + s * 2 + t / 7) % 6)
        }
        for schedule in [ExpertSchedule.sequential, .parallel] {
            func once() throws -> ([Float], [Float], [Float]) {
                p.x.requiresGrad = true; p.w1.requiresGrad = true
                p.x.zeroGrad(); p.w1.zeroGrad()
                let y = try p.run(schedule).output
                y.backward(gradient: randomTensor(y.shape, seed: 3))
                return (y.scalars, p.x.grad!.scalars, p.w1.grad!.scalars)
            }
            let (a, b) = try Threads.with(2) { (try once(), try once()) }
            XCTAssertEqual(a.0, b.0, "\(schedule) forward"); XCTAssertEqual(a.1, b.1, "\(schedule) dx")
            XCTAssertEqual(a.2, b.2, "\(schedule) dw1")
        }
    }

    /// Whole-op gradients against central finite differences, every activation and schedule.
    func testGradientsMatchFiniteDifferences() throws {
        for activation in ExpertActivation.allCases {
            let p = try makeProblem(activation, t: 5, c: 4, f: 3, e: 3, k: 2, seed: 11) { t, s in
                t == 2 && s == 1 ? -1 : Int32((t + 2 * s) % 3)
            }
            var inputs = [p.x, p.gates, p.w1, p.w2]
            if let w3 = p.w3 { inputs.append(w3) }
            if let b1 = p.b1 { inputs.append(b1) }
            if let b2 = p.b2 { inputs.append(b2) }
            for schedule in [ExpertSchedule.sequential, .parallel] {
                _ = try checkGradients("routedExperts \(activation) \(schedule)", inputs: inputs, eps: 1e-3, tolerance: 2e-2) { i in
                    var n = 4
                    func next() -> Tensor? { defer { n += 1 }; return n < i.count ? i[n] : nil }
                    let w3 = p.w3 != nil ? next() : nil, b1 = p.b1 != nil ? next() : nil, b2 = p.b2 != nil ? next() : nil
                    return try Threads.with(2) {
                        try routedExperts(i[0], experts: p.experts, gates: i[1], w1: i[2], w3: w3, w2: i[3], b1: b1, b2: b2,
                                          activation: activation, schedule: schedule).output
                    }
                }
            }
        }
    }

    /// Larger problem: both schedules' gradients agree (covers multi-row GEMM paths).
    func testScheduleGradientsAgree() throws {
        let p = try makeProblem(.gelu, t: 40, c: 19, f: 23, e: 5, k: 2, seed: 21) { t, s in Int32((t * 3 + s) % 5) }
        var grads: [[[Float]]] = []
        for schedule in [ExpertSchedule.sequential, .parallel] {
            let params = [p.x, p.gates, p.w1, p.w2, p.b1!, p.b2!]
            for q in params { q.requiresGrad = true; q.zeroGrad() }
            let y = try Threads.with(2) { try p.run(schedule).output }
            y.backward(gradient: randomTensor(y.shape, seed: 5))
            grads.append(params.map { $0.grad!.scalars })
        }
        for i in grads[0].indices { assertClose(grads[1][i], grads[0][i], atol: 1e-5, rtol: 1e-4, "gradient \(i)") }
    }

    /// The parallel schedule hands experts to whichever thread is free; each expert is still
    /// computed by one thread alone, so 2 threads give the same bits as 1 thread, every time.
    func testParallelScheduleBitsDoNotDependOnThreads() throws {
        // 11 experts of very different sizes (expert e gets a share ∝ 2e + 1), expert 4 empty.
        let p = try makeProblem(.swiglu, t: 97, c: 24, f: 40, e: 11, k: 3, seed: 41) { t, s in
            let u: Double = Double((t * 7 + s * 31) % 97) / 97
            let e = Int32((u * 121).squareRoot())
            return e == 4 ? 5 : e
        }
        func run(_ threads: Int) throws -> [[Float]] {
            let params = [p.x, p.gates, p.w1, p.w3!, p.w2, p.b2!]
            for q in params { q.requiresGrad = true; q.zeroGrad() }
            let y = try Threads.with(threads) { try p.run(.parallel).output }
            Threads.with(threads) { y.backward(gradient: randomTensor(y.shape, seed: 9)) }
            return [y.scalars] + params.map { $0.grad!.scalars }
        }
        let one = try run(1)
        assertClose(one[0], p.reference(), atol: 3e-5, rtol: 1e-4, "parallel schedule vs reference")
        for attempt in 0..<5 {
            let two = try run(2)
            for i in one.indices { XCTAssertEqual(two[i], one[i], "tensor \(i), attempt \(attempt): 2 threads differ from 1") }
        }
    }

    func testInvalidInputsThrowNamedErrors() throws {
        let p = try makeProblem(.swiglu, t: 3, c: 4, f: 5, e: 2, k: 2) { t, s in Int32((t + s) % 2) }
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "" } catch { return "\(error)" }
        }
        let bad = Tensor(indices: [0, 1, 1, 2, 0, 0], shape: [3, 2])
        var m = message { try routedExperts(p.x, experts: bad, gates: p.gates, w1: p.w1, w3: p.w3, w2: p.w2, activation: .swiglu) }
        XCTAssertTrue(m.contains("token 1") && m.contains("slot 1") && m.contains("E = 2"), m)
        let neg = Tensor(indices: [0, -2, 1, 1, 0, 0], shape: [3, 2])
        m = message { try routedExperts(p.x, experts: neg, gates: p.gates, w1: p.w1, w3: p.w3, w2: p.w2, activation: .swiglu) }
        XCTAssertTrue(m.contains("token 0") && m.contains("-2"), m)
        m = message { try routedExperts(p.x, experts: p.experts, gates: Tensor(zeros: [3, 1]), w1: p.w1, w3: p.w3, w2: p.w2, activation: .swiglu) }
        XCTAssertTrue(m.contains("gates") && m.contains("[3, 1]"), m)
        m = message { try routedExperts(p.x, experts: p.experts, gates: p.gates, w1: p.w1, w3: nil, w2: p.w2, activation: .swiglu) }
        XCTAssertTrue(m.contains("w3"), m)
        m = message { try routedExperts(p.x, experts: p.experts, gates: p.gates, w1: p.w1, w3: p.w3, w2: Tensor(zeros: [2, 5, 4]), activation: .swiglu) }
        XCTAssertTrue(m.contains("w2") && m.contains("[2, 4, 5]") && m.contains("[E, C, F]"), m)
        m = message { try routedExperts(p.x, experts: p.experts, gates: p.gates, w1: Tensor(zeros: [2, 5, 3]), w3: p.w3, w2: p.w2, activation: .swiglu) }
        XCTAssertTrue(m.contains("w1") && m.contains("C = 4"), m)
        m = message { try routedExperts(p.x, experts: p.experts, gates: p.gates, w1: p.w1, w3: p.w3, w2: p.w2, b1: Tensor(zeros: [2, 5]), activation: .swiglu) }
        XCTAssertTrue(m.contains("b1"), m)
        m = message { try routedExperts(p.x, experts: p.experts, gates: p.gates, w1: p.w1, w3: p.w3, w2: p.w2, activation: .relu) }
        XCTAssertTrue(m.contains("w3"), m)
        m = message { try routedExperts(p.x, experts: p.experts, gates: p.gates, w1: p.w1, w3: nil, w2: p.w2, b2: Tensor(zeros: [2, 5]), activation: .gelu) }
        XCTAssertTrue(m.contains("b2") && m.contains("[2, 4]"), m)
        m = message { try routedExperts(p.x, experts: p.gates, gates: p.gates, w1: p.w1, w3: p.w3, w2: p.w2, activation: .swiglu) }
        XCTAssertTrue(m.contains("int32"), m)
    }

    /// The op's workspaces come from `StoragePool` uninitialised: fill every idle block with
    /// NaN bytes and check that forward and backward still give the clean run's bits (every
    /// element is written before it is read). The sizes are large enough to be pooled
    /// (≥ `StoragePool.minimumBytes`), so the second run reuses the poisoned blocks.
    func testPoisonedWorkspaceIsFullyOverwritten() throws {
        let pool = StoragePool.shared
        for schedule in [ExpertSchedule.sequential, .parallel] {
            let p = try makeProblem(.swiglu, t: 128, c: 96, f: 128, e: 3, k: 2, biases: true, seed: 31) { t, s in
                t % 4 == 0 && s == 0 ? -1 : Int32((t + s) % 3)
            }
            let a = 128 * 2 - 32
            XCTAssertGreaterThanOrEqual(a * (96 + 2 * 128) * 4, StoragePool.minimumBytes, "backward workspace is pooled")
            func run() throws -> ([Float], [Float], [Float], [Float]) {
                for q in [p.x, p.gates, p.w1, p.w2, p.w3!, p.b2!] { q.requiresGrad = true; q.zeroGrad() }
                let y = try Threads.with(2) { try p.run(schedule).output }
                Threads.with(2) { y.backward(gradient: randomTensor(y.shape, seed: 8)) }
                return (y.scalars, p.x.grad!.scalars, p.w3!.grad!.scalars, p.gates.grad!.scalars)
            }
            pool.drain()
            let clean = try run()
            XCTAssertGreaterThan(pool.idleBytes, 0, "the workspaces went back to the pool")
            pool.fillIdleBlocks(byte: 0xFF)
            let held = pool.idleBytes
            let poisoned = try run()
            XCTAssertEqual(pool.idleBytes, held, "the same blocks were taken and returned")
            XCTAssertEqual(clean.0, poisoned.0, "\(schedule) output")
            XCTAssertEqual(clean.1, poisoned.1, "\(schedule) dx")
            XCTAssertEqual(clean.2, poisoned.2, "\(schedule) dw3")
            XCTAssertEqual(clean.3, poisoned.3, "\(schedule) dgates")
            assertClose(clean.0, p.reference(), atol: 2e-5, rtol: 1e-4, "\(schedule) vs reference")
        }
        pool.drain()
        XCTAssertEqual(pool.idleBytes, 0)
    }

    /// The optimised C backward against its naive twin (`moe_routed_experts_backward_naive`,
    /// double accumulation) on the same saved activations: every activation, with and without
    /// biases, dropped slots and an empty expert, both schedules on 1 and 2 threads, gradients
    /// pre-filled (both accumulate), subsets of gradients requested, and fresh weight gradients
    /// (NaN-filled, written rather than accumulated). Then the Swift op's recorded backward
    /// against the same reference.
    func testBackwardMatchesNaiveBackward() throws {
        let (t, c, f, e, k) = (23, 13, 17, 5, 3)
        for activation in ExpertActivation.allCases {
            for biases in [false, true] {
                // Expert 3 never chosen; every fourth slot dropped.
                let p = try makeProblem(activation, t: t, c: c, f: f, e: e, k: k, biases: biases, seed: 51) { ti, s in
                    (ti * k + s) % 4 == 1 ? -1 : Int32([0, 1, 2, 4][(ti * 5 + s * 3) % 4])
                }
                let plan = try DispatchPlan(expertIndices: p.experts, numExperts: e)
                let a = plan.assignments, kind = activation.kernelValue, swiglu = activation == .swiglu
                // Saved activations from the optimised forward.
                let xs = Tensor(zeros: [a, c]), h1 = Tensor(zeros: [a, f]), h3 = Tensor(zeros: [a, f])
                let act = Tensor(zeros: [a, f]), eo = Tensor(zeros: [a, c]), y = Tensor(zeros: [t, c])
                let fwdWork = Tensor(zeros: [Int(moe_routed_experts_workspace_size(Int64(a), Int64(c), Int64(f), Int64(e), kind, 0))])
                let bwdWork = Tensor(zeros: [Int(moe_routed_experts_workspace_size(Int64(a), Int64(c), Int64(f), Int64(e), kind, 1))])
                _ = moe_routed_experts_forward(y.floats, xs.floats, h1.floats, swiglu ? h3.floats : nil, act.floats, eo.floats,
                                               fwdWork.floats, p.x.floats, p.gates.floats, plan.offsets, plan.sorted, plan.position,
                                               p.w1.floats, p.w3?.floats, p.w2.floats, p.b1?.floats, p.b2?.floats,
                                               Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), kind, 1)
                let dy = randomTensor([t, c], seed: 52)
                // Gradient buffers: dx, dgates, dw1, dw3, dw2, db1, db2, pre-filled with the same values.
                let shapes = [[t, c], [t, k], [e, f, c], [e, f, c], [e, c, f], [e, f], [e, c]]
                let present = [true, true, true, swiglu, true, biases && !swiglu, biases]
                func buffers() -> [Tensor?] {
                    shapes.enumerated().map { i, shape in present[i] ? randomTensor(shape, seed: 60 + UInt64(i)) : nil }
                }
                func backward(naive: Bool, _ g: [Tensor?], schedule: Int32, fresh: Int32 = 0) {
                    if naive {
                        moe_routed_experts_backward_naive(
                            g[0]?.floats, g[1]?.floats, g[2]?.floats, g[3]?.floats, g[4]?.floats, g[5]?.floats, g[6]?.floats,
                            bwdWork.floats, dy.floats, xs.floats, h1.floats, swiglu ? h3.floats : nil, act.floats, eo.floats,
                            p.gates.floats, plan.offsets, plan.sorted, plan.position, p.w1.floats, p.w3?.floats, p.w2.floats,
                            Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), kind, schedule)
                    } else {
                        moe_routed_experts_backward(
                            g[0]?.floats, g[1]?.floats, g[2]?.floats, g[3]?.floats, g[4]?.floats, g[5]?.floats, g[6]?.floats,
                            bwdWork.floats, dy.floats, xs.floats, h1.floats, swiglu ? h3.floats : nil, act.floats, eo.floats,
                            p.gates.floats, plan.offsets, plan.sorted, plan.position, p.w1.floats, p.w3?.floats, p.w2.floats,
                            Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), kind, schedule, fresh)
                    }
                }
                // All gradients; weights only (no dx: dXs is skipped); dgates and dw2 only (no dAct).
                let subsets: [[Int]] = [[0, 1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6], [1, 4]]
                for subset in subsets {
                    let expected = buffers().enumerated().map { subset.contains($0) ? $1 : nil }
                    backward(naive: true, expected, schedule: 1)
                    for schedule in [ExpertSchedule.sequential, .parallel] {
                        for threads in [1, 2] {
                            let got = buffers().enumerated().map { subset.contains($0) ? $1 : nil }
                            Threads.with(threads) { backward(naive: false, got, schedule: schedule.kernelValue) }
                            for i in got.indices {
                                guard let g = got[i], let want = expected[i] else { continue }
                                assertClose(g.scalars, want.scalars, atol: 2e-5, rtol: 1e-4,
                                            "\(activation) biases=\(biases) \(schedule) threads=\(threads) subset=\(subset) gradient \(i)")
                            }
                        }
                    }
                }
                // Fresh gradients: dx, dw1, dw3, dw2 hold NaN and are written, not read (the
                // empty expert's weights, the rows of tokens with every slot dropped, zeroed); the
                // reference starts them at zero.
                let freshSlots = [0, 2, 3, 4]
                let expectedFresh = buffers().enumerated().map { i, b in freshSlots.contains(i) ? b.map { Tensor(zeros: $0.shape) } : b }
                backward(naive: true, expectedFresh, schedule: 1)
                for schedule in [ExpertSchedule.sequential, .parallel] {
                    for threads in [1, 2] {
                        let got = buffers().enumerated().map { i, b in
                            freshSlots.contains(i) ? b.map { Tensor(repeating: .nan, shape: $0.shape) } : b
                        }
                        Threads.with(threads) {
                            backward(naive: false, got, schedule: schedule.kernelValue, fresh: Int32(MOE_FRESH_WEIGHTS | MOE_FRESH_DX))
                        }
                        for i in got.indices {
                            guard let g = got[i], let want = expectedFresh[i] else { continue }
                            assertClose(g.scalars, want.scalars, atol: 2e-5, rtol: 1e-4,
                                        "\(activation) biases=\(biases) \(schedule) threads=\(threads) fresh gradients, gradient \(i)")
                        }
                    }
                }
                // The Swift pair: the recorded backward of `routedExperts` gives the same gradients.
                let inputs = [p.x, p.gates, p.w1, p.w3, p.w2, p.b1, p.b2]
                for q in inputs.compactMap({ $0 }) { q.requiresGrad = true; q.zeroGrad() }
                let out = try Threads.with(2) { try p.run(.parallel).output }
                out.backward(gradient: dy)
                let zeros = shapes.enumerated().map { i, shape in present[i] ? Tensor(zeros: shape) : nil }
                backward(naive: true, zeros, schedule: 1)
                for (i, q) in inputs.enumerated() {
                    guard let q, let want = zeros[i] else { continue }
                    assertClose(q.grad!.scalars, want.scalars, atol: 2e-5, rtol: 1e-4, "Swift op \(activation) biases=\(biases) gradient \(i)")
                }
            }
        }
    }
}
