import Foundation
import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

/// The reduced-precision and quantized weight kernels (moe_weights.h) against the naive
/// references written from the format description, at every SIMD level this CPU runs.
final class WeightKernelTests: XCTestCase {
    enum Format: Int32, CaseIterable { case f32 = 0, bf16, f16, q8, q4 }

    /// A matrix [rows, cols] quantized into `format`; owns its storage.
    final class Stored {
        let format: Format, rows: Int, cols: Int
        let data: UnsafeMutableRawPointer, scales: UnsafeMutableRawPointer
        let rowBytes: Int, scalesPerRow: Int

        init(_ src: [Float], rows: Int, cols: Int, format: Format) {
            precondition(src.count == rows * cols)
            self.format = format; self.rows = rows; self.cols = cols
            rowBytes = Int(moe_weight_row_bytes(format.rawValue, Int64(cols)))
            scalesPerRow = Int(moe_weight_scales_per_row(format.rawValue, Int64(cols)))
            data = .allocate(byteCount: max(1, rows * rowBytes), alignment: 64)
            scales = .allocate(byteCount: max(1, rows * scalesPerRow * 4), alignment: 64)
            src.withUnsafeBufferPointer {
                moe_weight_quantize(data, format == .q8 || format == .q4 ? scales : nil, $0.baseAddress, Int64(rows), Int64(cols), format.rawValue)
            }
        }
        deinit { data.deallocate(); scales.deallocate() }

        var view: moe_weight {
            moe_weight(format: format.rawValue, data: UnsafeRawPointer(data),
                       scales: format == .q8 || format == .q4 ? UnsafeRawPointer(scales) : nil,
                       rows: Int64(rows), cols: Int64(cols))
        }
        func dequantized() -> [Float] {
            var out = [Float](repeating: .nan, count: rows * cols)
            out.withUnsafeMutableBufferPointer { moe_weight_dequantize($0.baseAddress, view, 0, Int64(rows)) }
            return out
        }
        func naive() -> [Float] {
            var out = [Float](repeating: .nan, count: rows * cols)
            out.withUnsafeMutableBufferPointer { moe_weight_dequantize_naive($0.baseAddress, view, 0, Int64(rows)) }
            return out
        }
        func q8Scale(_ n: Int) -> Float { scales.load(fromByteOffset: 4 * n, as: Float.self) }
        func q4Scale(_ n: Int, _ g: Int) -> Float {
            Float(Float16(bitPattern: scales.load(fromByteOffset: 2 * (n * scalesPerRow + g), as: UInt16.self)))
        }
        func byte(_ n: Int, _ i: Int) -> UInt8 { data.load(fromByteOffset: n * rowBytes + i, as: UInt8.self) }
    }

    /// Runs body at every SIMD level this CPU supports (0 scalar, 2 AVX2, 3 AVX-512), then
    /// restores the level.
    func forEachLevel(_ body: (Int32) throws -> Void) rethrows {
        let original = moe_weight_simd_level()
        defer { _ = moe_weight_set_simd_level(original) }
        for level: Int32 in [0, 2, 3] where moe_weight_set_simd_level(level) == level { try body(level) }
    }

    /// bfloat16 of x by round to nearest even, computed in Double (independent of the kernel's bit trick).
    func bf16Reference(_ x: Float) -> Float {
        let lo = Float(bitPattern: x.bitPattern & 0xffff_0000)
        let hi = Float(bitPattern: (x.bitPattern & 0xffff_0000) &+ 0x10000)
        let dl = abs(Double(x) - Double(lo)), dh = abs(Double(hi) - Double(x))
        if dl != dh { return dl < dh ? lo : hi }
        return (lo.bitPattern >> 16) & 1 == 0 ? lo : hi
    }

    /// Values over several magnitudes, with zero rows/groups, for a [rows, cols] matrix.
    func values(rows: Int, cols: Int, seed: UInt64) -> [Float] {
        var v = randomTensor([rows, cols], seed: seed).scalars
        for i in v.indices { v[i] *= Float([1, 0.01, 30, 1e-3][(i / cols) % 4]) }
        if rows > 2 { for k in 0..<cols { v[2 * cols + k] = 0 } } // a zero row
        return v
    }

    func testLevelsAndSizes() {
        let best = moe_weight_simd_level()
        XCTAssertTrue([0, 2, 3].contains(best))
        forEachLevel { level in XCTAssertEqual(moe_weight_simd_level(), level) }
        XCTAssertEqual(moe_weight_simd_level(), best)
        XCTAssertEqual(moe_weight_set_simd_level(1), 0)
        _ = moe_weight_set_simd_level(best)
        XCTAssertEqual(moe_weight_row_bytes(Format.q4.rawValue, 33), 32)
        XCTAssertEqual(moe_weight_row_bytes(Format.q4.rawValue, 32), 16)
        XCTAssertEqual(moe_weight_row_bytes(Format.bf16.rawValue, 7), 14)
        XCTAssertEqual(moe_weight_row_bytes(Format.q8.rawValue, 7), 7)
        XCTAssertEqual(moe_weight_scales_per_row(Format.q4.rawValue, 65), 3)
        XCTAssertEqual(moe_weight_scales_per_row(Format.q8.rawValue, 65), 1)
        XCTAssertEqual(moe_weight_scales_per_row(Format.f16.rawValue, 65), 0)
    }

    func testQuantizeDequantizeBounds() {
        let rows = 6, cols = 77 // 3 Q4 groups, the last one partial
        let src = values(rows: rows, cols: cols, seed: 11)
        forEachLevel { level in
            for format in Format.allCases {
                let w = Stored(src, rows: rows, cols: cols, format: format)
                let d = w.dequantized()
                XCTAssertEqual(d, w.naive(), "dequantize vs naive \(format) level \(level)")
                // a window of rows, as a view
                var part = [Float](repeating: .nan, count: 3 * cols)
                part.withUnsafeMutableBufferPointer { moe_weight_dequantize($0.baseAddress, w.view, 2, 3) }
                XCTAssertEqual(part, Array(d[(2 * cols)..<(5 * cols)]), "rows 2..<5 \(format)")
                let sub = moe_weight_rows(w.view, 1, 4)
                var viaRows = [Float](repeating: .nan, count: 4 * cols)
                viaRows.withUnsafeMutableBufferPointer { moe_weight_dequantize($0.baseAddress, sub, 0, 4) }
                XCTAssertEqual(viaRows, Array(d[cols..<(5 * cols)]), "moe_weight_rows \(format)")
                for n in 0..<rows {
                    let row = Array(src[(n * cols)..<((n + 1) * cols)])
                    let amax = row.map { abs($0) }.max()!
                    for k in 0..<cols {
                        let x = row[k], y = d[n * cols + k], err = abs(y - x)
                        switch format {
                        case .f32: XCTAssertEqual(y, x)
                        case .bf16:
                            XCTAssertEqual(y, bf16Reference(x), "bf16 rounding \(x)")
                            XCTAssertLessThanOrEqual(err, abs(x) * 0x1p-8)
                        case .f16:
                            XCTAssertEqual(y, Float(Float16(x)), "f16 rounding \(x)")
                            if abs(x) >= 0x1p-14 { XCTAssertLessThanOrEqual(err, abs(x) * 0x1p-11) }
                        case .q8:
                            let s = w.q8Scale(n)
                            XCTAssertEqual(s, amax / 127)
                            XCTAssertLessThanOrEqual(err, s / 2 * (1 + 1e-6), "q8 row \(n) k \(k)")
                        case .q4:
                            let g = k / 32
                            let gmax = row[(32 * g)..<min(cols, 32 * g + 32)].map { abs($0) }.max()!
                            let s = w.q4Scale(n, g)
                            XCTAssertEqual(s, Float(Float16(gmax / 7)))
                            XCTAssertLessThanOrEqual(err, s / 2 * (1 + 1e-6), "q4 row \(n) k \(k)")
                        }
                    }
                }
                if format == .q4 { // elements 77..<96 of the last group are stored as nibble 8
                    for n in 0..<rows {
                        for j in 13..<32 {
                            let b = w.byte(n, 32 + j % 16)
                            XCTAssertEqual(j < 16 ? b & 0xf : b >> 4, 8, "padding nibble row \(n) j \(j)")
                        }
                    }
                }
            }
        }
    }

    /// Values already on each format's grid come back exactly.
    func testOnGridValuesRoundTripExactly() {
        let rows = 3, cols = 70
        var rng = RandomGenerator(seed: 5)
        let q8 = (0..<(rows * cols)).map { i in Float(i % cols == 3 ? 127 : Int.random(in: -127...127, using: &rng)) * 0x1p-7 }
        let q4 = (0..<(rows * cols)).map { i in Float((i % cols) % 32 == 5 ? -7 : Int.random(in: -7...7, using: &rng)) * 0x1p-3 }
        let halves = (0..<(rows * cols)).map { _ in Float(Float16(Float.random(in: -100...100, using: &rng))) }
        let bf16s = (0..<(rows * cols)).map { _ in Float(bitPattern: Float.random(in: -1e5...1e5, using: &rng).bitPattern & 0xffff_0000) }
        forEachLevel { level in
            XCTAssertEqual(Stored(q8, rows: rows, cols: cols, format: .q8).dequantized(), q8, "q8 level \(level)")
            XCTAssertEqual(Stored(q4, rows: rows, cols: cols, format: .q4).dequantized(), q4, "q4 level \(level)")
            XCTAssertEqual(Stored(halves, rows: rows, cols: cols, format: .f16).dequantized(), halves, "f16 level \(level)")
            XCTAssertEqual(Stored(bf16s, rows: rows, cols: cols, format: .bf16).dequantized(), bf16s, "bf16 level \(level)")
        }
    }

    func testMatmulMatchesNaive() {
        var cases = 0
        for format in Format.allCases {
            for k in [1, 7, 31, 32, 33, 100, 257] {
                for n in [1, 3, 65] {
                    let w = Stored(values(rows: n, cols: k, seed: UInt64(k * 100 + n)), rows: n, cols: k, format: format)
                    for m in [1, 2, 3, 5, 17, 64, 130] {
                        for accumulate in [false, true] {
                            cases += checkMatmul(w, m: m, accumulate: accumulate, "\(format) m \(m) k \(k) n \(n) acc \(accumulate)")
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThanOrEqual(cases, 2 * 5 * 7 * 3 * 7 * 2)
    }

    /// y = x·Wᵀ (+ y) with padded strides, at every SIMD level and each thread count, against
    /// the naive reference; tolerance relative to Σ|x||w|. Returns the number of runs checked.
    @discardableResult
    func checkMatmul(_ w: Stored, m: Int, accumulate: Bool, threads: [Int] = [2], _ label: String) -> Int {
        let k = w.cols, n = w.rows, ldx = k + 3, ldy = n + 2
        let x = randomTensor([m, ldx], seed: UInt64(m + 7 * k)).scalars
        let y0 = randomTensor([m, ldy], seed: UInt64(3 * m + n)).scalars.map { $0 * 4 }
        var ref = y0
        ref.withUnsafeMutableBufferPointer { moe_weight_matmul_naive($0.baseAddress, Int64(ldy), x, Int64(ldx), w.view, Int64(m), accumulate ? 1 : 0) }
        // Σ_k |x||w| (+ |y0|) by the naive reference on absolute values
        var mags = y0.map { accumulate ? abs($0) : 0 }
        let absW = Stored(w.naive().map { abs($0) }, rows: n, cols: k, format: .f32)
        mags.withUnsafeMutableBufferPointer {
            moe_weight_matmul_naive($0.baseAddress, Int64(ldy), x.map { abs($0) }, Int64(ldx), absW.view, Int64(m), 1)
        }
        // Q4 and Q8 decode round x to Q8 activation blocks where moe_weight_decode_rounds_x says so: their
        // own reference, and against the float32 product the stated bound Σ_k |w| · d(k's block) / 2.
        let q8 = w.format == .q4 || w.format == .q8  // whether a level rounds x: decided per level below
        var refQ8 = y0, bound = [Float](repeating: 0, count: m * ldy)
        if q8 {
            refQ8.withUnsafeMutableBufferPointer { moe_weight_matmul_q8act_naive($0.baseAddress, Int64(ldy), x, Int64(ldx), w.view, Int64(m), accumulate ? 1 : 0) }
            let groups = (k + 31) / 32
            var halfSteps = [Float](repeating: 0, count: m * k)
            var q = [Int8](repeating: 0, count: 32 * groups), d = [Float](repeating: 0, count: groups)
            for i in 0..<m {
                moe_q8_blocks_naive(Array(x[(i * ldx)..<(i * ldx + k)]), Int64(k), &q, &d)
                for j in 0..<k { halfSteps[i * k + j] = d[j / 32] / 2 * (1 + 1e-5) }
            }
            bound.withUnsafeMutableBufferPointer { moe_weight_matmul_naive($0.baseAddress, Int64(ldy), halfSteps, Int64(k), absW.view, Int64(m), 0) }
        }
        var runs = 0
        forEachLevel { level in
            let useQ8 = q8 && moe_weight_decode_rounds_x(w.format.rawValue) != 0 && m <= Int(moe_weight_decode_max_m(w.format.rawValue))
            for t in threads {
                var y = y0
                let wsCount = Threads.with(t) { Int(moe_weight_matmul_workspace_size(w.view, Int64(m))) }
                var ws = [Float](repeating: 77, count: wsCount + 16)
                Threads.with(t) {
                    y.withUnsafeMutableBufferPointer { yp in
                        ws.withUnsafeMutableBufferPointer {
                            moe_weight_matmul(yp.baseAddress, Int64(ldy), x, Int64(ldx), w.view, Int64(m), accumulate ? 1 : 0, $0.baseAddress)
                        }
                    }
                }
                let where_ = "\(label) level \(level) threads \(t)"
                XCTAssertEqual(Array(ws[wsCount...]), [Float](repeating: 77, count: 16), "workspace overrun \(where_)")
                let checks: [(String, [Float], [Float])] = useQ8
                    ? [("Q8 activations", refQ8, [Float](repeating: 0, count: m * ldy)), ("float32 within the Q8 bound", ref, bound)]
                    : [("float32", ref, [Float](repeating: 0, count: m * ldy))]
                for (name, expected, extra) in checks {
                    var worst: (Float, Int) = (0, -1)
                    for i in 0..<m {
                        for j in 0..<ldy {
                            let idx = i * ldy + j
                            if j >= n { if y[idx] != y0[idx] { worst = (.infinity, idx) }; continue }
                            let excess = abs(y[idx] - expected[idx]) / (2e-6 * Float(k).squareRoot() * mags[idx] + extra[idx] + 1e-30)
                            if !(excess <= 1) && (worst.1 < 0 || excess > worst.0) { worst = (excess, idx) }
                        }
                    }
                    if worst.1 >= 0 {
                        XCTFail("\(where_) vs \(name): element \(worst.1) got \(y[worst.1]), reference \(expected[worst.1]) (\(worst.0)× tolerance)")
                    }
                }
                runs += 1
            }
        }
        return runs
    }

    /// Decode and prefill at 1 and 2 threads on a wider shape (several panels, both thread blocks).
    func testMatmulWideShapesAndThreads() {
        for format in Format.allCases {
            let w = Stored(values(rows: 300, cols: 160, seed: 9), rows: 300, cols: 160, format: format)
            for m in [1, 4, 6, 9, 40, 100] {
                checkMatmul(w, m: m, accumulate: m == 4, threads: [1, 2], "wide \(format) m \(m)")
            }
        }
    }

    /// The float decode kernels give every row of W the same bits whether it is computed alone
    /// or beside the others (the SIMD levels take rows in pairs and reduce their sums together;
    /// a piece of rows handed to a thread may start at any row), at every SIMD level.
    func testFloatDecodeRowDoesNotDependOnItsNeighbours() {
        let n = 9
        for format in [Format.f32, .bf16, .f16] {
            for k in [7, 16, 31, 33, 100, 128, 257] {
                let src = values(rows: n, cols: k, seed: UInt64(5 * k + 1))
                let w = Stored(src, rows: n, cols: k, format: format)
                for m in [2, 3, 4, 5, 8, 17] {
                    let x = randomTensor([m, k], seed: UInt64(m * 1000 + k)).scalars
                    func run(_ view: moe_weight) -> [Float] {
                        let rows = Int(view.rows)
                        var y = [Float](repeating: 0, count: m * rows)
                        var ws = [Float](repeating: 0, count: Int(moe_weight_matmul_workspace_size(view, Int64(m))) + 1)
                        Threads.with(1) { moe_weight_matmul(&y, Int64(rows), x, Int64(k), view, Int64(m), 0, &ws) }
                        return y
                    }
                    forEachLevel { level in
                        let all = run(w.view)
                        for r in 0..<n {
                            var one = w.view
                            one.data = UnsafeRawPointer(w.data + r * w.rowBytes)
                            one.rows = 1
                            let alone = run(one)
                            for i in 0..<m where alone[i] != all[i * n + r] {
                                XCTFail("\(format) level \(level) k \(k) m \(m): row \(r), x row \(i): alone \(alone[i]), beside the others \(all[i * n + r])")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The integer Q4 × Q8 and Q8 × Q8 decode paths: m = 1..4 and 8, K past one 64-group scale chunk with a
    /// group remainder, x with zero, tiny and huge blocks (checked against the Q8-activation
    /// reference and, within the stated per-block bound, the float32 product).
    func testIntegerDecodeMatchesNaive() {
        for format in [Format.q4, .q8] {
            for k in [2048 + 33, 95, 4096, 32 * 300 + 5] { // Q4, the last: two windows of x sums (256 + 45 groups)
                var src = values(rows: 37, cols: k, seed: UInt64(k))
                for j in 0..<min(k, 40) { src[5 * k + j] = 0 } // a zero group at the start of row 5
                let w = Stored(src, rows: 37, cols: k, format: format)
                for m in [1, 2, 3, 4, 8] {
                    checkMatmul(w, m: m, accumulate: m == 2, threads: [1, 2], "\(format) integer k \(k) m \(m)")
                }
            }
        }
    }

    /// The integer Q4 and Q8 paths give every x row the same bits whatever rows share its call
    /// (decode of a sequence alone or in a batch of any size, up to the GEMV limit), and the
    /// same bits at every SIMD level that runs them (AVX2's maddubs + madd and AVX-512 VNNI's
    /// vpdpbusd compute the same integers).
    func testIntegerDecodeRowDoesNotDependOnItsBatch() {
        for format in [Format.q4, .q8] { checkRowsIndependentOfBatch(format) }
    }

    func checkRowsIndependentOfBatch(_ format: Format) {
        let k = 32 * 70 + 9, n = 19, m = 11
        let w = Stored(values(rows: n, cols: k, seed: 31), rows: n, cols: k, format: format)
        let x = randomTensor([m, k], seed: 32).scalars
        func run(_ rows: Range<Int>) -> [Float] {
            var y = [Float](repeating: 0, count: rows.count * n)
            var ws = [Float](repeating: 0, count: Int(moe_weight_matmul_workspace_size(w.view, Int64(rows.count))) + 1)
            let xs = Array(x[(rows.lowerBound * k)..<(rows.upperBound * k)])
            Threads.with(1) {
                moe_weight_matmul(&y, Int64(n), xs, Int64(k), w.view, Int64(rows.count), 0, &ws)
            }
            return y
        }
        var integerLevels: [Int32: [Float]] = [:]
        var vnni = false
        forEachLevel { level in
            guard moe_weight_decode_rounds_x(format.rawValue) != 0 else { return }
            let all = run(0..<m)
            integerLevels[level] = all
            if level == 3 { vnni = moe_weight_simd_vnni() != 0 }
            for i in 0..<m {
                XCTAssertEqual(run(i..<(i + 1)), Array(all[(i * n)..<((i + 1) * n)]), "\(format) level \(level): x row \(i) alone vs in a batch of \(m)")
            }
            XCTAssertEqual(run(3..<7), Array(all[(3 * n)..<(7 * n)]), "\(format) level \(level): rows 3..<7 vs in a batch of \(m)")
        }
        if let avx2 = integerLevels[2], let avx512 = integerLevels[3] {
            XCTAssertEqual(avx512, avx2, "\(format): AVX-512\(vnni ? " + VNNI" : "") vs AVX2")
        }
    }

    /// The Q8 activation reference itself: |x − q·d| ≤ d/2, d = max|x| / 127 per block of 32,
    /// the block's largest element exact, zero blocks and padding 0.
    func testQ8ActivationBlocksNaive() {
        let k = 70
        var x = randomTensor([k], seed: 3).scalars
        for j in 32..<64 { x[j] = 0 }
        x[5] = 1e-30
        var q = [Int8](repeating: 1, count: 96), d = [Float](repeating: -1, count: 3)
        moe_q8_blocks_naive(x, Int64(k), &q, &d)
        for g in 0..<3 {
            let block = x[(32 * g)..<min(k, 32 * g + 32)], amax = block.map { abs($0) }.max()!
            XCTAssertEqual(d[g], amax / 127)
            for j in block.indices {
                XCTAssertLessThanOrEqual(abs(x[j] - Float(q[j]) * d[g]), d[g] / 2 * (1 + 1e-6), "k \(j)")
                if abs(x[j]) == amax && amax > 0 { XCTAssertEqual(abs(Int(q[j])), 127) }
            }
        }
        XCTAssertEqual(d[1], 0)
        XCTAssertEqual(Array(q[32..<64]) + Array(q[70..<96]), [Int8](repeating: 0, count: 58))
    }

    /// moe_weight_find_nonfinite on each float format: NaN, +inf and −inf at the first, a middle
    /// and the last element (unaligned start, lengths around the scan chunk), −1 when the largest
    /// finite values, zeros and subnormals are all there is.
    func testFindNonFinite() {
        let bad: [Float] = [.nan, .infinity, -.infinity]
        for format in [Format.f32, .bf16, .f16] {
            let width = format == .f32 ? 4 : 2
            let largest: Float = format == .f32 ? .greatestFiniteMagnitude : format == .f16 ? 65504 : Float(bitPattern: 0x7F7F_0000)
            for n in [1, 5, 2047, 2048, 2049, 5000] {
                var finite = randomTensor([n], seed: UInt64(n)).scalars
                finite[n / 3] = largest; finite[n / 2] = -largest; finite[n - 1] = 0x1p-140
                // element i of `values` stored in `format` one byte past an aligned address
                func stored(_ values: [Float]) -> [UInt8] {
                    var bytes = [UInt8](repeating: 0xAA, count: 1 + n * width)
                    for (i, v) in values.enumerated() {
                        switch format {
                        case .f32: withUnsafeBytes(of: v.bitPattern) { for b in 0..<4 { bytes[1 + 4 * i + b] = $0[b] } }
                        case .f16:
                            let h = Float16(v).bitPattern
                            bytes[1 + 2 * i] = UInt8(h & 0xff); bytes[2 + 2 * i] = UInt8(h >> 8)
                        default:
                            let h = UInt16(v.bitPattern >> 16) | (v.isNaN ? 0x40 : 0)
                            bytes[1 + 2 * i] = UInt8(h & 0xff); bytes[2 + 2 * i] = UInt8(h >> 8)
                        }
                    }
                    return bytes
                }
                func find(_ values: [Float]) -> Int64 {
                    stored(values).withUnsafeBytes { moe_weight_find_nonfinite($0.baseAddress! + 1, format.rawValue, Int64(n)) }
                }
                XCTAssertEqual(find(finite), -1, "\(format) n \(n) finite")
                for v in bad {
                    for at in Set([0, n / 2, n - 1]) {
                        var values = finite
                        values[at] = v
                        if at > 0 { values[at - 1] = largest }
                        XCTAssertEqual(find(values), Int64(at), "\(format) n \(n) \(v) at \(at)")
                        if at < n - 1 { values[n - 1] = v; XCTAssertEqual(find(values), Int64(at), "first of two") }
                    }
                }
            }
        }
        XCTAssertEqual(moe_weight_find_nonfinite([Float.nan], Format.q8.rawValue, 1), -1, "not a float format")
    }

    /// Quantize rounds half away from zero (the format text), including exact ties.
    func testQuantizeRoundsTiesAwayFromZero() {
        // Q8: row max 127·2⁻⁷ → s = 2⁻⁷ exactly; values (j + ½)·2⁻⁷ are ties.
        var row: [Float] = (0..<40).map { (j: Int) -> Float in
            let sign: Float = j < 20 ? 1 : -1
            return (Float(j % 20) + 0.5) * 0x1p-7 * sign
        }
        row[39] = 127 * 0x1p-7
        let q8 = Stored(row, rows: 1, cols: 40, format: .q8).dequantized()
        for j in 0..<39 { XCTAssertEqual(q8[j], (row[j] * 0x1p7).rounded(.toNearestOrAwayFromZero) * 0x1p-7, "q8 \(j)") }
        // Q4: group max 7·2⁻³ → s = 2⁻³; ties (j + ½)·2⁻³ for j < 7.
        var g: [Float] = (0..<32).map { (j: Int) -> Float in
            let sign: Float = j % 2 == 0 ? 1 : -1
            return (Float(j % 7) + 0.5) * 0x1p-3 * sign
        }
        g[31] = 7 * 0x1p-3
        let q4 = Stored(g, rows: 1, cols: 32, format: .q4).dequantized()
        for j in 0..<31 { XCTAssertEqual(q4[j], min(7, (g[j] * 8).rounded(.toNearestOrAwayFromZero)) * 0x1p-3, "q4 \(j)") }
    }

    /// Every byte value in every position of a Q4 group: the nibble order and q = nibble − 8
    /// (including −8, which quantize never writes), against the format written out here.
    func testQ4DequantizeEveryNibble() {
        let cols = 512, groups = 16 // 256 groups' worth of bytes: byte b = (i * 37 + 11) % 256
        let w = Stored([Float](repeating: 0, count: 2 * cols), rows: 2, cols: cols, format: .q4)
        var expected = [Float](repeating: 0, count: 2 * cols)
        for r in 0..<2 {
            for g in 0..<groups {
                let scale = Float16(Float(g + 1) * (r == 0 ? 0.25 : -0.03))
                w.scales.storeBytes(of: scale.bitPattern, toByteOffset: 2 * (r * groups + g), as: UInt16.self)
                for j in 0..<16 {
                    let b = UInt8(((r * 256 + g * 16 + j) * 37 + 11) % 256)
                    w.data.storeBytes(of: b, toByteOffset: r * w.rowBytes + g * 16 + j, as: UInt8.self)
                    expected[r * cols + g * 32 + j] = Float(Int(b & 0xf) - 8) * Float(scale)
                    expected[r * cols + g * 32 + 16 + j] = Float(Int(b >> 4) - 8) * Float(scale)
                }
            }
        }
        XCTAssertEqual(w.naive(), expected, "naive reference")
        forEachLevel { level in XCTAssertEqual(w.dequantized(), expected, "level \(level)") }
        checkMatmul(w, m: 3, accumulate: false, "every nibble, decode")
        checkMatmul(w, m: 9, accumulate: false, "every nibble, prefill")
    }

    // MARK: routed experts

    struct Experts {
        var t, c, f, e, k: Int
        var activation: ExpertActivation
        var x, gates: [Float]
        var route: [Int32]
        var w1, w3, w2: Stored
        var b1, b2: [Float]?

        /// Runs moe_routed_experts_infer with the plan; y starts as NaN (must be overwritten).
        func infer(threads: Int) -> [Float] {
            var offsets = [Int64](repeating: 0, count: e + 1)
            var sorted = [Int32](repeating: 0, count: t * k), position = [Int32](repeating: 0, count: t * k)
            let a = moe_dispatch_plan(&offsets, &sorted, &position, route, Int64(t), Int64(k), Int64(e))
            precondition(a >= 0)
            var y = [Float](repeating: .nan, count: t * c)
            Threads.with(threads) {
                let size = Int(moe_routed_experts_infer_workspace_size(a, Int64(c), Int64(f), Int64(e), activation.kernelValue, w1.view, w2.view))
                var ws = [Float](repeating: 0, count: size + 16)
                ws.withUnsafeMutableBufferPointer { wsp in
                    moe_routed_experts_infer(&y, wsp.baseAddress, x, gates, offsets, sorted, position, w1.view, w3.view, w2.view,
                                             b1, b2, Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), activation.kernelValue)
                }
                XCTAssertEqual(Array(ws[size...]), [Float](repeating: 0, count: 16), "workspace overrun")
            }
            return y
        }

        func naive() -> [Float] {
            var y = [Float](repeating: .nan, count: t * c)
            moe_routed_experts_infer_naive(&y, x, route, gates, w1.view, w3.view, w2.view, b1, b2,
                                           Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), activation.kernelValue)
            return y
        }

        /// The reference with Q8 activation blocks for Q4 and Q8 weights, and the bound on what the
        /// kernel's rounding of the hidden activations adds (moe_routed_experts_infer_q8act_naive).
        func naiveQ8() -> (y: [Float], bound: [Float]) {
            var y = [Float](repeating: .nan, count: t * c), bound = [Float](repeating: .nan, count: t * c)
            moe_routed_experts_infer_q8act_naive(&y, &bound, x, route, gates, w1.view, w3.view, w2.view, b1, b2,
                                                 Int64(t), Int64(c), Int64(f), Int64(e), Int64(k), activation.kernelValue)
            return (y, bound)
        }

        /// Whether the kernel takes the decode path (every expert ≤ the decode row limit).
        var decodes: Bool {
            var rows = [Int](repeating: 0, count: e)
            for r in route where r >= 0 { rows[Int(r)] += 1 }
            return rows.max()! <= Int(moe_weight_decode_max_m(w1.format.rawValue))
        }

        /// The reference for the kernel at `level` and its extra tolerance per element.
        func reference(level: Int32) -> (y: [Float], extra: [Float]) {
            let integer = [w1.format, activation == .swiglu ? w3.format : .f32, w2.format].contains {
                moe_weight_decode_rounds_x($0.rawValue) != 0
            }
            if integer && decodes {
                let (y, bound) = naiveQ8()
                return (y, bound.map { $0 * 1.01 })
            }
            return (naive(), [Float](repeating: 0, count: t * c))
        }
    }

    /// |y − ref| ≤ atol + rtol·|ref| + extra, elementwise.
    func assertWithin(_ y: [Float], _ ref: (y: [Float], extra: [Float]), atol: Float, rtol: Float, _ label: String) {
        XCTAssertEqual(y.count, ref.y.count, label)
        var worst = -1
        for i in y.indices where !(abs(y[i] - ref.y[i]) <= atol + rtol * abs(ref.y[i]) + ref.extra[i]) {
            if worst < 0 { worst = i }
        }
        if worst >= 0 { XCTFail("\(label): element \(worst) got \(y[worst]), reference \(ref.y[worst]) + \(ref.extra[worst])") }
    }

    func makeExperts(_ activation: ExpertActivation, t: Int, formats: (Format, Format, Format), seed: UInt64,
                     c: Int = 40, f: Int = 72, route: (Int, Int) -> Int32) -> Experts {
        let e = 5, k = 2
        var r: [Int32] = []
        for ti in 0..<t { for s in 0..<k { r.append(route(ti, s)) } }
        let swiglu = activation == .swiglu
        return Experts(
            t: t, c: c, f: f, e: e, k: k, activation: activation,
            x: randomTensor([t, c], seed: seed).scalars, gates: randomTensor([t, k], seed: seed + 1).scalars, route: r,
            w1: Stored(randomTensor([e * f, c], seed: seed + 2, scale: 0.3).scalars, rows: e * f, cols: c, format: formats.0),
            w3: Stored(randomTensor([e * f, c], seed: seed + 3, scale: 0.3).scalars, rows: e * f, cols: c, format: formats.1),
            w2: Stored(randomTensor([e * c, f], seed: seed + 4, scale: 0.3).scalars, rows: e * c, cols: f, format: formats.2),
            b1: swiglu ? nil : randomTensor([e, f], seed: seed + 5, scale: 0.3).scalars,
            b2: randomTensor([e, c], seed: seed + 6, scale: 0.3).scalars)
    }

    /// Decode (T = 1, T = 3) and prefill (T = 67), dropped slots, an expert without rows, mixed formats.
    func testRoutedExpertsInferMatchesNaive() {
        let formatSets: [(Format, Format, Format)] = [(.q4, .q8, .bf16), (.f32, .f32, .f32), (.f16, .bf16, .q4), (.q8, .q4, .f16)]
        forEachLevel { level in
            for activation in [ExpertActivation.swiglu, .gelu] {
                for formats in formatSets {
                    for t in [1, 3, 67] {
                        // expert 3 never chosen; every fifth slot dropped
                        let p = makeExperts(activation, t: t, formats: formats, seed: UInt64(t)) { ti, s in
                            (ti * 2 + s) % 5 == 4 ? -1 : Int32([0, 1, 2, 4][(ti * 3 + s) % 4])
                        }
                        let ref = p.reference(level: level)
                        for threads in [1, 2] {
                            let y = p.infer(threads: threads)
                            assertWithin(y, ref, atol: 2e-5, rtol: 1e-4, "level \(level) \(activation) \(formats) T=\(t) threads=\(threads)")
                            XCTAssertEqual(y, p.infer(threads: threads), "deterministic: level \(level) \(formats) T=\(t) threads=\(threads)")
                        }
                    }
                }
            }
        }
    }

    /// Decode wide enough to run in parallel (active experts × (F + C) × C ≥ the kernels'
    /// parallel threshold): the rows go out in pieces to whichever thread is free, experts with
    /// 1 to 3 rows each; against the naive reference at 1 and 2 threads, and bit-equal across them.
    func testRoutedExpertsDecodeInPiecesMatchesNaive() {
        for formats in [(Format.q4, Format.q4, Format.q4), (.bf16, .q8, .f32)] {
            let p = makeExperts(.swiglu, t: 3, formats: formats, seed: 11, c: 96, f: 200) { ti, s in Int32([0, 1, 2, 4, 0, 1][ti * 2 + s]) }
            XCTAssertTrue(p.decodes)
            forEachLevel { level in
                let ref = p.reference(level: level)
                let one = p.infer(threads: 1)
                assertWithin(one, ref, atol: 2e-5, rtol: 1e-4, "pieces \(formats) level \(level) threads 1")
                XCTAssertEqual(p.infer(threads: 2), one, "pieces \(formats) level \(level): threads 2 = threads 1")
            }
        }
    }

    func testRoutedExpertsInferEdgeCases() {
        // Every slot dropped: zeros.
        var p = makeExperts(.gelu, t: 4, formats: (.q4, .q4, .q4), seed: 3) { _, _ in -1 }
        XCTAssertEqual(p.infer(threads: 2), [Float](repeating: 0, count: 4 * 40))
        // Decode with Q4 weights everywhere (Q8 activation blocks at SIMD levels ≥ 2), SwiGLU and GELU.
        for activation in [ExpertActivation.swiglu, .gelu] {
            p = makeExperts(activation, t: 3, formats: (.q4, .q4, .q4), seed: 6) { ti, s in Int32((ti + 3 * s) % 5) }
            XCTAssertTrue(p.decodes)
            forEachLevel { level in
                for threads in [1, 2] {
                    assertWithin(p.infer(threads: threads), p.reference(level: level), atol: 2e-5, rtol: 1e-4,
                                "all q4 \(activation) level \(level) threads \(threads)")
                }
            }
        }
        // Decode with 8 one-row assignments spread over the experts; GELU-tanh and ReLU with biases.
        for activation in [ExpertActivation.geluTanh, .relu] {
            p = makeExperts(activation, t: 4, formats: (.bf16, .f32, .q8), seed: 4) { ti, s in Int32((ti * 2 + s) % 5) }
            assertWithin(p.infer(threads: 2), p.reference(level: moe_weight_simd_level()), atol: 2e-5, rtol: 1e-4, "\(activation)")
        }
        // Decode results do not depend on the thread count.
        p = makeExperts(.swiglu, t: 2, formats: (.q4, .q8, .bf16), seed: 8) { ti, s in Int32(ti + 2 * s) }
        XCTAssertEqual(p.infer(threads: 1), p.infer(threads: 2))
    }
}
