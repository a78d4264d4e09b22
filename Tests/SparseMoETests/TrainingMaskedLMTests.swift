import XCTest
@testable import SparseMoECore
@testable import SparseMoETraining

final class TrainingMaskedLMTests: XCTestCase {
    /// ~100k positions: 15% chosen, of those 80% mask / 10% random / 10% unchanged,
    /// each within ±1.5 percentage points; targets exact.
    func testStatisticsAndTargets() throws {
        let mlm = try MaskedLM()
        var rng = RandomGenerator(seed: 7)
        var data = RandomGenerator(seed: 8)
        let (b, t) = (64, 128)
        var total = 0, chosen = 0, masked = 0, randomized = 0, unchanged = 0
        var randomHist = [Int](repeating: 0, count: 256)
        for round in 0..<12 {
            // Half the rounds use token 300 everywhere (outside the random range, so a
            // random replacement is always visible), half use random bytes.
            let values: [Int32] = (0..<b * t).map { _ in round % 2 == 0 ? 300 : Int32(data.int(below: 256)) }
            let tokens = Tensor(indices: values, shape: [b, t])
            let (inputs, targets) = try mlm.apply(to: tokens, using: &rng)
            XCTAssertEqual(inputs.shape, [b, t]); XCTAssertEqual(targets.shape, [b, t])
            XCTAssertEqual(tokens.indexScalars, values, "input tensor must not be modified")
            let x = inputs.indexScalars, y = targets.indexScalars
            for i in 0..<b * t {
                total += 1
                if y[i] == MaskedLM.ignoreIndex {
                    XCTAssertEqual(x[i], values[i], "unchosen position changed")
                    continue
                }
                chosen += 1
                XCTAssertEqual(y[i], values[i], "target must be the original token")
                if x[i] == ByteTokenizer.mask { masked += 1 }
                else if x[i] == values[i] { unchanged += 1 }
                else {
                    randomized += 1
                    XCTAssertTrue((0..<256).contains(x[i]))
                    randomHist[Int(x[i])] += 1
                }
            }
        }
        XCTAssertGreaterThan(total, 95_000)
        let pChosen = Double(chosen) / Double(total)
        let pMask = Double(masked) / Double(chosen), pRandom = Double(randomized) / Double(chosen)
        let pSame = Double(unchanged) / Double(chosen)
        print(String(format: "MLM: chosen %.4f, mask %.4f, random %.4f, unchanged %.4f", pChosen, pMask, pRandom, pSame))
        XCTAssertEqual(pChosen, 0.15, accuracy: 0.015)
        XCTAssertEqual(pMask, 0.80, accuracy: 0.015)
        // A random byte equals the original with probability 1/256 in the byte rounds.
        XCTAssertEqual(pRandom, 0.10, accuracy: 0.015)
        XCTAssertEqual(pSame, 0.10, accuracy: 0.015)
        // Random replacements spread over the byte range (both halves used).
        XCTAssertGreaterThan(randomHist[0..<128].reduce(0, +), randomized / 3)
        XCTAssertGreaterThan(randomHist[128..<256].reduce(0, +), randomized / 3)
    }

    func testAtLeastOnePerSequenceNeverMaskAndSeeding() throws {
        let mlm = try MaskedLM(config: MaskingConfig(maskProbability: 0.01))
        var values = [Int32](repeating: 0, count: 1000)
        for i in 0..<1000 { values[i] = i % 5 == 0 ? ByteTokenizer.pad : Int32(i % 200) }
        let tokens = Tensor(indices: values, shape: [200, 5])
        var rng = RandomGenerator(seed: 1)
        let (x, y) = try mlm.apply(to: tokens, using: &rng)
        let ys = y.indexScalars
        for row in 0..<200 {
            let chosen = (0..<5).filter { ys[row * 5 + $0] != MaskedLM.ignoreIndex }
            XCTAssertGreaterThanOrEqual(chosen.count, 1, "row \(row)")
            XCTAssertFalse(chosen.contains(0), "pad position chosen in row \(row)")
        }
        var rng2 = RandomGenerator(seed: 1), rng3 = RandomGenerator(seed: 2)
        let again = try mlm.apply(to: tokens, using: &rng2)
        XCTAssertEqual(again.inputs.indexScalars, x.indexScalars)
        XCTAssertEqual(again.targets.indexScalars, ys)
        let other = try MaskedLM().apply(to: tokens, using: &rng3)
        XCTAssertNotEqual(other.targets.indexScalars, ys)
        // A row made only of never-masked tokens has no target; rank-1 input works.
        let pads = Tensor(indices: [Int32](repeating: ByteTokenizer.pad, count: 6), shape: [6])
        XCTAssertTrue(try mlm.apply(to: pads, using: &rng).targets.indexScalars.allSatisfy { $0 == MaskedLM.ignoreIndex })
        // Probability 1 chooses everything; 100% mask replaces everything.
        let all = try MaskedLM(config: MaskingConfig(maskProbability: 1, maskTokenFraction: 1, randomTokenFraction: 0))
        let one = Tensor(indices: [1, 2, 3], shape: [1, 3])
        let r = try all.apply(to: one, using: &rng)
        XCTAssertEqual(r.inputs.indexScalars, [259, 259, 259]); XCTAssertEqual(r.targets.indexScalars, [1, 2, 3])
    }

    func testErrors() {
        XCTAssertThrowsError(try MaskedLM(config: MaskingConfig(maskProbability: 0)))
        XCTAssertThrowsError(try MaskedLM(config: MaskingConfig(maskTokenFraction: 0.95, randomTokenFraction: 0.1)))
        XCTAssertThrowsError(try MaskedLM(randomTokens: 5..<5))
        var rng = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try MaskedLM().apply(to: Tensor(zeros: [2, 3]), using: &rng)) { e in
            XCTAssertTrue("\(e)".contains("int32"), "\(e)")
        }
        XCTAssertThrowsError(try MaskedLM().apply(to: Tensor(zeros: [1, 2, 3], dtype: .int32), using: &rng))
    }
}
