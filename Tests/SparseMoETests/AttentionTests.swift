import XCTest
import Foundation
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

final class AttentionTests: XCTestCase {
    struct Config: CustomStringConvertible {
        var b, t, s, h, hkv, d, dv: Int
        var causal: Bool
        var description: String { "B\(b) T\(t) S\(s) H\(h) Hkv\(hkv) D\(d) Dv\(dv) causal=\(causal)" }
    }

    func inputs(_ c: Config, seed: UInt64) -> (Tensor, Tensor, Tensor) {
        (randomTensor([c.b, c.t, c.h, c.d], seed: seed), randomTensor([c.b, c.s, c.hkv, c.d], seed: seed + 1),
         randomTensor([c.b, c.s, c.hkv, c.dv], seed: seed + 2))
    }

    /// Independent reference: one query at a time, explicit mask, Double throughout.
    func referenceAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ c: Config, scale: Double) -> [Float] {
        let (qs, ks, vs) = (q.scalars, k.scalars, v.scalars)
        var out = [Float](repeating: 0, count: c.b * c.t * c.h * c.dv)
        for b in 0..<c.b {
            for h in 0..<c.h {
                let g = h / (c.h / c.hkv)
                for i in 0..<c.t {
                    var logits = [Double]()
                    for j in 0..<c.s {
                        if c.causal && j > i + c.s - c.t { logits.append(-.infinity); continue }
                        var dot = 0.0
                        for e in 0..<c.d {
                            dot += Double(qs[((b * c.t + i) * c.h + h) * c.d + e]) * Double(ks[((b * c.s + j) * c.hkv + g) * c.d + e])
                        }
                        logits.append(dot * scale)
                    }
                    let m = logits.max()!
                    let w = logits.map { Foundation.exp($0 - m) }
                    let z = w.reduce(0, +)
                    for e in 0..<c.dv {
                        var acc = 0.0
                        for j in 0..<c.s { acc += w[j] / z * Double(vs[((b * c.s + j) * c.hkv + g) * c.dv + e]) }
                        out[((b * c.t + i) * c.h + h) * c.dv + e] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    let forwardConfigs: [Config] = [
        Config(b: 2, t: 5, s: 5, h: 4, hkv: 2, d: 8, dv: 8, causal: false),
        Config(b: 2, t: 5, s: 5, h: 4, hkv: 2, d: 8, dv: 8, causal: true),
        Config(b: 1, t: 3, s: 7, h: 3, hkv: 1, d: 5, dv: 6, causal: true),
        Config(b: 1, t: 3, s: 7, h: 3, hkv: 1, d: 5, dv: 6, causal: false),
        Config(b: 1, t: 1, s: 1, h: 1, hkv: 1, d: 1, dv: 1, causal: true),
        Config(b: 3, t: 1, s: 9, h: 2, hkv: 2, d: 3, dv: 2, causal: true),       // one decoding step
        Config(b: 2, t: 4, s: 40, h: 2, hkv: 1, d: 19, dv: 11, causal: true),   // row-update path (≤ 4 rows), dot tails
        Config(b: 1, t: 2, s: 33, h: 2, hkv: 2, d: 32, dv: 32, causal: false),
        Config(b: 2, t: 1, s: 21, h: 2, hkv: 1, d: 64, dv: 75, causal: true),    // decode: 8 keys at a time + tail, o in 64 + 8 + 3 columns
        Config(b: 1, t: 3, s: 16, h: 1, hkv: 1, d: 128, dv: 128, causal: true),
        Config(b: 1, t: 70, s: 70, h: 2, hkv: 1, d: 4, dv: 3, causal: true),     // row blocks + remainder
        Config(b: 2, t: 67, s: 131, h: 2, hkv: 2, d: 9, dv: 5, causal: true),    // row blocks, S > T
        Config(b: 1, t: 33, s: 65, h: 4, hkv: 4, d: 17, dv: 17, causal: false),
    ]

    func testForwardMatchesReferences() throws {
        for c in forwardConfigs {
            let (q, k, v) = inputs(c, seed: 21)
            let out = attention(q, k, v, causal: c.causal)
            XCTAssertEqual(out.shape, [c.b, c.t, c.h, c.dv])
            let scale = 1 / Double(c.d).squareRoot()
            assertClose(out.scalars, referenceAttention(q, k, v, c, scale: scale), atol: 2e-5, rtol: 1e-4, "attention vs Swift reference \(c)")
            let naive = Tensor(zeros: out.shape)
            moe_attention_forward_naive(naive.floats, q.floats, k.floats, v.floats, Int64(c.b), Int64(c.t), Int64(c.s),
                                        Int64(c.h), Int64(c.hkv), Int64(c.d), Int64(c.dv), c.causal ? 1 : 0, Float(scale))
            assertClose(out.scalars, naive.scalars, atol: 2e-5, rtol: 1e-4, "attention vs C naive \(c)")
        }
        // Explicit scale.
        let c = forwardConfigs[2]
        let (q, k, v) = inputs(c, seed: 22)
        assertClose(attention(q, k, v, causal: true, scale: 0.7).scalars, referenceAttention(q, k, v, c, scale: 0.7),
                    atol: 2e-5, rtol: 1e-4, "attention scale 0.7")
        // Very peaked softmax: logit gaps beyond the exp clamp (e^-87) underflow to ~0.
        assertClose(attention(q, k, v, causal: false, scale: 60).scalars,
                    referenceAttention(q, k, v, Config(b: c.b, t: c.t, s: c.s, h: c.h, hkv: c.hkv, d: c.d, dv: c.dv, causal: false), scale: 60),
                    atol: 2e-5, rtol: 1e-4, "attention scale 60")
    }

    /// The one-row decode path (≤ 4 query rows) at every SIMD level this CPU has (plain C and
    /// AVX2 + FMA), against the Double reference.
    func testDecodeRowsMatchReferenceAtEachSIMDLevel() throws {
        let original = moe_weight_simd_level()
        defer { _ = moe_weight_set_simd_level(original) }
        var levels = 0
        for level: Int32 in [0, 2] where moe_weight_set_simd_level(level) == level {
            levels += 1
            for c in forwardConfigs where c.t <= 4 {
                let (q, k, v) = inputs(c, seed: 23)
                assertClose(attention(q, k, v, causal: c.causal).scalars, referenceAttention(q, k, v, c, scale: 1 / Double(c.d).squareRoot()),
                            atol: 2e-5, rtol: 1e-4, "SIMD level \(level) \(c)")
            }
        }
        XCTAssertGreaterThanOrEqual(levels, 1)
    }

    func testGradients() throws {
        let configs = [
            Config(b: 1, t: 3, s: 3, h: 2, hkv: 2, d: 4, dv: 4, causal: false),
            Config(b: 1, t: 3, s: 3, h: 2, hkv: 2, d: 4, dv: 4, causal: true),
            Config(b: 2, t: 3, s: 3, h: 4, hkv: 2, d: 2, dv: 3, causal: true),   // GQA 4/2, Dv ≠ D
            Config(b: 1, t: 2, s: 4, h: 3, hkv: 1, d: 3, dv: 2, causal: true),   // MQA 3/1, T ≠ S
            Config(b: 1, t: 2, s: 4, h: 3, hkv: 1, d: 3, dv: 2, causal: false),
            Config(b: 1, t: 4, s: 2, h: 2, hkv: 1, d: 2, dv: 2, causal: false),  // T > S
            Config(b: 1, t: 1, s: 1, h: 1, hkv: 1, d: 1, dv: 1, causal: true),   // size 1
            Config(b: 2, t: 1, s: 3, h: 1, hkv: 1, d: 1, dv: 2, causal: true),
        ]
        for c in configs {
            let (q, k, v) = inputs(c, seed: 31)
            _ = try checkGradients("attention \(c)", inputs: [q, k, v]) { attention($0[0], $0[1], $0[2], causal: c.causal) }
        }
    }

    /// One tensor as queries, keys and values: its gradient gathers all three paths.
    func testGradientWithAliasedInputs() throws {
        let x = randomTensor([2, 4, 2, 3], seed: 35)
        _ = try checkGradients("self-attention q = k = v", inputs: [x]) { attention($0[0], $0[0], $0[0], causal: true) }
    }

    /// Large shapes (row blocks, key chunks, parallel paths): the gradient along a random
    /// direction against a central difference of the loss, in Double.
    func testDirectionalGradientLargeShapes() throws {
        for c in [Config(b: 1, t: 70, s: 70, h: 2, hkv: 1, d: 8, dv: 6, causal: true),
                  Config(b: 2, t: 40, s: 150, h: 4, hkv: 2, d: 5, dv: 7, causal: true),
                  Config(b: 3, t: 66, s: 66, h: 2, hkv: 2, d: 4, dv: 4, causal: false)] {
            let (q, k, v) = inputs(c, seed: 41)
            let weights = randomTensor([c.b, c.t, c.h, c.dv], seed: 45)
            for x in [q, k, v] { x.requiresGrad = true }
            attention(q, k, v, causal: c.causal).backward(gradient: weights)
            func loss() throws -> Double {
                let y = withNoGrad { attention(q, k, v, causal: c.causal) }
                return zip(y.scalars, weights.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
            for (n, x) in [q, k, v].enumerated() {
                let dir = randomTensor(x.shape, seed: 50 + UInt64(n))
                let analytic = zip(x.grad!.scalars, dir.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let orig = x.scalars, eps: Float = 1e-2
                for i in 0..<x.count { x.floats[i] = orig[i] + eps * dir.floats[i] }
                let lp = try loss()
                for i in 0..<x.count { x.floats[i] = orig[i] - eps * dir.floats[i] }
                let lm = try loss()
                for i in 0..<x.count { x.floats[i] = orig[i] }
                let numeric = (lp - lm) / (2 * Double(eps))
                XCTAssertEqual(analytic, numeric, accuracy: 1e-2 * max(1, abs(numeric)), "input \(n) of \(c)")
            }
        }
    }

    /// Changing keys/values a query cannot see leaves its output bit-identical.
    func testCausalMaskIgnoresFutureKeys() throws {
        let c = Config(b: 2, t: 6, s: 9, h: 2, hkv: 1, d: 4, dv: 3, causal: true)
        let (q, k, v) = inputs(c, seed: 61)
        let before = attention(q, k, v, causal: true).scalars
        // Key 7 is visible to queries i with 7 ≤ i + 3, i.e. i ≥ 4.
        for b in 0..<c.b {
            for e in 0..<c.d { k.floats[((b * c.s + 7) * c.hkv) * c.d + e] += 5 }
            for e in 0..<c.dv { v.floats[((b * c.s + 7) * c.hkv) * c.dv + e] -= 3 }
        }
        let after = attention(q, k, v, causal: true).scalars
        let row = c.h * c.dv
        for b in 0..<c.b {
            for i in 0..<c.t {
                let range = ((b * c.t + i) * row)..<((b * c.t + i + 1) * row)
                if i < 4 {
                    XCTAssertEqual(Array(after[range]), Array(before[range]), "query \(i) saw key 7")
                } else {
                    XCTAssertNotEqual(Array(after[range]), Array(before[range]), "query \(i) should see key 7")
                }
            }
        }
    }

    /// Several sequences in one call (continuous batching): each sequence's rows equal, bit for
    /// bit, `attention` on that sequence alone — decode rows (1), the row-update path (≤ 4) and
    /// the sgemm path (> 4 rows), GQA, empty and single-key caches, 1 and 2 threads.
    func testSegmentedAttentionEqualsPerSequence() throws {
        for (h, hkv, d, dv) in [(4, 2, 8, 8), (3, 1, 5, 6), (1, 1, 16, 16)] {
            for causal in [true, false] {
                // (new rows, earlier cached positions) per sequence
                let segments = [(1, 9), (4, 36), (7, 0), (1, 0), (3, 2), (70, 5)]
                let n = segments.reduce(0) { $0 + $1.0 }
                let q = randomTensor([1, n, h, d], seed: 91)
                var keys = [Tensor](), values = [Tensor](), rows = [Range<Int>]()
                var row = 0
                for (i, (t, cached)) in segments.enumerated() {
                    keys.append(randomTensor([1, cached + t, hkv, d], seed: UInt64(100 + i)))
                    values.append(randomTensor([1, cached + t, hkv, dv], seed: UInt64(200 + i)))
                    rows.append(row..<(row + t))
                    row += t
                }
                for threads in [1, 2] {
                    let label = "H\(h) Hkv\(hkv) D\(d) Dv\(dv) causal=\(causal) threads \(threads)"
                    let batched = Threads.with(threads) {
                        withNoGrad { segmentedAttention(q, keys: keys, values: values, rows: rows, causal: causal) }
                    }
                    XCTAssertEqual(batched.shape, [1, n, h, dv], label)
                    let all = batched.scalars
                    for (g, r) in rows.enumerated() {
                        let qg = Tensor(Array(q.scalars[(r.lowerBound * h * d)..<(r.upperBound * h * d)]), shape: [1, r.count, h, d])
                        let alone = Threads.with(threads) { attention(qg, keys[g], values[g], causal: causal).scalars }
                        XCTAssertEqual(Array(all[(r.lowerBound * h * dv)..<(r.upperBound * h * dv)]), alone, "segment \(g) \(label)")
                    }
                }
            }
        }
    }

    func testDeterministicAndThreadIndependent() throws {
        let c = Config(b: 2, t: 70, s: 70, h: 4, hkv: 2, d: 16, dv: 16, causal: true)
        let (q, k, v) = inputs(c, seed: 71)
        func run(_ threads: Int) throws -> ([Float], [Float]) {
            Threads.with(threads) {
                for x in [q, k, v] { x.requiresGrad = true; x.zeroGrad() }
                let y = attention(q, k, v, causal: true)
                y.backward(gradient: Tensor(repeating: 1, shape: y.shape))
                return (y.scalars, k.grad!.scalars)
            }
        }
        let a = try run(2), b = try run(2), one = try run(1)
        XCTAssertEqual(a.0, b.0); XCTAssertEqual(a.1, b.1)
        assertClose(one.0, a.0, atol: 1e-5, rtol: 1e-4, "1 vs 2 threads: output")
        assertClose(one.1, a.1, atol: 1e-5, rtol: 1e-4, "1 vs 2 threads: dK")
    }

    func testValidationErrorsNameShapes() {
        func expectError(_ q: [Int], _ k: [Int], _ v: [Int], causal: Bool = false, contains: String,
                         line: UInt = #line) {
            XCTAssertThrowsError(try Check.attention(Tensor(zeros: q), Tensor(zeros: k), Tensor(zeros: v), causal: causal, scale: nil),
                                 line: line) { error in
                XCTAssertTrue("\(error)".contains(contains), "\(error)", line: line)
            }
        }
        expectError([1, 2, 3, 4], [1, 2, 2, 4], [1, 2, 2, 4], contains: "H=3")            // H % Hkv
        expectError([2, 2, 2, 4], [1, 2, 2, 4], [1, 2, 2, 4], contains: "[2, 2, 2, 4]")   // B
        expectError([1, 2, 2, 4], [1, 2, 2, 5], [1, 2, 2, 4], contains: "[1, 2, 2, 5]")   // D
        expectError([1, 2, 2, 4], [1, 2, 2, 4], [1, 3, 2, 4], contains: "[1, 3, 2, 4]")   // S of v
        expectError([1, 2, 2, 4], [1, 2, 2, 4], [1, 2, 1, 4], contains: "[1, 2, 1, 4]")   // Hkv of v
        expectError([2, 2, 4], [1, 2, 2, 4], [1, 2, 2, 4], contains: "[2, 2, 4]")         // rank
        expectError([1, 3, 2, 4], [1, 2, 2, 4], [1, 2, 2, 4], causal: true, contains: "S ≥ T")
        expectError([1, 3, 2, 4], [1, 0, 2, 4], [1, 0, 2, 4], contains: "S=0")
        XCTAssertEqual(attention(Tensor(zeros: [0, 3, 2, 4]), Tensor(zeros: [0, 3, 1, 4]),
                                     Tensor(zeros: [0, 3, 1, 5]), causal: true).shape, [0, 3, 2, 5])
    }
}
