import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels

/// Load-aware teams (`Threads.adaptive`) run a parallel region on fewer threads than
/// `Threads.count` while other processes hold cores. Every kernel splits its work by the count,
/// never by the team, so a training step and inference (every weight dtype, prefill and decode)
/// on teams of 1 must give exactly the numbers of the full team of 2; a kernel that split by the
/// team would round differently (or skip work) and differ.
final class ThreadCountDeterminismTests: XCTestCase {
    func numbers(_ model: TransformerLM, _ quantized: [TransformerLM], _ tokens: Tensor, _ targets: Tensor) throws -> [[Float]] {
        model.zeroGrad()
        let out = try model.forward(tokens, options: ForwardOptions(training: true, rng: RandomGenerator(seed: 5)))
        let loss = add(crossEntropy(out.logits, targets: targets), out.auxLoss!)
        loss.backward()
        var result = [loss.scalars] + model.parameters.map { $0.grad?.scalars ?? [] }
        let decode = Tensor(indices: [5, 9, 2], shape: [3, 1])
        for lm in quantized {
            result.append(try withNoGrad { try lm.forward(tokens).logits.scalars + lm.forward(decode).logits.scalars })
        }
        return result
    }

    func testTeamsSmallerThanTheThreadCountGiveTheNumbersOfTheFullTeam() throws {
        // tiny-moe's sizes: large enough that GEMMs, norms and the experts split over threads.
        let config = try TransformerConfig.preset(named: "tiny-moe")
        let model = try TransformerLM(config: config, seed: 1)
        let quantized = try [DType.float32, .bfloat16, .int8, .int4].map { d -> TransformerLM in
            let lm = try TransformerLM(config: config, seed: 1)
            lm.convertWeights(WeightDTypeChoice(dtype: d))
            return lm
        }
        var rng = RandomGenerator(seed: 2)
        let ids = (0..<(4 * 64)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        let tokens = Tensor(indices: ids, shape: [4, 64])
        let targets = Tensor(indices: Array(ids.dropFirst()) + [0], shape: [4, 64])
        let wasAdaptive = Threads.adaptive
        defer { Threads.adaptive = wasAdaptive; Threads.limitTeams(to: nil) }
        // The full team of 2, whatever the machine's load.
        Threads.adaptive = false
        let (full, fullTeam) = try Threads.with(2) { (try numbers(model, quantized, tokens, targets), Threads.currentTeam) }
        XCTAssertEqual(fullTeam, 2)
        // The same count on teams of 1.
        Threads.adaptive = true
        Threads.limitTeams(to: 1)
        let (small, smallTeam) = try Threads.with(2) { (try numbers(model, quantized, tokens, targets), Threads.currentTeam) }
        XCTAssertEqual(smallTeam, 1)
        XCTAssertEqual(small.count, full.count)
        for (i, (a, b)) in zip(small, full).enumerated() {
            XCTAssertTrue(a == b, "array \(i) (0 = loss, then gradients, then inference per dtype) differs between teams of 1 and 2")
        }
    }

    /// The rule: a core counts as taken when the others' mean count reaches 0.9 of it; the team
    /// is the cores left, within 1...count.
    func testTeamFollowsTheFreeCores() {
        XCTAssertEqual(Threads.team(requested: 2, cores: 2, others: 0), 2)
        XCTAssertEqual(Threads.team(requested: 2, cores: 2, others: 0.25), 2) // one sample in four: noise
        XCTAssertEqual(Threads.team(requested: 2, cores: 2, others: 0.75), 2) // a bursty neighbour
        XCTAssertEqual(Threads.team(requested: 2, cores: 2, others: 0.9), 1)
        XCTAssertEqual(Threads.team(requested: 2, cores: 2, others: 1), 1)   // a spinning one
        XCTAssertEqual(Threads.team(requested: 2, cores: 2, others: 5), 1)
        XCTAssertEqual(Threads.team(requested: 8, cores: 16, others: 3), 8)
        XCTAssertEqual(Threads.team(requested: 16, cores: 16, others: 3), 13)
        XCTAssertEqual(Threads.team(requested: 1, cores: 2, others: 0), 1)
    }

    /// On a machine made busy by other processes (one spinning child process per core),
    /// the sampler sees the CPU time they use and shrinks the team.
    func testBusyMachineShrinksTheTeam() throws {
        guard FileManager.default.fileExists(atPath: "/proc/stat") else { throw XCTSkip("no /proc/stat on this system") }
        let wasAdaptive = Threads.adaptive
        defer { Threads.adaptive = wasAdaptive }
        Threads.adaptive = true
        let spinners = (0..<Threads.available).map { _ -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "while :; do :; done"]
            return p
        }
        try spinners.forEach { try $0.run() }
        defer { spinners.forEach { $0.terminate(); $0.waitUntilExit() } }
        let team = Threads.with(Threads.available) { () -> Int in
            let deadline = Date().addingTimeInterval(5)
            while Threads.currentTeam > 1 && Date() < deadline { Thread.sleep(forTimeInterval: 0.06) }
            return Threads.currentTeam
        }
        XCTAssertEqual(team, 1, "\(Threads.available) spinning processes, cores used by others: \(Threads.coresUsedByOthers)")
    }
}
