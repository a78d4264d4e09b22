import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels
@testable import SparseMoEAnalysis
@testable import SparseMoERuns

/// Scaling-law fits recover the coefficients of the law the data were drawn from; the
/// sweep's bookkeeping (resume, failures) with a stub trainer; bad grids are named.
final class ScalingLawTests: XCTestCase {
    let truth = PowerLaw(a: 40, alpha: 0.3, c: 1.2)
    var xs: [Double] { (0..<10).map { pow(10, 3 + 0.5 * Double($0)) } }  // 1e3 … 3e7

    func noisy(_ ys: [Double], sigma: Double, seed: UInt64) -> [Double] {
        var rng = RandomGenerator(seed: seed)
        return ys.map { $0 + sigma * Double(rng.normal()) }
    }

    func testLinearLeastSquaresSolvesAnOverdeterminedSystemAndRefusesDependentColumns() throws {
        // y = 2 − 3u + 0.5v exactly on 5 points.
        let rows: [[Double]] = [[1, 0, 1], [1, 1, 0], [1, 2, 5], [1, 3, 2], [1, -1, 4]]
        let y = rows.map { 2 - 3 * $0[1] + 0.5 * $0[2] }
        let beta = try LinearLeastSquares.solve(design: rows, targets: y)
        for (b, t) in zip(beta, [2.0, -3, 0.5]) { XCTAssertEqual(b, t, accuracy: 1e-12) }
        XCTAssertThrowsError(try LinearLeastSquares.solve(design: rows.map { [$0[0], $0[1], 2 * $0[1]] }, targets: y))
    }

    func testPowerLawFitRecoversExactCoefficients() throws {
        let (law, fit) = try PowerLaw.fit(x: xs, y: xs.map { truth($0) })
        XCTAssertEqual(law.a, truth.a, accuracy: 1e-4 * truth.a)
        XCTAssertEqual(law.alpha, truth.alpha, accuracy: 1e-6)
        XCTAssertEqual(law.c, truth.c, accuracy: 1e-6)
        XCTAssertEqual(fit.r2, 1, accuracy: 1e-9)
        XCTAssertLessThan(fit.rmse, 1e-8)
    }

    /// With Gaussian noise σ = 0.01 nats (seeded) on 10 points: α within ±0.05, c within
    /// ±0.05, and the residual RMSE at most 1.5σ.
    func testPowerLawFitRecoversCoefficientsUnderNoise() throws {
        let y = noisy(xs.map { truth($0) }, sigma: 0.01, seed: 7)
        let (law, fit) = try PowerLaw.fit(x: xs, y: y)
        XCTAssertEqual(law.alpha, truth.alpha, accuracy: 0.05)
        XCTAssertEqual(law.c, truth.c, accuracy: 0.05)
        XCTAssertLessThan(fit.rmse, 0.015)
        XCTAssertGreaterThan(fit.r2, 0.99)
    }

    func testPowerLawFitRefusesTooFewDistinctPoints() {
        XCTAssertThrowsError(try PowerLaw.fit(x: [1, 1, 2], y: [3, 3, 2]))
        XCTAssertThrowsError(try PowerLaw.fit(x: [1, 2, -3], y: [3, 2, 1]))
    }

    /// The 95% percentile bootstrap interval of each coefficient (seeded, 100 resamples of
    /// 16 points over 1e3…1e9 with σ = 0.01 noise) holds the true value; same seed, same interval.
    func testBootstrapIntervalsContainTheTruth() throws {
        let x = (0..<16).map { pow(10, 3 + 0.4 * Double($0)) }
        let y = noisy(x.map { truth($0) }, sigma: 0.01, seed: 11)
        let (law, _) = try PowerLaw.fit(x: x, y: y)
        func run() -> [EstimateWithInterval] {
            Bootstrap.intervals(points: x.count, estimate: [law.alpha, law.c], resamples: 100, level: 0.95, seed: 3) { idx in
                let p = try PowerLaw.fit(x: idx.map { x[$0] }, y: idx.map { y[$0] }).law
                return [p.alpha, p.c]
            }
        }
        let ci = run()
        XCTAssertTrue(ci[0].contains(truth.alpha), "α interval \(ci[0]) should hold \(truth.alpha)")
        XCTAssertTrue(ci[1].contains(truth.c), "c interval \(ci[1]) should hold \(truth.c)")
        XCTAssertLessThan(ci[0].high! - ci[0].low!, 0.2, "the α interval should be informative")
        XCTAssertEqual(run(), ci)
    }

    func testSaturatingTransformOfExperts() {
        XCTAssertEqual(ExpertSaturation.none.effectiveExperts(7), 7, accuracy: 1e-12)
        let s = ExpertSaturation(eStart: 2, eMax: 300)
        XCTAssertEqual(s.effectiveExperts(1), 2, accuracy: 1e-12)           // Ê(1) = E_start
        XCTAssertEqual(s.effectiveExperts(1e9), 300, accuracy: 1e-3)        // saturates at E_max
        // Direct evaluation of 1/Ê = 1/(E − 1 + (1/E_start − 1/E_max)⁻¹) + 1/E_max at E = 16.
        XCTAssertEqual(s.effectiveExperts(16), 1 / (1 / (15 + 1 / (0.5 - 1.0 / 300)) + 1.0 / 300), accuracy: 1e-12)
    }

    let routedTruth = RoutedScalingLaw(a: -0.08, b: -0.1, c: 0.006, d: 1.6, saturation: ExpertSaturation(eStart: 2, eMax: 256))
    let baseSizes: [Double] = [1e4, 3e4, 1e5, 3e5]
    let expertCounts: [Double] = [1, 2, 4, 8, 16, 32]

    func routedGrid() -> (n: [Double], e: [Double]) {
        (baseSizes.flatMap { n in expertCounts.map { _ in n } }, baseSizes.flatMap { _ in expertCounts })
    }

    func testRoutedLawRecoveredExactlyWithKnownSaturation() throws {
        let (n, e) = routedGrid()
        let l = zip(n, e).map { routedTruth.loss(parameters: $0, experts: $1) }
        let (law, fit) = try RoutedScalingLaw.fit(parameters: n, experts: e, loss: l, saturation: routedTruth.saturation)
        XCTAssertEqual(law.a, routedTruth.a, accuracy: 1e-9)
        XCTAssertEqual(law.b, routedTruth.b, accuracy: 1e-9)
        XCTAssertEqual(law.c, routedTruth.c, accuracy: 1e-9)
        XCTAssertEqual(law.d, routedTruth.d, accuracy: 1e-8)
        XCTAssertLessThan(fit.rmse, 1e-10)
    }

    /// Saturation searched over the candidates (truth among them), with noise σ = 0.002 in
    /// ln L (seeded): the true E_start/E_max are chosen when noise-free; under noise a and b
    /// within ±0.01, c within ±0.002, and the bootstrap interval of b holds the truth.
    func testRoutedLawRecoveredWithSearchedSaturationAndNoise() throws {
        let (n, e) = routedGrid()
        let exact = zip(n, e).map { routedTruth.loss(parameters: $0, experts: $1) }
        let clean = try RoutedScalingLaw.fit(parameters: n, experts: e, loss: exact, eStarts: ScalingFits.eStarts, eMaxes: ScalingFits.eMaxes)
        XCTAssertEqual(clean.law.saturation, routedTruth.saturation)
        let l = zip(exact, noisy(exact.map { _ in 0 }, sigma: 0.002, seed: 5)).map { $0 * exp($1) }
        let (law, _) = try RoutedScalingLaw.fit(parameters: n, experts: e, loss: l, saturation: routedTruth.saturation)
        XCTAssertEqual(law.a, routedTruth.a, accuracy: 0.01)
        XCTAssertEqual(law.b, routedTruth.b, accuracy: 0.01)
        XCTAssertEqual(law.c, routedTruth.c, accuracy: 0.002)
        let ci = Bootstrap.intervals(points: n.count, estimate: [law.b], resamples: 200, seed: 1) { idx in
            [try RoutedScalingLaw.fit(parameters: idx.map { n[$0] }, experts: idx.map { e[$0] }, loss: idx.map { l[$0] },
                                      saturation: self.routedTruth.saturation).law.b]
        }
        XCTAssertTrue(ci[0].contains(routedTruth.b), "b interval \(ci[0]) should hold \(routedTruth.b)")
        XCTAssertThrowsError(try RoutedScalingLaw.fit(parameters: [1e4, 1e4, 1e4, 1e4], experts: [1, 2, 4, 8], loss: [2, 1.9, 1.8, 1.7]))
    }

    /// With c = 0 the effective parameter count has a closed form: N̄/N = (Ê(E)/Ê(1))^(b/a).
    func testEffectiveParameterMultiplier() {
        let law = RoutedScalingLaw(a: -0.08, b: -0.1, c: 0, d: 1.6, saturation: ExpertSaturation(eStart: 2, eMax: 256))
        let s = law.saturation
        XCTAssertEqual(law.effectiveParameters(parameters: 5e4, experts: 1) / 5e4, 1, accuracy: 1e-9)
        XCTAssertEqual(law.effectiveParameters(parameters: 5e4, experts: 8) / 5e4,
                       pow(s.effectiveExperts(8) / s.effectiveExperts(1), -0.1 / -0.08), accuracy: 1e-9)
        // And N̄ reaches the same loss as a model with E = 1 (c ≠ 0 here).
        let nBar = routedTruth.effectiveParameters(parameters: 3e4, experts: 16)
        XCTAssertEqual(routedTruth.loss(parameters: nBar, experts: 1), routedTruth.loss(parameters: 3e4, experts: 16), accuracy: 1e-12)
    }

    func testComputeFrontierKeepsOnlyRunsNoCheaperRunBeats() {
        let compute: [Double] = [4, 1, 2, 3, 5, 2]
        let loss: [Double] = [1.5, 3.0, 2.5, 2.6, 1.6, 2.0]
        // By compute: 1 (3.0) ✓, 2 (2.0 ✓, 2.5 tie-loser), 3 (2.6 ✗), 4 (1.5 ✓), 5 (1.6 ✗).
        XCTAssertEqual(ComputeFrontier.indices(compute: compute, loss: loss), [1, 5, 0])
    }
}

/// A trainer that trains nothing: loss from a known dense law L(N) and E-dependence, counts calls,
/// fails on the ids it is told to.
final class StubScalingTrainer: ScalingPointTrainer {
    var trained: [String] = []
    var failing: Set<String> = []
    let law = PowerLaw(a: 30, alpha: 0.3, c: 1.0)

    func train(_ plan: ScalingPlan, in folder: URL, progress: (Double) -> Void) throws -> ScalingMeasurement {
        trained.append(plan.point.id)
        progress(0.5)
        if failing.contains(plan.point.id) { throw SparseMoEError.invalidArgument(op: "stub", message: "diverged on purpose") }
        let e = Double(plan.point.experts ?? 1)
        let loss = law(Double(plan.parameters)) * pow(e, -0.02) * pow(plan.point.fraction, -0.05)
        return ScalingMeasurement(validationLoss: loss, trainLoss: loss, seconds: 0.01)
    }
}

extension ScalingLawTests {
    func tempFolder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("scaling-test-\(UUID().uuidString)")
    }

    func testSweepResumeSkipsFinishedPointsAndAFailedPointIsRecordedWhileTheSweepGoesOn() throws {
        let out = tempFolder()
        defer { try? FileManager.default.removeItem(at: out) }
        let grid = try ScalingGrid.builtIn("tiny")
        let sweep = try ScalingSweep(grid: grid, budget: .tokens, output: out, includePrediction: true)
        let n = grid.dense.count * grid.budgetFractions.count + grid.moeBases.count * grid.experts.count + 1
        XCTAssertEqual(sweep.plans.count, n)
        let stub = StubScalingTrainer()
        let bad = sweep.plans[2].point.id
        stub.failing = [bad]
        var last: ScalingProgress?
        var etas = 0
        let first = try sweep.run(trainer: stub) { last = $0; if $0.eta != nil { etas += 1 } }
        XCTAssertEqual(stub.trained.count, n, "every point is tried once")
        XCTAssertEqual(first.filter { $0.status == .failed }.map(\.id), [bad])
        XCTAssertTrue(first.first { $0.id == bad }!.error!.contains("diverged on purpose"))
        XCTAssertEqual(last?.finished, n - 1)
        XCTAssertEqual(last?.failed, 1)
        XCTAssertEqual(last?.eta ?? -1, 0, accuracy: 1e-9, "nothing left at the end")
        XCTAssertGreaterThan(etas, n)
        // points.jsonl holds one line per point.
        let lines = try String(contentsOf: sweep.resultsURL, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, n)

        // Resume: only the failed point is trained again.
        let again = StubScalingTrainer()
        let second = try ScalingSweep(grid: grid, budget: .tokens, output: out, includePrediction: true).run(trainer: again)
        XCTAssertEqual(again.trained, [bad])
        XCTAssertTrue(second.allSatisfy { $0.status == .ok })
        // A third run trains nothing.
        let third = StubScalingTrainer()
        _ = try ScalingSweep(grid: grid, budget: .tokens, output: out, includePrediction: true).run(trainer: third)
        XCTAssertEqual(third.trained, [])
        // A changed budget changes the step counts: those points are not finished any more.
        var bigger = grid
        bigger.tokens *= 2
        let fourth = StubScalingTrainer()
        _ = try ScalingSweep(grid: bigger, budget: .tokens, output: out).run(trainer: fourth)
        XCTAssertEqual(fourth.trained.count, n - 1)
    }

    /// Fitting the stub's results (drawn from a known dense L(N)) gives that law back, and
    /// the prediction of the held-out point matches its "measurement".
    func testFitsOfASweepRecoverTheStubLawAndPredictTheHeldOutPoint() throws {
        let out = tempFolder()
        defer { try? FileManager.default.removeItem(at: out) }
        let grid = try ScalingGrid.builtIn("tiny")
        let sweep = try ScalingSweep(grid: grid, budget: .tokens, output: out, includePrediction: true)
        let stub = StubScalingTrainer()
        let results = try sweep.run(trainer: stub)
        let target = sweep.plans.first { $0.point.role == .prediction }!
        let fits = ScalingFits.compute(results: results, grid: grid, budget: .tokens, target: target, resamples: 50)
        let p = try XCTUnwrap(fits.parameters)
        XCTAssertEqual(p.alpha.value, stub.law.alpha, accuracy: 1e-4)
        XCTAssertEqual(p.c.value, stub.law.c, accuracy: 1e-4)
        let r = try XCTUnwrap(fits.routed)
        XCTAssertLessThan(r.b.value, 0, "the stub's loss falls with E")
        let pred = try XCTUnwrap(fits.prediction)
        XCTAssertEqual(pred.error ?? 1, 0, accuracy: 1e-4)
        XCTAssertEqual(fits.frontier.isEmpty, false)
        let charts = try ScalingCharts.write(results: results, fits: fits, to: out)
        XCTAssertEqual(Set(charts.map(\.lastPathComponent)),
                       ["loss_vs_parameters.svg", "loss_vs_compute.svg", "loss_vs_experts.svg", "effective_parameters.svg"])
        // fits.json round-trips.
        let data = try JSONEncoder().encode(fits)
        XCTAssertEqual(try JSONDecoder().decode(ScalingFits.self, from: data).parameters?.alpha, p.alpha)
        XCTAssertFalse(fits.notes.contains { $0.contains("exactly") }, "\(fits.notes)")
    }

    /// Three budget fractions determine L(D)'s three coefficients exactly: the fit is kept,
    /// with a note that its R² and intervals carry no information.
    func testAnExactlyDeterminedFitIsFlagged() throws {
        let out = tempFolder()
        defer { try? FileManager.default.removeItem(at: out) }
        var grid = try ScalingGrid.builtIn("tiny")
        grid.budgetFractions = [0.25, 0.5, 1]
        let sweep = try ScalingSweep(grid: grid, budget: .tokens, output: out, includePrediction: false)
        let fits = ScalingFits.compute(results: try sweep.run(trainer: StubScalingTrainer()), grid: grid, budget: .tokens,
                                       target: nil, resamples: 20)
        XCTAssertNotNil(fits.data)
        let flagged = fits.notes.filter { $0.contains("passes through them exactly") }
        XCTAssertEqual(flagged.count, 1, "\(fits.notes)")
        XCTAssertTrue(flagged.first?.hasPrefix("L(D)") ?? false, "\(flagged)")
    }

    /// Top-1 grid models gate by the router probability (Switch Transformer). Renormalised
    /// over one expert the gate is exactly 1, so the loss would give the router no gradient:
    /// checked on the selection op itself, with a gate-weighted loss.
    func testTopOneGridRoutersLearnFromTheLoss() throws {
        let shape = ScalingShape(layers: 1, hidden: 8, heads: 2, ffn: 16)
        func config(_ e: Int, _ k: Int) -> MoEConfig? {
            ScalingPoint(shape: shape, experts: e, topK: k, fraction: 1, role: .grid).transformerConfig(sequenceLength: 8).moe
        }
        XCTAssertEqual(config(4, 1)?.normalizeTopK, false)
        XCTAssertEqual(config(1, 2)?.normalizeTopK, false, "top_k is capped at E = 1")
        XCTAssertEqual(config(4, 2)?.normalizeTopK, true)
        let upstream = randomTensor([6, 1], seed: 9)
        for renormalize in [true, false] {
            let logits = Tensor(randomTensor([6, 4], seed: 7, scale: 2).scalars, shape: [6, 4], requiresGrad: true)
            (softmaxTopK(logits, topK: 1, renormalize: renormalize).weights * upstream).sum().backward()
            let largest = logits.grad!.scalars.map(abs).max()!
            if renormalize { XCTAssertEqual(largest, 0, "renormalised top-1 gates are constant") }
            else { XCTAssertGreaterThan(largest, 1e-3, "the top-1 probability carries the loss to the router") }
        }
    }

    func testBadGridsAreNamed() throws {
        XCTAssertThrowsError(try ScalingGrid.load("huge")) { e in
            XCTAssertTrue("\(e)".contains("'huge'") && "\(e)".contains("tiny"), "\(e)")
        }
        let good = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ScalingGrid.builtIn("tiny"))) as! [String: Any]
        func error(_ edit: (inout [String: Any]) -> Void) -> String {
            var g = good
            edit(&g)
            do {
                _ = try ScalingGrid.decode(try JSONSerialization.data(withJSONObject: g), path: "grid.json")
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(error { _ in }, "no error")
        let missing = error { $0["tokens"] = nil }
        XCTAssertTrue(missing.contains("grid.json") && missing.contains("missing field 'tokens'"), missing)
        let nested = error { g in
            var dense = g["dense"] as! [[String: Any]]
            dense[1]["hidden"] = nil
            g["dense"] = dense
        }
        XCTAssertTrue(nested.contains("dense[1].hidden"), nested)
        let negative = error { g in
            var dense = g["dense"] as! [[String: Any]]
            dense[1]["hidden"] = -32
            g["dense"] = dense
        }
        XCTAssertTrue(negative.contains("dense[1].hidden") && negative.contains("-32"), negative)
        let fractions = error { $0["budget_fractions"] = [0.5, -0.1] }
        XCTAssertTrue(fractions.contains("budget_fractions[1]"), fractions)
        let experts = error { $0["experts"] = [1, 0] }
        XCTAssertTrue(experts.contains("experts[1]"), experts)
        let budget = error { $0["flops"] = -1 }
        XCTAssertTrue(budget.contains("'flops'"), budget)
    }
}
