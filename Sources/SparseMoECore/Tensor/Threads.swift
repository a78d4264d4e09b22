internal import CMoEKernels

/// The one thread-count knob of the library.
///
/// `Threads.count = n` sets the OpenMP thread count of the C kernels, the one pool
/// of threads: OpenBLAS always runs single-threaded, large GEMMs are split across the
/// `n` OpenMP threads, and kernels that run work items in parallel (batches, heads,
/// experts) give each item one thread. The total number of busy threads never exceeds
/// `n`. The command-line tool sets it from `--threads` or `SPARSEMOE_NUM_THREADS`.
///
/// For a fixed thread count every kernel is deterministic: the same inputs give
/// bit-identical outputs (unless `adaptive` teams shrink it on a busy machine).
public enum Threads {
    /// Current thread count (defaults to the number of cores OpenMP sees).
    public static var count: Int {
        get { Int(moe_get_num_threads()) }
        set { moe_set_num_threads(Int32(max(1, newValue))) }
    }

    /// Adaptive teams (default off; `SPARSEMOE_ADAPTIVE_THREADS=1` turns them on): each
    /// parallel region runs on at most as many of the `count` threads as there are free
    /// cores, as the OpenMP runtime counts them. On a machine another process shares, a region
    /// then does not wait at its barriers for a thread that has no core: with one of two cores
    /// busy elsewhere, 2 threads decode about 2× faster than without. On a quiet machine the
    /// runtime's checks cost about a quarter of tiny-model decode speed, hence off by default
    /// (docs/serving.md, "Sharing the machine"). Results stay correct (kernels split work by
    /// the team they get) but are not bit-identical from run to run on a busy machine, since a
    /// few reductions round differently on 1 and 2 threads.
    public static var adaptive: Bool {
        get { moe_adaptive_threads() != 0 }
        set { moe_set_adaptive_threads(newValue ? 1 : 0) }
    }

    /// The size of the team a parallel region gets now: `count`, or fewer with `adaptive`
    /// teams on a busy machine.
    public static var currentTeam: Int { Int(moe_threads_team_probe()) }

    /// Hardware threads available.
    public static var available: Int { Int(moe_available_threads()) }

    /// The SIMD path the weight kernels chose for this CPU at run time: "AVX-512", "AVX2"
    /// or "scalar" (`SPARSEMOE_SIMD=scalar|avx2|avx512` may lower it).
    public static var simdPath: String {
        switch moe_weight_simd_level() {
        case 3: return "AVX-512"
        case 2: return "AVX2"
        default: return "scalar"
        }
    }

    /// Puts to sleep the worker threads that keep spinning after parallel work (C
    /// `moe_threads_park`): OpenMP's workers spin for `KMP_BLOCKTIME` (200 ms by default)
    /// after every parallel region, and OpenBLAS's own threads, which only the benchmark
    /// references use, spin about 0.1 s after each call. On a machine with as many cores as
    /// threads, a spinning worker of one runtime takes a core from the next piece of work of
    /// the other. Benchmarks call this before every timed run; the next parallel region wakes
    /// the workers again (microseconds).
    public static func park() { moe_threads_park() }

    /// Runs `body` with the thread count set to `n`, restoring the previous count after.
    public static func with<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        let old = count
        count = n
        defer { count = old }
        return try body()
    }
}
