import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore

final class EmbeddingTests: XCTestCase {
    func testForwardGathersRows() throws {
        for (v, c, idShape) in [(1, 1, [1]), (7, 3, [2, 3]), (50, 17, [5]), (9, 33, [2, 3, 4])] {
            let table = randomTensor([v, c], seed: 50)
            var rng = RandomGenerator(seed: 51)
            let ids = (0..<idShape.reduce(1, *)).map { _ in Int32(rng.int(below: v)) }
            let out = embedding(table, Tensor(indices: ids, shape: idShape))
            XCTAssertEqual(out.shape, idShape + [c])
            let t = table.scalars
            XCTAssertEqual(out.scalars, ids.flatMap { t[Int($0) * c..<(Int($0) + 1) * c] })
        }
    }

    func testGradients() throws {
        let table = randomTensor([7, 5], seed: 52)
        let ids = Tensor(indices: [3, 0, 3, 6, 3, 1], shape: [2, 3])  // 3 repeats
        _ = try checkGradients("embedding", inputs: [table]) { embedding($0[0], ids) }
        let single = randomTensor([1, 1], seed: 53)
        _ = try checkGradients("embedding [1,1]", inputs: [single]) { embedding($0[0], Tensor(indices: [0, 0], shape: [2])) }
    }

    /// Repeated ids accumulate; the parallel (column-split) path equals the naive loop
    /// bit for bit, for 1 and 2 threads.
    func testBackwardMatchesNaive() throws {
        let (v, c, n) = (40, 131, 700)  // 91 700 gradient elements: parallel path, odd width
        let table = randomTensor([v, c], seed: 54)
        var rng = RandomGenerator(seed: 55)
        let ids = Tensor(indices: (0..<n).map { _ in Int32(rng.int(below: v)) }, shape: [n])
        let g = randomTensor([n, c], seed: 56)
        var expected = [Float](repeating: 0.5, count: v * c)
        moe_embedding_backward_naive(&expected, g.floats, ids.int32s, Int64(n), Int64(c))
        for threads in [1, 2] {
            Threads.with(threads) {
                table.requiresGrad = true
                table.grad = Tensor(repeating: 0.5, shape: [v, c])
                embedding(table, ids).backward(gradient: g)
                XCTAssertEqual(table.grad!.scalars, expected, "\(threads) threads")
            }
        }
    }

    /// Backward uses the ids seen by forward even if the caller reuses the id buffer.
    func testBackwardImmuneToReusedIds() throws {
        let table = randomTensor([4, 2], seed: 57)
        table.requiresGrad = true
        let ids = Tensor(indices: [1, 1], shape: [2])
        let out = embedding(table, ids)
        ids.int32s[0] = 3
        out.sum().backward()
        XCTAssertEqual(table.grad!.scalars, [0, 0, 2, 2, 0, 0, 0, 0])
    }

    func testBadInput() {
        let table = Tensor(zeros: [50, 4])
        XCTAssertThrowsError(try Check.embedding(table, Tensor(indices: [3, 57], shape: [2]))) { e in
            XCTAssertTrue("\(e)".contains("57") && "\(e)".contains("V = 50"), "\(e)")
        }
        XCTAssertThrowsError(try Check.embedding(table, Tensor(indices: [-1], shape: [1]))) { e in
            XCTAssertTrue("\(e)".contains("-1"), "\(e)")
        }
        XCTAssertThrowsError(try Check.embedding(table, Tensor(zeros: [2]))) { e in
            XCTAssertTrue("\(e)".contains("int32"), "\(e)")
        }
        XCTAssertThrowsError(try Check.embedding(Tensor(zeros: [50]), Tensor(indices: [1], shape: [1]))) { e in
            XCTAssertTrue("\(e)".contains("[50]"), "\(e)")
        }
    }
}
