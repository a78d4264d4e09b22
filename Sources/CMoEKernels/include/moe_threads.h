#ifndef MOE_THREADS_H
#define MOE_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Sets the thread count used by every kernel: OpenMP parallel regions, including the
/// GEMM splits of moe_sgemm (OpenBLAS itself stays single-threaded). n < 1 is treated as 1.
void moe_set_num_threads(int n);

/// The thread count set by moe_set_num_threads (initially the OpenMP default).
int moe_get_num_threads(void);

/// Load-aware teams (on by default; SPARSEMOE_ADAPTIVE_THREADS=0 or moe_set_adaptive_threads(0)
/// turn them off). OpenMP threads wait for each other at the end of every parallel region; on
/// a machine where another process keeps a core busy, a region's thread that has no core makes
/// the others spin at the barrier for a whole scheduler slice, so 2 threads end up far slower
/// than 1. The library therefore measures, at most every 50 ms and at a kernel's entry, the
/// CPU time other processes used over the last quarter second (the machine's busy time from
/// /proc/stat minus this process's CPU time), and runs its parallel regions on at most as many
/// threads as there are cores left:
///   team = clamp(cores − ⌊cores the others used + 0.1⌋, 1, thread count):
/// a core counts as taken when others kept it busy ≥ 90 % of the time (a neighbour that runs
/// part of the time, such as a load generator waiting on our output, costs a team of 2 less
/// than halving the team would; a spinning one costs it 5×).
/// Every split of work, and so every result, follows the thread count asked for, never the
/// team: a kernel whose team is smaller runs the same pieces one after the other, and its
/// output is bit-identical. Without /proc the team is the thread count.
int moe_adaptive_threads(void);
void moe_set_adaptive_threads(int on);

/// The team size for `requested` threads on `cpus` cores while other processes use
/// others_x100 / 100 cores on average (the rule above; exposed for tests).
int moe_threads_team_for_load(int requested, int cpus, int others_x100);

/// Caps every team at n threads (n ≤ 0: no cap), whatever the load: tests use it to run the
/// kernels on teams smaller than the thread count, and TeamTuner to try team sizes.
void moe_threads_set_team_limit(int n);
/// The cap set last (0: none).
int moe_threads_team_limit(void);

/// The cores other processes used over the last window, × 100 (0 before the first).
int moe_threads_others_cores_x100(void);

/// The size of the team a parallel region gets now (runs an empty region): the thread count,
/// or fewer on a busy machine.
int moe_threads_team_probe(void);

/// Number of hardware threads the OpenMP runtime sees.
int moe_available_threads(void);

/// Puts to sleep the worker threads that keep spinning after parallel work, so that they do
/// not take a core from whatever runs next: OpenMP's workers (libomp spins for
/// KMP_BLOCKTIME, 200 ms by default, after every parallel region) and OpenBLAS's own
/// threads (the pthread build spins about 0.1 s after every multi-threaded call; only the
/// benchmark references make such calls, the kernels keep OpenBLAS on one thread).
/// The next parallel region wakes the OpenMP workers; the next multi-threaded OpenBLAS call
/// starts OpenBLAS's threads again. Costs a few microseconds; call it between unrelated
/// pieces of work (benchmark runs), not inside a loop of kernels.
void moe_threads_park(void);

/// OpenBLAS's kernel set ("SkylakeX", "Haswell", …; "unknown" for another BLAS), after the
/// one check every GEMM entry point makes first (moe_blas_core.c): an OpenBLAS too old for
/// the CPU falls back to its generic SSE3 kernels ("Prescott"); unless OPENBLAS_CORETYPE is
/// set, the kernels the CPU supports are chosen instead. *changed (may be NULL) = 1 when so.
const char *moe_blas_core(int *changed);
void moe_blas_core_init(void);

#ifdef __cplusplus
}
#endif
#endif
