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
/// bit-identical outputs, whatever the machine's load (see `adaptive`).
public enum Threads {
    /// Current thread count (defaults to the number of cores OpenMP sees).
    public static var count: Int {
        get { Int(moe_get_num_threads()) }
        set { moe_set_num_threads(Int32(max(1, newValue))) }
    }

    /// Load-aware teams (default on; `SPARSEMOE_ADAPTIVE_THREADS=0` turns them off). OpenMP
    /// threads wait for each other at the end of every parallel region, so on a machine where
    /// another process keeps a core busy, `count` threads that outnumber the free cores spend
    /// most of their time spinning at barriers for a thread that has no core (2 threads decoded
    /// 5× slower than 1 with one of two cores busy). With adaptive teams the library measures,
    /// at most every 50 ms, the CPU time other processes used over the last quarter second
    /// (`/proc/stat` busy time minus this process's CPU time) and runs each parallel region on
    /// at most as many threads as cores are left: team = clamp(cores − ⌊cores used by others +
    /// 0.1⌋, 1, count) (a core counts as taken when others kept it ≥ 90 % busy; a neighbour that
    /// runs part of the time costs long regions less than halving the team would, and for short
    /// ones, such as a server's decode steps, `TeamTuner` measures which team is faster).
    /// Work is always split by `count`, never by the team (a smaller team runs the
    /// same pieces in turn), so results are bit-identical under any load.
    public static var adaptive: Bool {
        get { moe_adaptive_threads() != 0 }
        set { moe_set_adaptive_threads(newValue ? 1 : 0) }
    }

    /// The size of the team a parallel region gets now: `count`, or fewer with `adaptive`
    /// teams on a busy machine.
    public static var currentTeam: Int { Int(moe_threads_team_probe()) }

    /// The cores other processes used over the last load window (0 before the first).
    public static var coresUsedByOthers: Double { Double(moe_threads_others_cores_x100()) / 100 }

    /// The team `adaptive` gives `requested` threads on `cores` cores while other processes
    /// use `others` cores on average.
    package static func team(requested: Int, cores: Int, others: Double) -> Int {
        Int(moe_threads_team_for_load(Int32(requested), Int32(cores), Int32((others * 100).rounded())))
    }

    /// Caps every team at `n` threads whatever the load (nil: no cap), so that tests can run
    /// the kernels on teams smaller than `count`.
    package static func limitTeams(to n: Int?) {
        moe_threads_set_team_limit(Int32(n ?? 0))
    }

    /// Hardware threads available.
    public static var available: Int { Int(moe_available_threads()) }

    /// The SIMD path the weight kernels chose for this CPU at run time: "AVX-512 + VNNI"
    /// (the int8/int4 kernels use vpdpbusd), "AVX-512", "AVX2" or "scalar"
    /// (`SPARSEMOE_SIMD=scalar|avx2|avx512` may lower it).
    public static var simdPath: String {
        switch moe_weight_simd_level() {
        case 3: return moe_weight_simd_vnni() != 0 ? "AVX-512 + VNNI" : "AVX-512"
        case 2: return "AVX2"
        default: return "scalar"
        }
    }

    /// OpenBLAS's kernel set ("SkylakeX", "Haswell", …) and whether SparseMoE chose it over
    /// the generic SSE3 fallback ("Prescott") an OpenBLAS older than the CPU picks
    /// (`OPENBLAS_CORETYPE` set by the user is left alone).
    public static var blasCore: (name: String, chosenBySparseMoE: Bool) {
        var changed: Int32 = 0
        let name = String(cString: moe_blas_core(&changed))
        return (name, changed != 0)
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
