/*
 * Routed-experts kernel vs its roofline, measured in the same process.
 *
 * Roofline: the same per-expert GEMMs (same shapes and transposes) with perfectly balanced
 * rows, as plain cblas_sgemm calls on preallocated contiguous buffers, under both schedules
 * (experts in sequence with threaded BLAS; experts in parallel with single-threaded BLAS);
 * the better one counts. The op includes everything: plan (counting sort), gather,
 * activation, combine; backward includes dgates and the scatter of dx.
 *
 * Useful FLOPs (SwiGLU): forward 6·C·F·K·T, forward+backward 18·C·F·K·T.
 * Columns: GFLOP/s (best of reps) of roofline-sequential, roofline-parallel, op with each
 * schedule; "best" = op-auto / better roofline (best-of times); "paired" = median over reps
 * of better-roofline time / op-auto time measured back to back in the same rep (more robust
 * when other processes share the cores).
 *
 * Build and run (from the package root):
 *   Benchmarks/routed_experts/run.sh [threads] [reps] [workload]
 */
#define _POSIX_C_SOURCE 200809L
#include "moe_dispatch.h"
#include "moe_threads.h"
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);
int omp_get_thread_num(void);
int omp_get_num_threads(void);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}
static float rng_uniform(float scale) { return ((float)(rng_next() >> 40) / (float)(1 << 24) * 2.0f - 1.0f) * scale; }

static float *alloc_floats(int64_t n, float scale) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, (size_t)(n > 0 ? n : 1) * sizeof(float))) abort();
    for (int64_t i = 0; i < n; i++) p[i] = scale == 0 ? 0.0f : rng_uniform(scale);
    return p;
}

/* Random balanced routing: token perm[i] gets experts (i·K + s) mod E, slots shuffled.
 * Every expert receives exactly T·K/E rows (when E divides T·K); experts per token distinct. */
static void balanced_routing(int32_t *experts, float *gates, int64_t T, int64_t K, int64_t E) {
    int64_t *perm = malloc(sizeof(int64_t) * T);
    for (int64_t i = 0; i < T; i++) perm[i] = i;
    for (int64_t i = T - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next() % (uint64_t)(i + 1));
        int64_t tmp = perm[i]; perm[i] = perm[j]; perm[j] = tmp;
    }
    for (int64_t i = 0; i < T; i++) {
        int32_t *row = experts + perm[i] * K;
        for (int64_t s = 0; s < K; s++) row[s] = (int32_t)((i * K + s) % E);
        for (int64_t s = K - 1; s > 0; s--) {
            int64_t j = (int64_t)(rng_next() % (uint64_t)(s + 1));
            int32_t tmp = row[s]; row[s] = row[j]; row[j] = tmp;
        }
        for (int64_t s = 0; s < K; s++) gates[perm[i] * K + s] = 1.0f / (float)K;
    }
    free(perm);
}

static void sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

typedef struct {
    int64_t C, F, E, n; /* n rows per expert */
    float *xs, *h1, *h3, *act, *eo, *d1, *d3, *w1, *w3, *w2, *dw1, *dw3, *dw2;
} roof;

/* The GEMMs of one expert: forward 3, backward 6 (same shapes/transposes as the kernel). */
static void roof_expert(const roof *r, int64_t e, int backward) {
    const int64_t C = r->C, F = r->F, n = r->n, o = e * n;
    sgemm(0, 1, n, F, C, r->xs + o * C, C, r->w1 + e * F * C, C, 0, r->h1 + o * F, F);
    sgemm(0, 1, n, F, C, r->xs + o * C, C, r->w3 + e * F * C, C, 0, r->h3 + o * F, F);
    sgemm(0, 1, n, C, F, r->act + o * F, F, r->w2 + e * C * F, F, 0, r->eo + o * C, C);
    if (!backward) return;
    sgemm(1, 0, C, F, n, r->eo + o * C, C, r->act + o * F, F, 1, r->dw2 + e * C * F, F);
    sgemm(0, 0, n, F, C, r->eo + o * C, C, r->w2 + e * C * F, F, 0, r->d1 + o * F, F);
    sgemm(1, 0, F, C, n, r->d1 + o * F, F, r->xs + o * C, C, 1, r->dw1 + e * F * C, C);
    sgemm(1, 0, F, C, n, r->d3 + o * F, F, r->xs + o * C, C, 1, r->dw3 + e * F * C, C);
    sgemm(0, 0, n, C, F, r->d1 + o * F, F, r->w1 + e * F * C, C, 0, r->eo + o * C, C);
    sgemm(0, 0, n, C, F, r->d3 + o * F, F, r->w3 + e * F * C, C, 1, r->eo + o * C, C);
}

static void roof_run(const roof *r, int parallel, int backward, int threads) {
    if (!parallel) {
        for (int64_t e = 0; e < r->E; e++) roof_expert(r, e, backward);
        return;
    }
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int64_t e = tid; e < r->E; e += nt) roof_expert(r, e, backward);
    }
    openblas_set_num_threads(threads);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    const char *only = argc > 3 ? argv[3] : NULL; /* run one workload by name */
    moe_set_num_threads(threads);
    struct { const char *name; int64_t T, C, F, E, K; } wl[] = {
        {"mixtral-like", 2048, 512, 1024, 8, 2},
        {"fine-grained", 2048, 512, 256, 64, 8},
        {"switch-top1", 2048, 512, 1024, 32, 1},
        {"wide", 1024, 1024, 2816, 8, 2},
    };
    printf("threads=%d reps=%d (best of reps; GFLOP/s of useful FLOPs: fwd 6CFKT, fwd+bwd 18CFKT)\n", threads, reps);
    printf("%-13s %-9s %9s %9s %9s %9s %9s %7s %7s %s\n", "workload", "pass", "roof-seq", "roof-par", "op-seq",
           "op-par", "op-auto", "best", "paired", "auto->");
    for (size_t w = 0; w < sizeof wl / sizeof wl[0]; w++) {
        if (only && strcmp(only, wl[w].name) != 0) continue;
        const int64_t T = wl[w].T, C = wl[w].C, F = wl[w].F, E = wl[w].E, K = wl[w].K, P = T * K;
        int32_t *experts = malloc(sizeof(int32_t) * P);
        float *gates = alloc_floats(P, 0);
        balanced_routing(experts, gates, T, K, E);
        const int64_t A = P; /* no drops */
        float *x = alloc_floats(T * C, 1), *y = alloc_floats(T * C, 0), *dy = alloc_floats(T * C, 1);
        float *w1 = alloc_floats(E * F * C, 0.05f), *w3 = alloc_floats(E * F * C, 0.05f), *w2 = alloc_floats(E * C * F, 0.05f);
        float *dw1 = alloc_floats(E * F * C, 0), *dw3 = alloc_floats(E * F * C, 0), *dw2 = alloc_floats(E * C * F, 0);
        float *dx = alloc_floats(T * C, 0), *dg = alloc_floats(P, 0);
        float *xs = alloc_floats(A * C, 0), *h1 = alloc_floats(A * F, 0), *h3 = alloc_floats(A * F, 0);
        float *act = alloc_floats(A * F, 0), *eo = alloc_floats(A * C, 0);
        float *ws = alloc_floats(moe_routed_experts_workspace_size(A, C, F, E, MOE_EXPERT_SWIGLU, 1), 0);
        int64_t *offsets = malloc(sizeof(int64_t) * (E + 1));
        int32_t *sorted = malloc(sizeof(int32_t) * P), *position = malloc(sizeof(int32_t) * P);
        roof rf = {C, F, E, A / E, xs, h1, h3, act, eo, alloc_floats(A * F, 0.1f), alloc_floats(A * F, 0.1f),
                   w1, w3, w2, dw1, dw3, dw2};
        for (int64_t i = 0; i < A * F; i++) act[i] = rng_uniform(1);
        const double useful = 6.0 * C * F * K * T;
        for (int backward = 0; backward <= 1; backward++) {
            double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30}, ratio[64];
            int auto_sched = 0, n_ratio = 0;
            for (int rep = 0; rep <= reps && rep < 64; rep++) { /* rep 0 warms up */
                double dt[5];
                for (int v = 0; v < 5; v++) {
                    double t0 = now();
                    if (v < 2) {
                        roof_run(&rf, v, backward, threads);
                    } else {
                        int sched = v == 2 ? MOE_SCHEDULE_SEQUENTIAL : v == 3 ? MOE_SCHEDULE_PARALLEL : MOE_SCHEDULE_AUTO;
                        moe_dispatch_plan(offsets, sorted, position, experts, T, K, E);
                        int ran = moe_routed_experts_forward(y, xs, h1, h3, act, eo, ws, x, gates, offsets, sorted, position,
                                                             w1, w3, w2, NULL, NULL, T, C, F, E, K, MOE_EXPERT_SWIGLU, sched);
                        if (backward)
                            moe_routed_experts_backward(dx, dg, dw1, dw3, dw2, NULL, NULL, ws, dy, xs, h1, h3, act, eo, gates,
                                                        offsets, sorted, position, w1, w3, w2, T, C, F, E, K,
                                                        MOE_EXPERT_SWIGLU, sched);
                        if (v == 4) auto_sched = ran;
                    }
                    dt[v] = now() - t0;
                    if (rep > 0 && dt[v] < best[v]) best[v] = dt[v];
                }
                /* paired ratio within one rep: robust to load that comes and goes */
                if (rep > 0) ratio[n_ratio++] = (dt[0] < dt[1] ? dt[0] : dt[1]) / dt[4];
            }
            for (int i = 1; i < n_ratio; i++) /* insertion sort for the median */
                for (int j = i; j > 0 && ratio[j - 1] > ratio[j]; j--) { double tmp = ratio[j]; ratio[j] = ratio[j - 1]; ratio[j - 1] = tmp; }
            double flops = useful * (backward ? 3 : 1), g[5];
            for (int v = 0; v < 5; v++) g[v] = flops / best[v] * 1e-9;
            double roofline = g[0] > g[1] ? g[0] : g[1];
            printf("%-13s %-9s %9.1f %9.1f %9.1f %9.1f %9.1f %7.2f %7.2f %s\n", wl[w].name, backward ? "fwd+bwd" : "fwd",
                   g[0], g[1], g[2], g[3], g[4], g[4] / roofline, ratio[n_ratio / 2],
                   auto_sched == MOE_SCHEDULE_PARALLEL ? "parallel" : "sequential");
            fflush(stdout);
        }
        free(experts); free(gates); free(x); free(y); free(dy); free(w1); free(w3); free(w2); free(dw1); free(dw3);
        free(dw2); free(dx); free(dg); free(xs); free(h1); free(h3); free(act); free(eo); free(ws); free(offsets);
        free(sorted); free(position); free(rf.d1); free(rf.d3);
    }
    return 0;
}
