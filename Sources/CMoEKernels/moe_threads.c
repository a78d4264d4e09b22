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
