import XCTest
import Foundation
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

final class PositionTests: XCTestCase {
    /// RoPE written the way transformers writes it: `emb = cat(freqs, freqs)`,
    /// `x·cos(emb) + rotate_half(x)·sin(emb)` on the first R features (half split),
    /// or a complex multiplication of consecutive pairs (interleaved).
    func referenceRope(_ x: Tensor, start: Int, theta: Float, rotaryDim r: Int, style: RotaryStyle) -> [Float] {
        let (b, t, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let xs = x.scalars
        var out = xs
        let half = r / 2
        let invFreq = (0..<half).map { i in Float(1) / powf(theta, Float(2 * i) / Float(r)) }
        for bi in 0..<b {
            for ti in 0..<t {
                let freqs = invFreq.map { Float(start + ti) * $0 }
                for hi in 0..<h {
                    let base = ((bi * t + ti) * h + hi) * d
                    let v = Array(xs[base..<(base + r)])
                    switch style {
                    case .halfSplit:
                        let emb = freqs + freqs
                        let rotated = v[half...].map { -$0 } + v[..<half]
                        for j in 0..<r { out[base + j] = v[j] * cosf(emb[j]) + rotated[j] * sinf(emb[j]) }
                    case .interleaved:
                        for i in 0..<half {
                            let (re, im) = (v[2 * i], v[2 * i + 1])
                            let (c, s) = (cosf(freqs[i]), sinf(freqs[i]))
                            out[base + 2 * i] = re * c - im * s
                            out[base + 2 * i + 1] = re * s + im * c
                        }
                    }
                }
            }
        }
        return out
    }

    func testRopeMatchesReferenceBothStyles() throws {
        for style in RotaryStyle.allCases {
            for (shape, r, start, theta) in [([2, 5, 3, 8], 8, 0, Float(10000)), ([1, 7, 2, 10], 4, 3, 10000),
                                             ([3, 1, 1, 6], 6, 41, 500000), ([1, 3, 2, 2], 2, 1, 10000),
                                             ([1, 33, 2, 64], 64, 1000, 10000), ([2, 40, 4, 64], 32, 17, 10000)] {
                let x = randomTensor(shape, seed: 11)
                let y = rope(x, start: start, theta: theta, rotaryDim: r, style: style)
                let expected = referenceRope(x, start: start, theta: theta, rotaryDim: r, style: style)
                assertClose(y.scalars, expected, atol: 2e-5, rtol: 1e-4, "rope \(style) \(shape) R=\(r) start=\(start)")
                let cRef = Tensor(zeros: shape)
                moe_rope_forward_naive(cRef.floats, x.floats, Int64(start), theta, Int64(shape[0]), Int64(shape[1]),
                                       Int64(shape[2]), Int64(shape[3]), Int64(r), style.cValue)
                assertClose(y.scalars, cRef.scalars, atol: 1e-6, rtol: 1e-6, "rope vs C naive \(style) \(shape)")
                // Partial rotary: the features past R are untouched.
                if r < shape[3] {
                    let d = shape[3]
                    for i in 0..<x.count where i % d >= r { XCTAssertEqual(y.floats[i], x.floats[i]) }
                }
            }
        }
    }

    /// Rotating a suffix of the sequence with `start` gives the same values as
    /// rotating the whole sequence (what a KV cache relies on).
    func testRopeStartMatchesFullSequence() throws {
        let x = randomTensor([1, 9, 2, 6], seed: 12)
        let full = rope(x, style: .interleaved).scalars
        let tail = x.reshaped([9, 2, 6]).slice(rows: 4..<9).reshaped([1, 5, 2, 6])
        let part = rope(tail, start: 4, style: .interleaved).scalars
        XCTAssertEqual(part, Array(full[(4 * 12)...]))
    }

    func testRopePrecomputedTables() throws {
        let rotary = RotaryEmbedding(theta: 1e6, rotaryDim: 4, style: .halfSplit)
        let x = randomTensor([2, 3, 2, 6], seed: 18)
        let (c, s) = rotary.tables(start: 5, count: 3, headDim: 6)
        XCTAssertEqual(c.shape, [3, 2])
        XCTAssertEqual(rotary.apply(x, cos: c, sin: s).scalars, rotary(x, start: 5).scalars)
        XCTAssertThrowsError(try Check.rotaryApply(rotary, x, cos: s, sin: Tensor(zeros: [3, 3]))) { XCTAssertTrue("\($0)".contains("[3, 3]")) }
    }

    /// The tables of several runs of positions (a ragged batch) are each run's own rows, one
    /// after another, and each row is cos/sin of position · θ^(−2i/R) (computed here in Double).
    func testRopeTablesForSeveralRuns() throws {
        let rotary = RotaryEmbedding(theta: 1e4, rotaryDim: 8, style: .halfSplit)
        let runs = [(start: 7, count: 1), (start: 0, count: 3), (start: 40, count: 0), (start: 12, count: 2)]
        let (c, s) = rotary.tables(runs: runs, headDim: 8)
        XCTAssertEqual(c.shape, [6, 4])
        let positions = runs.flatMap { $0.start..<($0.start + $0.count) }
        for (row, pos) in positions.enumerated() {
            for i in 0..<4 {
                let angle = Double(Float(pos) * Float(1 / pow(1e4, Double(2 * i) / 8)))
                XCTAssertEqual(Double(c.scalars[row * 4 + i]), cos(angle), accuracy: 1e-6, "cos row \(row) pair \(i)")
                XCTAssertEqual(Double(s.scalars[row * 4 + i]), sin(angle), accuracy: 1e-6, "sin row \(row) pair \(i)")
            }
        }
        let one = runs.map { rotary.tables(start: $0.start, count: $0.count, headDim: 8) }
        XCTAssertEqual(c.scalars, one.flatMap(\.cos.scalars))
        XCTAssertEqual(s.scalars, one.flatMap(\.sin.scalars))
    }

    /// ⟨rope(q, m), rope(k, n)⟩ depends only on m − n.
    func testRopeIsRelative() throws {
        let q = randomTensor([1, 1, 1, 16], seed: 13), k = randomTensor([1, 1, 1, 16], seed: 14)
        func score(_ m: Int, _ n: Int) throws -> Float {
            let a = rope(q, start: m).scalars, b = rope(k, start: n).scalars
            return zip(a, b).map(*).reduce(0, +)
        }
        XCTAssertEqual(try score(5, 2), try score(103, 100), accuracy: 1e-4)
        XCTAssertNotEqual(try score(5, 2), try score(5, 3), accuracy: 1e-3)
    }

    func testRopeGradients() throws {
        for style in RotaryStyle.allCases {
            let x = randomTensor([2, 3, 2, 6], seed: 15)
            _ = try checkGradients("rope \(style)", inputs: [x]) { rope($0[0], start: 2, style: style) }
            let y = randomTensor([1, 5, 1, 6], seed: 16)
            _ = try checkGradients("partial rope \(style)", inputs: [y]) { rope($0[0], start: 7, rotaryDim: 4, style: style) }
        }
    }

    func testRopeErrors() {
        let x = Tensor(zeros: [1, 2, 2, 6])
        XCTAssertThrowsError(try Check.rope(RotaryEmbedding(rotaryDim: 3), x, start: 0)) { XCTAssertTrue("\($0)".contains("rotaryDim")) }
        XCTAssertThrowsError(try Check.rope(RotaryEmbedding(rotaryDim: 8), x, start: 0))
        XCTAssertThrowsError(try Check.rope(RotaryEmbedding(), Tensor(zeros: [1, 2, 5]), start: 0))
        XCTAssertThrowsError(try Check.rope(RotaryEmbedding(), Tensor(zeros: [1, 2, 2, 5]), start: 0))  // odd head size, full rotary
        XCTAssertThrowsError(try Check.rope(RotaryEmbedding(), x, start: -1))
        XCTAssertNoThrow(try Check.rope(RotaryEmbedding(rotaryDim: 4), x, start: 3))
        XCTAssertEqual(rope(Tensor(zeros: [0, 2, 2, 6])).shape, [0, 2, 2, 6])
    }

    func testSinusoidalTable() throws {
        for (t, c, start) in [(5, 8, 0), (4, 7, 3), (1, 1, 0), (3, 2, 100)] {
            let pe = sinusoidalPositionTable(count: t, width: c, start: start)
            XCTAssertEqual(pe.shape, [t, c])
            var expected = [Float]()
            for p in start..<(start + t) {
                for j in 0..<c {
                    let i2 = Double(j - j % 2)
                    let angle = Double(p) / Foundation.pow(10000, i2 / Double(c))
                    expected.append(Float(j % 2 == 0 ? Foundation.sin(angle) : Foundation.cos(angle)))
                }
            }
            assertClose(pe.scalars, expected, atol: 1e-6, rtol: 1e-6, "PE T=\(t) C=\(c) start=\(start)")
        }
        // Position 0: sin(0) = 0 in even columns, cos(0) = 1 in odd columns.
        XCTAssertEqual(sinusoidalPositionTable(count: 1, width: 4).scalars, [0, 1, 0, 1])
    }

    func testAddSinusoidalPositions() throws {
        let x = randomTensor([2, 3, 5], seed: 17)
        let y = addSinusoidalPositions(x, start: 2)
        let pe = sinusoidalPositionTable(count: 3, width: 5, start: 2).scalars
        let expected = x.scalars.enumerated().map { $0.element + pe[$0.offset % 15] }
        assertClose(y.scalars, expected, atol: 0, rtol: 0, "x + PE")
        _ = try checkGradients("addSinusoidalPositions", inputs: [x]) { addSinusoidalPositions($0[0], start: 1) }
        XCTAssertThrowsError(try Check.addSinusoidalPositions(Tensor(zeros: [3, 5]), start: 0, base: 10000)) { XCTAssertTrue("\($0)".contains("[3, 5]")) }
        XCTAssertThrowsError(try Check.sinusoidalTable(count: 2, width: 3, start: -1, base: 10000))
    }
}
