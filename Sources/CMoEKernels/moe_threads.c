#include "moe_threads.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int g_threads = 0; /* 0 = not yet set: use the OpenMP default */

void moe_set_num_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
    omp_set_num_threads(n);
    /* BLAS is always single-threaded; moe_sgemm parallelises it with OpenMP. */
    openblas_set_num_threads(1);
}

/* Adaptive teams: -1 = not decided yet (SPARSEMOE_ADAPTIVE_THREADS, default off). OpenMP's
 * dyn-var is a per-thread setting, so each thread that calls a kernel applies the current
 * choice once (and again after it changes: the generation counter). */
static int g_adaptive = -1;
static int g_adaptive_generation = 1;
static _Thread_local int t_adaptive_generation = 0;

int moe_adaptive_threads(void) {
    if (g_adaptive < 0) {
        const char *env = getenv("SPARSEMOE_ADAPTIVE_THREADS");
        g_adaptive = env && (strcmp(env, "1") == 0 || strcmp(env, "true") == 0 || strcmp(env, "on") == 0);
    }
    return g_adaptive;
}

void moe_set_adaptive_threads(int on) {
    g_adaptive = on != 0;
    g_adaptive_generation++;
}

int moe_threads_current(void) {
    if (g_threads == 0) {
        /* First use: adopt the OpenMP default for both runtimes. */
        moe_set_num_threads(omp_get_max_threads());
    }
    if (t_adaptive_generation != g_adaptive_generation) {
        omp_set_dynamic(moe_adaptive_threads());
        t_adaptive_generation = g_adaptive_generation;
    }
    return g_threads;
}

int moe_get_num_threads(void) { return moe_threads_current(); }

int moe_threads_team_probe(void) {
    int team = 1;
    const int nt = moe_threads_current();
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp master
        team = omp_get_num_threads();
    }
    return team;
}

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
