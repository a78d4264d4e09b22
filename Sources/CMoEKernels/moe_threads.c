#include "moe_threads.h"
#include "internal.h"

static int g_threads = 0; /* 0 = not yet set: use the OpenMP default */

void moe_set_num_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
    omp_set_num_threads(n);
    /* BLAS is always single-threaded; moe_sgemm parallelises it with OpenMP. */
    openblas_set_num_threads(1);
}

int moe_threads_current(void) {
    if (g_threads == 0) {
        /* First use: adopt the OpenMP default for both runtimes. */
        moe_set_num_threads(omp_get_max_threads());
    }
    return g_threads;
}

int moe_get_num_threads(void) { return moe_threads_current(); }

int moe_available_threads(void) { return omp_get_num_procs(); }

void moe_threads_park(void) {
    if (omp_in_parallel()) return;
    /* OpenMP: one region in which every thread sets its own block time to 0, so that each
     * worker goes to sleep as soon as the region ends (the block time is a per-thread setting:
     * set on the calling thread alone it did not stop the spinning worker here, libomp 14).
     * The next region copies the caller's block time, restored here, to the workers again. */
    const int blocktime = kmp_get_blocktime();
#pragma omp parallel num_threads(moe_threads_current())
    kmp_set_blocktime(0);
    kmp_set_blocktime(blocktime);
    /* OpenBLAS: its workers spin (sched_yield) for 2^28 cycles after each threaded call and
     * cannot be told to sleep; end them instead. */
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}
