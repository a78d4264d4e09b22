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

/// Adaptive teams (off by default; SPARSEMOE_ADAPTIVE_THREADS=1 or moe_set_adaptive_threads(1)
/// turn them on): every parallel region asks the OpenMP runtime for a team no larger than the
/// cores that are free (libomp's dynamic adjustment: it counts the machine's running threads,
/// at most once a second). With another process busy on one of two cores, a region then runs
/// on one thread instead of waiting at its barriers for a thread that has no core. Kernels
/// split their work by the team they get, so results stay correct, but a few reductions round
/// differently on 1 and 2 threads: with adaptive teams, results are no longer bit-identical
/// from run to run on a busy machine. The count asked for stays moe_get_num_threads().
int moe_adaptive_threads(void);
void moe_set_adaptive_threads(int on);

/// The size of the team a parallel region gets now (runs an empty region): the thread count,
/// or fewer with adaptive teams on a busy machine.
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

#ifdef __cplusplus
}
#endif
#endif
