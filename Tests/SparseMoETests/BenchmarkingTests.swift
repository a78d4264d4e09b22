import XCTest
import CMoEBenchReference
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore
@testable import SparseMoEBench

final class BenchmarkingTests: XCTestCase {
    /// The grouped-GEMM roofline computes what its header says (checked against naive loops at
    /// the documented workspace offsets), accumulates into dw, and both schedules agree.
    func testGroupedReferenceMatchesNaive() throws {
        for (e, n, c, f) in [(3, 5, 7, 9), (1, 1, 1, 1), (4, 3, 17, 2)] {
            let a = e * n
            var rng = RandomGenerator(seed: 3)
            let xs = Tensor.uniform([a, c], low: -1, high: 1, using: &rng)
            let w1 = Tensor.uniform([e, f, c], low: -1, high: 1, using: &rng)
            let w3 = Tensor.uniform([e, f, c], low: -1, high: 1, using: &rng)
            let w2 = Tensor.uniform([e, c, f], low: -1, high: 1, using: &rng)
            let size = Int(moe_bench_grouped_workspace_size(Int64(e), Int64(n), Int64(c), Int64(f), 1))
            XCTAssertEqual(size, a * (4 * f + c) + 2 * a * f)
            let ws0 = Tensor.uniform([size], low: -1, high: 1, using: &rng)
            let dwStart = Tensor.uniform([e, c, f], low: -1, high: 1, using: &rng)
            var dws: [[Float]] = []
            for schedule in [ExpertSchedule.sequential, .parallel] {
                let ws = ws0.copy()
                let act = Array(UnsafeBufferPointer(start: ws.floats + 2 * a * f, count: a * f))
                let dw1 = Tensor(zeros: [e, f, c]), dw3 = Tensor(zeros: [e, f, c]), dw2 = dwStart.copy()
                // Forward only: h1, h3, eo.
                Threads.with(2) {
                    moe_bench_grouped_swiglu(ws.floats, nil, nil, nil, xs.floats, w1.floats, w3.floats, w2.floats,
                                             Int64(e), Int64(n), Int64(c), Int64(f), 0, schedule.kernelValue)
                }
                for ex in 0..<e {
                    for i in 0..<n {
                        let r = ex * n + i
                        for j in 0..<f {
                            var s1: Float = 0, s3: Float = 0
                            for k in 0..<c {
                                s1 += xs.floats[r * c + k] * w1.floats[(ex * f + j) * c + k]
                                s3 += xs.floats[r * c + k] * w3.floats[(ex * f + j) * c + k]
                            }
                            XCTAssertEqual(ws.floats[r * f + j], s1, accuracy: 1e-4)
                            XCTAssertEqual(ws.floats[a * f + r * f + j], s3, accuracy: 1e-4)
                        }
                        for k in 0..<c {
                            var s: Float = 0
                            for j in 0..<f { s += act[r * f + j] * w2.floats[(ex * c + k) * f + j] }
                            XCTAssertEqual(ws.floats[4 * a * f + r * c + k], s, accuracy: 1e-4)
                        }
                    }
                }
                // Forward + backward: dw2 += eoᵀ·act per expert, on top of its starting value.
                let eo = Array(UnsafeBufferPointer(start: ws.floats + 4 * a * f, count: a * c))
                Threads.with(2) {
                    moe_bench_grouped_swiglu(ws.floats, dw1.floats, dw3.floats, dw2.floats, xs.floats, w1.floats, w3.floats, w2.floats,
                                             Int64(e), Int64(n), Int64(c), Int64(f), 1, schedule.kernelValue)
                }
                for ex in 0..<e {
                    for k in 0..<c {
                        for j in 0..<f {
                            var s = dwStart.floats[(ex * c + k) * f + j]
                            for i in 0..<n { s += eo[(ex * n + i) * c + k] * act[(ex * n + i) * f + j] }
                            XCTAssertEqual(dw2.floats[(ex * c + k) * f + j], s, accuracy: 1e-3)
                        }
                    }
                }
                XCTAssertTrue(dw1.scalars.contains { $0 != 0 }, "dw1 accumulated")
                dws.append(dw1.scalars + dw3.scalars + dw2.scalars)
            }
            XCTAssertEqual(dws[0], dws[1], "sequential and parallel schedules run the same per-expert GEMMs")
        }
    }

    func testDenseReferenceMatchesNaive() {
        let (m, n, k) = (5, 3, 7)
        let a = randomTensor([m, k], seed: 1), b = randomTensor([k, n], seed: 2), out = Tensor(zeros: [m, n])
        moe_bench_dense_sgemm(out.floats, a.floats, b.floats, Int64(m), Int64(n), Int64(k))
        let ref = Tensor(zeros: [m, n])
        moe_matmul_forward_naive(ref.floats, a.floats, b.floats, 1, Int64(m), Int64(n), Int64(k), 0, 0, 0, 0)
        assertClose(out.scalars, ref.scalars, atol: 1e-5, rtol: 1e-5, "dense sgemm")
    }

    func testWorkloadsAndFLOPs() throws {
        XCTAssertEqual(ExpertWorkload.all.map(\.name), ["mixtral-like", "fine-grained", "switch-top1", "switch-top1-cf1.25", "wide"])
        let m = try ExpertWorkload.named("fine-grained")
        XCTAssertEqual([m.tokens, m.hiddenSize, m.intermediateSize, m.numExperts, m.topK], [2048, 512, 256, 64, 8])
        XCTAssertEqual(m.usefulForwardFLOPs, 6 * 512 * 256 * 8 * 2048)
        XCTAssertEqual(m.usefulForwardBackwardFLOPs, 3 * m.usefulForwardFLOPs)
        XCTAssertEqual(m.balancedRowsPerExpert, 256)
        XCTAssertEqual(ExpertWorkload.switchTop1Capacity.capacityFactor, 1.25)
        XCTAssertThrowsError(try ExpertWorkload.named("nope")) { XCTAssertTrue("\($0)".contains("mixtral-like")) }
        XCTAssertThrowsError(try ExpertWorkload(name: "bad", tokens: 8, hiddenSize: 4, intermediateSize: 4, numExperts: 2, topK: 3))
        XCTAssertThrowsError(try ExpertWorkload(name: "bad", tokens: 8, hiddenSize: 4, intermediateSize: 4, numExperts: 2, topK: 1, capacityFactor: 0))
        // The E sweep keeps K·F fixed and starts at a dense FFN.
        let sweep = try ExpertSweep.experts.workloads
        XCTAssertEqual(sweep.map(\.numExperts), [1, 2, 4, 8, 16, 32, 64, 128])
        XCTAssertEqual(Set(sweep.map { $0.topK * $0.intermediateSize }), [1024])
        XCTAssertEqual(sweep[0].topK, 1)
    }

    func testTimingSummary() {
        let t = TimingSummary(runsMS: [5, 1, 3, 2])
        XCTAssertEqual(t.medianMS, 2.5)
        XCTAssertEqual(t.minMS, 1)
        XCTAssertEqual(t.spread, 4 / 2.5)
        XCTAssertEqual(TimingSummary(runsMS: [4, 1, 9]).medianMS, 4)
        var calls = 0, setups = 0
        let m = TimingSummary.measure(warmup: 2, runs: 3, setup: { setups += 1 }) { calls += 1 }
        XCTAssertEqual(m.runsMS.count, 3)
        XCTAssertEqual(calls, 5)
        XCTAssertEqual(setups, 5)
    }

    /// `percentileOf` against a naive reference that finds the two ranks around p·(n − 1) by
    /// counting (no sort), on random samples with ties, and its fixed points.
    /// Paired MFU is the median of each step's MFU against its own peak (values by hand):
    /// 2 GFLOP in 10 / 20 / 40 ms is 200 / 100 / 50 GFLOP/s, against 400 / 100 / 50 → 0.5, 1, 1.
    /// The probe's rate is a plain GFLOP/s figure of its 2·n³ products.
    func testPairedMFUAndProbe() throws {
        XCTAssertEqual(try MachinePeak.pairedModelFLOPsUtilization(flops: 2e9, stepMS: [10, 20, 40], peakGFLOPS: [400, 100, 50]),
                       1.0, accuracy: 1e-12)
        XCTAssertEqual(try MachinePeak.pairedModelFLOPsUtilization(flops: 2e9, stepMS: [10, 20], peakGFLOPS: [400, 100]),
                       0.75, accuracy: 1e-12)
        XCTAssertThrowsError(try MachinePeak.pairedModelFLOPsUtilization(flops: 1, stepMS: [1, 2], peakGFLOPS: [1])) { e in
            XCTAssertTrue("\(e)".contains("one peak per step"), "\(e)")
        }
        XCTAssertThrowsError(try MachinePeak.pairedModelFLOPsUtilization(flops: 1, stepMS: [1], peakGFLOPS: [0]))
        XCTAssertThrowsError(try MachinePeak.SGEMMProbe(size: 0))
        let rate = try MachinePeak.SGEMMProbe(size: 64).gflops(repeats: 2)
        XCTAssertTrue(rate.isFinite && rate > 0, "\(rate)")
    }

    func testPercentileMatchesNaiveReference() {
        func naive(_ v: [Double], _ p: Double) -> Double {
            // The value of 0-based rank r: the smallest x with more than r values ≤ x.
            func rank(_ r: Int) -> Double { v.filter { x in v.filter { $0 <= x }.count > r }.min()! }
            let pos = p * Double(v.count - 1), lo = Int(pos.rounded(.down))
            let a = rank(lo), b = rank(min(lo + 1, v.count - 1))
            return a + (pos - Double(lo)) * (b - a)
        }
        var rng = RandomGenerator(seed: 5)
        for n in [1, 2, 3, 4, 7, 20, 100] {
            let v = (0..<n).map { _ in Double(Int(rng.uniform() * 10)) + Double(rng.uniform()) * (n > 10 ? 0 : 1) }
            for p in [0, 0.05, 0.25, 0.5, 0.9, 0.95, 0.99, 1] {
                XCTAssertEqual(percentileOf(v, p), naive(v, p), accuracy: 1e-12, "n = \(n), p = \(p)")
            }
            XCTAssertEqual(percentileOf(v, 0.5), medianOf(v), accuracy: 1e-12)
            XCTAssertEqual(percentileOf(v, 0), v.min()!)
            XCTAssertEqual(percentileOf(v, 1), v.max()!)
        }
        // Hand-worked: ranks 0…4 of [10, 20, 30, 40, 50]; p95 sits at rank 3.8.
        XCTAssertEqual(percentileOf([50, 10, 40, 20, 30], 0.95), 48, accuracy: 1e-12)
        XCTAssertEqual(TimingSummary(runsMS: [50, 10, 40, 20, 30]).percentileMS(0.25), 20)
        XCTAssertTrue(percentileOf([], 0.5).isNaN)
    }

    /// Spread = (max − min) / median, and a warning exactly for the measurements above 10 %.
    func testSpreadAndWarnings() {
        var rng = RandomGenerator(seed: 9)
        for n in [1, 2, 5, 9] {
            let v = (0..<n).map { _ in 50 + 10 * Double(rng.uniform()) }
            let sorted = v.sorted()
            let median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
            XCTAssertEqual(TimingSummary(runsMS: v).spread, (sorted.last! - sorted.first!) / median, accuracy: 1e-12)
        }
        let quiet = TimingSummary(runsMS: [100, 104, 101, 109.9, 100])   // 9.9 / 101 = 9.8 %
        let noisy = TimingSummary(runsMS: [100, 104, 101, 111, 100])     // 11 / 101 = 10.9 %
        let warnings = ExpertBenchmark.spreadWarnings([("forward", quiet), ("roofline_forward_parallel", noisy)])
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].hasPrefix("roofline_forward_parallel spread 10.9% > 10%"), warnings[0])
        XCTAssertFalse(warnings[0].contains("machine control"), warnings[0])

        // A machine control that spread too is named on the other lines, not on its own.
        let measured = [("forward", noisy), ("machine_control_forward", noisy)]
        let shared = ExpertBenchmark.spreadWarnings(measured, control: noisy)
        XCTAssertEqual(shared.count, 2)
        XCTAssertTrue(shared[0].hasSuffix("; the machine control spread 10.9% in the same rounds"), shared[0])
        XCTAssertFalse(shared[1].contains("the machine control spread"), shared[1])
        // A quiet control adds nothing.
        XCTAssertEqual(ExpertBenchmark.spreadWarnings([("forward", noisy)], control: quiet), ExpertBenchmark.spreadWarnings([("forward", noisy)]))
    }

    /// The machine control does its stated work on every thread: thread t's third block is
    /// the product of its first two (naive triple loop), whatever the thread count.
    func testMachineControlMultipliesEachThreadsBlocks() throws {
        let n = 7
        for threads in [1, 2, 3] {
            try Threads.with(threads) {
                let size = Int(moe_bench_machine_control_workspace_size(Int64(n)))
                XCTAssertEqual(size, threads * 3 * n * n)
                var rng = RandomGenerator(seed: UInt64(threads))
                var ws = (0..<size).map { _ in Float(rng.uniform()) - 0.5 }
                for t in 0..<threads { for i in 0..<(n * n) { ws[t * 3 * n * n + 2 * n * n + i] = .nan } }
                ws.withUnsafeMutableBufferPointer { moe_bench_machine_control($0.baseAddress, Int64(n), 2) }
                for t in 0..<threads {
                    let base = t * 3 * n * n
                    for i in 0..<n {
                        for j in 0..<n {
                            var want: Float = 0
                            for k in 0..<n { want += ws[base + i * n + k] * ws[base + n * n + k * n + j] }
                            XCTAssertEqual(ws[base + 2 * n * n + i * n + j], want, accuracy: 1e-5, "thread \(t) of \(threads), [\(i), \(j)]")
                        }
                    }
                }
            }
        }
        XCTAssertThrowsError(try MachineControl(n: 0))
    }

    /// The per-run counters see what they claim to: page faults on first touch of fresh
    /// memory, and a spinning thread of this process as busy.
    func testRunCountersSeeFaultsAndBusyThreads() throws {
        let bytes = 64 << 20
        let before = RunCounters.now()
        let p = try XCTUnwrap(mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(p, bytes) }
        let pages = bytes / Int(sysconf(Int32(_SC_PAGESIZE)))
        for i in stride(from: 0, to: bytes, by: 4096) { p.storeBytes(of: 1, toByteOffset: i, as: UInt8.self) }
        let faults = RunCounters.delta(from: before, to: RunCounters.now(), busy: 0).minorFaults
        // Transparent huge pages can serve 512 pages with one fault; at least one fault per 2 MiB.
        XCTAssertGreaterThanOrEqual(faults, bytes >> 21, "first touch of \(pages) pages")

        #if os(Linux)
        // A thread that spins for 300 ms of wall-clock time.
        var thread = pthread_t()
        pthread_create(&thread, nil, { _ in
            var start = timespec(), now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &start)
            repeat { clock_gettime(CLOCK_MONOTONIC, &now) } while (now.tv_sec - start.tv_sec) * 1_000_000_000 + (now.tv_nsec - start.tv_nsec) < 300_000_000
            return nil
        }, nil)
        var seen = 0
        for _ in 0..<100 where seen == 0 {
            seen = RunCounters.busyOtherThreads()
            usleep(1000)
        }
        pthread_join(thread, nil)
        XCTAssertGreaterThanOrEqual(seen, 1, "a spinning thread is running")
        #endif
    }

    /// `Threads.park()` puts the OpenMP workers to sleep well before libomp's 200 ms block
    /// time would, and the OpenBLAS reference still computes the right product after its
    /// threads were ended by it.
    func testParkSleepsWorkersAndReferencesStillWork() throws {
        try Threads.with(2) {
            let n = 192
            let a = randomTensor([n, n], seed: 1), b = randomTensor([n, n], seed: 2)
            let ref = Tensor(zeros: [n, n])
            moe_matmul_forward_naive(ref.floats, a.floats, b.floats, 1, Int64(n), Int64(n), Int64(n), 0, 0, 0, 0)
            for _ in 0..<2 {
                let out = Tensor(zeros: [n, n])
                moe_bench_dense_sgemm(out.floats, a.floats, b.floats, Int64(n), Int64(n), Int64(n))
                Threads.park()
                assertClose(out.scalars, ref.scalars, atol: 1e-3, rtol: 1e-4, "dense sgemm around a park")
            }
            _ = try matmul(a, b) // an OpenMP region: its worker spins for the block time after it
            Threads.park()
            let clock = ContinuousClock(), start = clock.now
            var busy = RunCounters.busyOtherThreads()
            while busy > 0 && clock.now - start < .milliseconds(100) {
                usleep(500)
                busy = RunCounters.busyOtherThreads()
            }
            #if os(Linux)
            XCTAssertEqual(busy, 0, "no worker still running 100 ms after park (libomp alone would spin 200 ms)")
            #endif
        }
    }

    /// Repeated thread sweeps are reported as field-by-field medians of the per-sweep points.
    func testSweepPointMedian() {
        func point(_ v: Double) -> SweepPoint {
            SweepPoint(workload: "w", tokens: 8, hiddenSize: 4, intermediateSize: 3, numExperts: 2, topK: 1, threads: 2,
                       forwardMS: v, forwardBackwardMS: 10 * v, forwardGFLOPS: 100 / v, forwardBackwardGFLOPS: 300 / v,
                       rooflineGroupedGFLOPS: v + 1, rooflineGroupedForwardBackwardGFLOPS: v + 2,
                       rooflineGroupedForwardMS: v + 3, rooflineGroupedForwardBackwardMS: v + 4)
        }
        let m = SweepPoint.median([point(4), point(1), point(2), point(8)])
        XCTAssertEqual(m.forwardMS, 3)                 // (2 + 4) / 2
        XCTAssertEqual(m.forwardBackwardMS, 30)
        XCTAssertEqual(m.forwardGFLOPS, 37.5)          // (25 + 50) / 2
        XCTAssertEqual(m.forwardBackwardGFLOPS, 112.5)
        XCTAssertEqual(m.rooflineGroupedGFLOPS, 4)
        XCTAssertEqual(m.rooflineGroupedForwardBackwardGFLOPS, 5)
        XCTAssertEqual(m.rooflineGroupedForwardMS, 6)
        XCTAssertEqual(m.rooflineGroupedForwardBackwardMS, 7)
        XCTAssertEqual(m.workload, "w")
        let t = ThreadScalingPoint(workload: "w", threads: 2, sweeps: 4, single: point(6), multi: point(3),
                                   forwardSpeedupPaired: 1.9, forwardBackwardSpeedupPaired: 1.8)
        XCTAssertEqual(t.forwardSpeedup, 2)
        XCTAssertEqual(t.rooflineForwardBackwardSpeedup, 10.0 / 7.0)
    }

    /// A whole benchmark of a tiny workload: every field is measured, and the JSON carries the
    /// keys the issue asks for.
    func testBenchmarkRunSmallWorkload() throws {
        let w = try ExpertWorkload(name: "tiny", tokens: 24, hiddenSize: 8, intermediateSize: 5, numExperts: 4, topK: 2)
        var o = ExpertBenchmarkOptions()
        o.runs = 1; o.warmup = 0; o.denseTotalRuns = 1
        var phases: [String] = []
        let r = try ExpertBenchmark.run(w, options: o) { phases.append($0) }
        XCTAssertFalse(phases.isEmpty)
        XCTAssertEqual(r.usefulForwardGFLOP, 6 * 8 * 5 * 2 * 24 / 1e9, accuracy: 1e-15)
        for v in [r.forwardMS, r.forwardBackwardMS, r.rooflineGroupedGFLOPS, r.rooflineDenseGFLOPS, r.forwardVsRoofline,
                  r.balancedForwardMS, r.layerForwardMS!, r.denseActiveForwardMS!, r.denseTotalForwardBackwardMS!] {
            XCTAssertTrue(v.isFinite && v > 0, "\(v)")
        }
        XCTAssertEqual(r.forwardGFLOPS, w.usefulForwardFLOPs / (r.forwardMS * 1e6), accuracy: 1e-9)
        let json = String(decoding: try JSONEncoder().encode(r), as: UTF8.self)
        for key in ["workload", "forward_ms", "forward_backward_ms", "forward_gflops", "forward_backward_gflops",
                    "roofline_grouped_gflops", "roofline_dense_gflops", "forward_vs_roofline", "forward_backward_vs_roofline"] {
            XCTAssertTrue(json.contains("\"\(key)\""), key)
        }
        let points = try ExpertBenchmark.quick(w, runs: 1, warmup: 0, threadCounts: [1, 2])
        XCTAssertEqual(points.map(\.threads), [1, 2])
        XCTAssertTrue(points.allSatisfy { $0.forwardMS > 0 && $0.rooflineGroupedForwardBackwardMS > 0 })
    }

    func testReferenceThroughputSkipsOtherLines() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ref-\(UUID().uuidString).jsonl")
        try Data("""
        {"workload": "wide", "forward_gflops": 100.5, "forward_backward_gflops": 50, "extra": 1}
        {"model": "tiny-moe", "tokens_per_second": 7000}

        """.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let r = try ReferenceThroughput.load(jsonLines: url.path)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r[0].workload, "wide")
        XCTAssertEqual(r[0].forwardGFLOPS, 100.5)
        XCTAssertThrowsError(try ReferenceThroughput.load(jsonLines: "/nonexistent/x.jsonl"))
    }
}
