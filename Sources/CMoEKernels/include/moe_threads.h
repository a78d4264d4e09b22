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

/// Number of hardware threads the OpenMP runtime sees.
int moe_available_threads(void);

#ifdef __cplusplus
}
#endif
#endif
