import XCTest
@testable import SparseMoECore
@testable import SparseMoENN

/// Ops whose output is not zero-filled first (`Tensor(uninitialized:)`) must write every element:
/// an op run right after its output's pool block was filled with NaN, and again after it was
/// filled with 7, gives the same values, none of them NaN. Shapes are large enough (≥ 256 KiB)
/// for the pool to hand the poisoned block back, and odd, with partial rotary widths and
/// causal masks, so a kernel that skips a tail or a masked region fails.
final class UninitializedOutputTests: XCTestCase {
    /// Fills the pool's next block of `elements` floats with `value`: acquired, written, released.
    private func poison(_ elements: Int, with value: Float) {
        let bytes = elements * MemoryLayout<Float>.stride
        let p = StoragePool.shared.acquire(bytes)
        p.bindMemory(to: Float.self, capacity: elements).update(repeating: value, count: elements)
        StoragePool.shared.release(p, bytes: bytes)
    }

    /// Runs `op` after poisoning with NaN and with 7; both outputs must agree and hold no NaN.
    private func check(_ name: String, outputElements: Int, _ op: () -> Tensor, file: StaticString = #filePath,
                       line: UInt = #line) {
        XCTAssertGreaterThanOrEqual(outputElements * 4, StoragePool.minimumBytes, "\(name): too small to be pooled",
                                    file: file, line: line)
        poison(outputElements, with: .nan)
        let a = withNoGrad { op() }.scalars
        poison(outputElements, with: 7)
        let b = withNoGrad { op() }.scalars
        XCTAssertEqual(a.count, outputElements, name, file: file, line: line)
        XCTAssertFalse(a.contains { $0.isNaN }, "\(name): an element was left unwritten (NaN from the pool)", file: file, line: line)
        if let i = a.indices.first(where: { !(a[$0] == b[$0] || (a[$0].isNaN && b[$0].isNaN)) }) {
            XCTFail("\(name): element \(i) is \(a[i]) after a NaN-filled block, \(b[i]) after a 7-filled one", file: file, line: line)
        }
    }

    func testOpsWriteEveryOutputElement() {
        let rows = 517, cols = 131  // 67,727 elements
        let x = randomTensor([rows, cols], seed: 1), y = randomTensor([rows, cols], seed: 2)
        let row = randomTensor([cols], seed: 3), w = randomTensor([cols], seed: 4)
        check("add", outputElements: rows * cols) { add(x, y) }
        check("add broadcast", outputElements: rows * cols) { add(x, row) }
        check("subtract", outputElements: rows * cols) { subtract(x, y) }
        check("multiply", outputElements: rows * cols) { multiply(x, y) }
        check("multiply broadcast", outputElements: rows * cols) { multiply(x, row) }
        check("scale", outputElements: rows * cols) { scale(x, by: 0.5) }
        check("silu", outputElements: rows * cols) { silu(x) }
        check("gelu", outputElements: rows * cols) { gelu(x) }
        check("relu", outputElements: rows * cols) { relu(x) }
        check("swiglu", outputElements: rows * cols) { swiglu(x, y) }
        check("rmsNorm", outputElements: rows * cols) { rmsNorm(x, weight: w) }
        check("layerNorm", outputElements: rows * cols) { layerNorm(x, weight: w, bias: row) }
        check("softmax", outputElements: rows * cols) { softmax(x) }
        check("logSoftmax", outputElements: rows * cols) { logSoftmax(x) }
        let k = randomTensor([cols, 129], seed: 5)
        check("matmul", outputElements: rows * 129) { matmul(x, k) }
        check("matmul bf16", outputElements: rows * 129) { matmul(x, k, precision: .bfloat16) }

        // [B, T, H, D] with a partial rotary width: the unrotated tail is copied
        let q = randomTensor([3, 97, 5, 48], seed: 6), kk = randomTensor([3, 97, 5, 48], seed: 7)
        let v = randomTensor([3, 97, 5, 48], seed: 8)
        for style in [RotaryStyle.halfSplit, .interleaved] {
            let rope = RotaryEmbedding(rotaryDim: 32, style: style)
            check("rope \(style)", outputElements: q.count) { rope(q) }
        }
        for causal in [true, false] {
            check("attention causal \(causal)", outputElements: 3 * 97 * 5 * 48) { attention(q, kk, v, causal: causal) }
        }
    }

    /// The attention probabilities kept for backward (`[B, H, T, S]`, masked keys written as 0)
    /// are not zero-filled either: gradients after a NaN-poisoned pool equal those after a clean one.
    func testAttentionBackwardAfterPoisonedPool() {
        let (b, t, h, d) = (2, 131, 4, 32)  // probs: 2·4·131·131 = 137,288 floats
        func grads(_ value: Float) -> [[Float]] {
            poison(b * h * t * t, with: value)
            let q = randomTensor([b, t, h, d], seed: 11), k = randomTensor([b, t, h, d], seed: 12)
            let v = randomTensor([b, t, h, d], seed: 13)
            for p in [q, k, v] { p.requiresGrad = true }
            sum(attention(q, k, v, causal: true)).backward()
            return [q, k, v].map { $0.grad!.scalars }
        }
        let poisoned = grads(.nan), clean = grads(7)
        XCTAssertFalse(poisoned.joined().contains { $0.isNaN }, "NaN reached the gradients from an unwritten probability")
        XCTAssertTrue(poisoned == clean, "gradients depend on what the pool block held")
    }

    /// Backward kernels write a tensor's first gradient instead of zero-filling it and adding
    /// (`Tensor.gradForWriting`): with several NaN-poisoned pool blocks of every gradient's
    /// size, the gradients equal those accumulated into zero-initialised ones (the old path,
    /// taken when a gradient exists already) and hold no NaN. Covers matmul (all transposes, a
    /// batch sharing B, x·x), add/subtract (broadcast, x + x), rope (partial width), rmsNorm,
    /// attention (causal, grouped heads, more keys than queries) and the routed experts
    /// (tokens dropped by capacity).
    func testFreshGradientsAreWrittenInFull() throws {
        func poisonBlocks(_ elementCounts: [Int]) {
            for n in Set(elementCounts) where n * 4 >= StoragePool.minimumBytes {
                let bytes = n * 4
                let blocks = (0..<4).map { _ in StoragePool.shared.acquire(bytes) }
                for p in blocks { p.bindMemory(to: Float.self, capacity: n).update(repeating: .nan, count: n) }
                for p in blocks { StoragePool.shared.release(p, bytes: bytes) }
            }
        }
        /// Gradients of `inputs` after `loss`, fresh (poisoned pool) and accumulated into zeros.
        func check(_ name: String, _ inputs: [Tensor], _ loss: () throws -> Tensor) rethrows {
            for x in inputs { x.requiresGrad = true; x.zeroGrad() }
            poisonBlocks(inputs.map(\.count))
            try loss().backward()
            let fresh = inputs.map { $0.grad!.scalars }
            for x in inputs { x.grad = Tensor(zeros: x.shape) }
            try loss().backward()
            for (i, x) in inputs.enumerated() {
                XCTAssertFalse(fresh[i].contains { $0.isNaN }, "\(name): input \(i) kept a NaN of the pool")
                XCTAssertEqual(fresh[i], x.grad!.scalars, "\(name): input \(i), fresh vs accumulated")
                x.requiresGrad = false
            }
        }
        let (rows, cols) = (517, 131)
        let x = randomTensor([rows, cols], seed: 1), y = randomTensor([rows, cols], seed: 2)
        let row = randomTensor([cols], seed: 3), w = randomTensor([cols, 129], seed: 4), wt = randomTensor([129, cols], seed: 5)
        let dy = randomTensor([rows, 129], seed: 6)
        func weighted(_ t: Tensor, _ d: Tensor) -> Tensor { sum(multiply(t, d)) }
        check("matmul", [x, w]) { weighted(matmul(x, w), dy) }
        check("matmul Bᵀ", [x, wt]) { weighted(matmul(x, wt, transposeB: true), dy) }
        let xt = randomTensor([cols, rows], seed: 7)
        check("matmul Aᵀ", [xt, w]) { weighted(matmul(xt, w, transposeA: true), dy) }
        let batch = randomTensor([3, 173, cols], seed: 8)
        check("matmul batch, shared B", [batch, w]) { sum(matmul(batch, w)) }
        let square = randomTensor([300, 300], seed: 9)
        check("matmul x·x", [square]) { sum(matmul(square, square)) }
        check("add", [x, y]) { weighted(add(x, y), y) }
        check("subtract broadcast", [x, row]) { weighted(subtract(x, row), y) }
        check("add x + x", [x]) { weighted(add(x, x), y) }
        check("rmsNorm", [x, row]) { weighted(rmsNorm(x, weight: row), y) }
        let q = randomTensor([2, 97, 6, 48], seed: 10)
        for style in [RotaryStyle.halfSplit, .interleaved] {
            check("rope \(style)", [q]) { weighted(RotaryEmbedding(rotaryDim: 32, style: style)(q), q) }
        }
        let k = randomTensor([2, 131, 2, 48], seed: 11), v = randomTensor([2, 131, 2, 40], seed: 12)
        for causal in [true, false] {
            check("attention causal \(causal)", [q, k, v]) { sum(attention(q, k, v, causal: causal)) }
        }
        let s = randomTensor([2, 97, 4, 48], seed: 13)
        check("attention(s, s, s)", [s]) { sum(attention(s, s, s, causal: true)) }
        var rng = RandomGenerator(seed: 14)
        let router = try TopKRouter.switchTop1(hiddenSize: cols, numExperts: 4, capacityFactor: 0.5, rng: &rng)
        let layer = try MoELayer(router: router, experts: try Experts(kind: .swiglu, numExperts: 4, hiddenSize: cols, intermediateSize: 96, rng: &rng),
                                 losses: try MoELossConfig(), rng: &rng)
        try check("routed experts, tokens dropped", [x] + layer.parameters) {
            var ctx = RoutingContext()
            return weighted(try layer(x, context: &ctx).output, y)
        }
    }
}
