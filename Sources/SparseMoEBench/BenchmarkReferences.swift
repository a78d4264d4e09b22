internal import CMoEBenchReference
import SparseMoE

/// The roofline `routedExperts` is held against (C `moe_bench_grouped_swiglu`): the matrix
/// products of E SwiGLU experts with perfectly balanced routing, N = T·K/E rows each, as
/// plain OpenBLAS sgemm calls on preallocated, already-gathered buffers — no plan, gather,
/// activation or combine. Forward: 3 GEMMs per expert (6·E·N·C·F FLOPs); forward + backward:
/// 9 GEMMs (18·E·N·C·F FLOPs). All buffers are allocated and touched once, here.
public final class GroupedGEMMReference {
    public let numExperts: Int, rowsPerExpert: Int, hiddenSize: Int, intermediateSize: Int
    private let xs: Tensor, w1: Tensor, w3: Tensor, w2: Tensor, dw1: Tensor, dw3: Tensor, dw2: Tensor
    private let workspace: Tensor

    /// E experts of width C and hidden F with N rows each.
    public init(numExperts e: Int, rowsPerExpert n: Int, hiddenSize c: Int, intermediateSize f: Int, seed: UInt64 = 7) throws {
        let op = "GroupedGEMMReference"
        try Check.argument(e >= 1 && n >= 0 && c >= 1 && f >= 1, op,
                           "needs E ≥ 1, N ≥ 0, C ≥ 1, F ≥ 1; got E = \(e), N = \(n), C = \(c), F = \(f)")
        (numExperts, rowsPerExpert, hiddenSize, intermediateSize) = (e, n, c, f)
        var rng = RandomGenerator(seed: seed)
        xs = Tensor.uniform([e * n, c], low: -1, high: 1, using: &rng)
        w1 = Tensor.uniform([e, f, c], low: -0.05, high: 0.05, using: &rng)
        w3 = Tensor.uniform([e, f, c], low: -0.05, high: 0.05, using: &rng)
        w2 = Tensor.uniform([e, c, f], low: -0.05, high: 0.05, using: &rng)
        dw1 = Tensor(zeros: [e, f, c]); dw3 = Tensor(zeros: [e, f, c]); dw2 = Tensor(zeros: [e, c, f])
        let size = Int(moe_bench_grouped_workspace_size(Int64(e), Int64(n), Int64(c), Int64(f), 1))
        // Small finite values everywhere: garbage could hold denormals or NaNs that slow BLAS.
        workspace = Tensor.uniform([max(size, 1)], low: -0.1, high: 0.1, using: &rng)
    }

    /// Useful FLOPs of one run: 6·E·N·C·F forward, three times that with backward.
    public func flops(backward: Bool) -> Double {
        6 * Double(numExperts) * Double(rowsPerExpert) * Double(hiddenSize) * Double(intermediateSize) * (backward ? 3 : 1)
    }

    /// Runs the GEMMs once on `Threads.count` threads. `schedule`: `.sequential` (experts one
    /// after another, threaded BLAS) or `.parallel` (experts in parallel, single-threaded BLAS);
    /// `.auto` runs `.parallel` when E ≥ threads, else `.sequential`.
    public func run(backward: Bool, schedule: ExpertSchedule) {
        var s = schedule
        if s == .auto { s = numExperts >= Threads.count ? .parallel : .sequential }
        moe_bench_grouped_swiglu(workspace.floats, dw1.floats, dw3.floats, dw2.floats,
                                 xs.floats, w1.floats, w3.floats, w2.floats,
                                 Int64(numExperts), Int64(rowsPerExpert), Int64(hiddenSize), Int64(intermediateSize),
                                 backward ? 1 : 0, s.kernelValue)
    }
}

/// One dense OpenBLAS sgemm, out `[M, N]` = a `[M, K]` · b `[K, N]` (2·M·N·K FLOPs) on
/// preallocated buffers (C `moe_bench_dense_sgemm`): the dense-GEMM reference of a benchmark.
public final class DenseGEMMReference {
    public let m: Int, n: Int, k: Int
    private let a: Tensor, b: Tensor, out: Tensor

    public init(m: Int, n: Int, k: Int, seed: UInt64 = 11) throws {
        try Check.argument(m >= 1 && n >= 1 && k >= 1, "DenseGEMMReference", "needs M, N, K ≥ 1; got M = \(m), N = \(n), K = \(k)")
        (self.m, self.n, self.k) = (m, n, k)
        var rng = RandomGenerator(seed: seed)
        a = Tensor.uniform([m, k], low: -1, high: 1, using: &rng)
        b = Tensor.uniform([k, n], low: -1, high: 1, using: &rng)
        out = Tensor(repeating: 0, shape: [m, n])
    }

    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }

    /// One product on `Threads.count` BLAS threads.
    public func run() {
        moe_bench_dense_sgemm(out.floats, a.floats, b.floats, Int64(m), Int64(n), Int64(k))
    }
}

/// The machine control of a benchmark (C `moe_bench_machine_control`): every thread multiplies
/// its own n×n blocks `reps` times (2·n³·reps FLOPs per thread), sharing nothing with the
/// others and with no barrier but the last. Its work never changes, so the spread of its runs,
/// interleaved with a measurement's, is the machine's own noise in those rounds: a spread the
/// control shares is not the measured code's.
public final class MachineControl {
    public let n: Int, reps: Int
    /// The thread count the workspace was sized for (`Threads.count` at initialisation).
    public let threads: Int
    private let workspace: Tensor

    /// Blocks of n×n (default 256: 0.8 MB per thread, in L2/L3) multiplied `reps` times.
    public init(n: Int = 256, reps: Int = 64, seed: UInt64 = 13) throws {
        try Check.argument(n >= 1 && reps >= 1, "MachineControl", "needs n ≥ 1 and reps ≥ 1; got n = \(n), reps = \(reps)")
        (self.n, self.reps, threads) = (n, reps, Threads.count)
        var rng = RandomGenerator(seed: seed)
        let size = Int(moe_bench_machine_control_workspace_size(Int64(n)))
        workspace = Tensor.uniform([size], low: -0.1, high: 0.1, using: &rng)
    }

    /// One run on `Threads.count` threads (at most the count at initialisation).
    public func run() {
        precondition(Threads.count <= threads, "MachineControl: \(Threads.count) threads, sized for \(threads)")
        moe_bench_machine_control(workspace.floats, Int64(n), Int64(reps))
    }
}
