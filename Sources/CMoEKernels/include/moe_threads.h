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

/// Adaptive teams (on by default; SPARSEMOE_ADAPTIVE_THREADS=0 turns them off): every
/// parallel region asks the OpenMP runtime for a team no larger than the cores that are free
/// (libomp's dynamic adjustment: it counts the machine's running threads, at most once a
/// second). With another process busy on one of two cores, a region then runs on one thread
/// instead of waiting at its barriers for a thread that has no core. Kernels split their work
/// by the team they get, so results are the same; the count asked for stays
/// moe_get_num_threads().
int moe_adaptive_threads(void);
void moe_set_adaptive_threads(int on);

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
