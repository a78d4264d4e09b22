/* Private helpers shared by the kernel files. Not part of the public header. */
#ifndef MOE_INTERNAL_H
#define MOE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The few OpenMP entry points we call. Declared here because the Swift
 * toolchain's clang does not see Debian's omp.h; the runtime is libomp. */
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
void omp_set_num_threads(int);
int omp_get_num_procs(void);
int omp_in_parallel(void);

/* OpenBLAS thread control (pthread build). */
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);

/* Current kernel thread count (moe_threads.c). */
int moe_threads_current(void);

/* Run BLAS single-threaded inside an OpenMP region; restore afterwards.
 * Use around "experts/batches in parallel" schedules so BLAS never nests. */
void moe_blas_threads_begin_single(void);
void moe_blas_threads_end_single(void);

#endif
