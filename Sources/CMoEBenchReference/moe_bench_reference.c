/* Benchmark references: balanced grouped GEMMs (the routed-experts roofline) and one dense sgemm. */
#include "moe_bench_reference.h"
#include "moe_dispatch.h"
#include "moe_threads.h"
#include <cblas.h>

/* Declared here: the Swift toolchain's clang does not see Debian's omp.h (the runtime is
 * libomp), and these are OpenBLAS's pthread-build thread controls. */
int omp_get_thread_num(void);
int omp_get_num_threads(void);
int omp_in_parallel(void);
void openblas_set_num_threads(int);

static void sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    moe_blas_core_init(); /* the same OpenBLAS kernels as the library's GEMMs */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

int64_t moe_bench_grouped_workspace_size(int64_t E, int64_t N, int64_t C, int64_t F, int backward) {
    /* h1, h3, act [A, F]; eo [A, C]; backward: d1, d3 [A, F]. The 4th F block is slack so
     * that every sub-buffer starts at a multiple of A·F. */
    const int64_t A = E * N;
    return A * (4 * F + C) + (backward ? 2 * A * F : 0);
}

typedef struct {
    float *h1, *h3, *act, *eo, *d1, *d3, *dw1, *dw3, *dw2;
    const float *xs, *w1, *w3, *w2;
    int64_t N, C, F;
} grouped_args;

static void expert_gemms(const grouped_args *r, int64_t e, int backward) {
    const int64_t C = r->C, F = r->F, n = r->N, o = e * n;
    sgemm(0, 1, n, F, C, r->xs + o * C, C, r->w1 + e * F * C, C, 0, r->h1 + o * F, F);
    sgemm(0, 1, n, F, C, r->xs + o * C, C, r->w3 + e * F * C, C, 0, r->h3 + o * F, F);
    sgemm(0, 1, n, C, F, r->act + o * F, F, r->w2 + e * C * F, F, 0, r->eo + o * C, C);
    if (!backward) return;
    /* eo stands in for dEo (the gathered, gated dy) and then for dXs. */
    sgemm(1, 0, C, F, n, r->eo + o * C, C, r->act + o * F, F, 1, r->dw2 + e * C * F, F);
    sgemm(0, 0, n, F, C, r->eo + o * C, C, r->w2 + e * C * F, F, 0, r->d1 + o * F, F);
    sgemm(1, 0, F, C, n, r->d1 + o * F, F, r->xs + o * C, C, 1, r->dw1 + e * F * C, C);
    sgemm(1, 0, F, C, n, r->d3 + o * F, F, r->xs + o * C, C, 1, r->dw3 + e * F * C, C);
    sgemm(0, 0, n, C, F, r->d1 + o * F, F, r->w1 + e * F * C, C, 0, r->eo + o * C, C);
    sgemm(0, 0, n, C, F, r->d3 + o * F, F, r->w3 + e * F * C, C, 1, r->eo + o * C, C);
}

void moe_bench_grouped_swiglu(float *workspace, float *dw1, float *dw3, float *dw2,
                              const float *xs, const float *w1, const float *w3, const float *w2,
                              int64_t E, int64_t N, int64_t C, int64_t F, int backward, int schedule) {
    const int64_t A = E * N;
    if (A == 0 || C == 0 || F == 0) return;
    float *p = workspace;
    grouped_args r;
    r.h1 = p; p += A * F;
    r.h3 = p; p += A * F;
    r.act = p; p += 2 * A * F;
    r.eo = p; p += A * C;
    r.d1 = backward ? p : NULL; p += backward ? A * F : 0;
    r.d3 = backward ? p : NULL;
    r.dw1 = dw1; r.dw3 = dw3; r.dw2 = dw2;
    r.xs = xs; r.w1 = w1; r.w3 = w3; r.w2 = w2;
    r.N = N; r.C = C; r.F = F;
    const int threads = moe_get_num_threads();
    if (schedule != MOE_SCHEDULE_PARALLEL || threads == 1 || omp_in_parallel()) {
        /* Experts in sequence on OpenBLAS's own threads: the plain-OpenBLAS reference.
         * (The library keeps OpenBLAS on one thread and splits GEMMs with OpenMP.) */
        openblas_set_num_threads(omp_in_parallel() ? 1 : threads);
        for (int64_t e = 0; e < E; e++) expert_gemms(&r, e, backward);
        openblas_set_num_threads(1);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int64_t e = tid; e < E; e += nt) expert_gemms(&r, e, backward);
    }
}

void moe_bench_dense_sgemm(float *out, const float *a, const float *b, int64_t M, int64_t N, int64_t K) {
    if (M == 0 || N == 0) return;
    /* One OpenBLAS sgemm on OpenBLAS's own threads. */
    openblas_set_num_threads(moe_get_num_threads());
    sgemm(0, 0, M, N, K, a, K, b, N, 0, out, N);
    openblas_set_num_threads(1);
}

int64_t moe_bench_machine_control_workspace_size(int64_t n) { return (int64_t)moe_get_num_threads() * 3 * n * n; }

void moe_bench_machine_control(float *workspace, int64_t n, int64_t reps) {
    const int threads = moe_get_num_threads();
#pragma omp parallel num_threads(threads)
    {
        /* Each thread on its own three n×n blocks: nothing shared, no barrier until the end. */
        float *a = workspace + (int64_t)omp_get_thread_num() * 3 * n * n, *b = a + n * n, *c = b + n * n;
        for (int64_t r = 0; r < reps; r++) sgemm(0, 0, n, n, n, a, n, b, n, 0, c, n);
    }
}

float moe_bench_stream_sum(const float *x, int64_t n) {
    float total = 0.0f;
    int nt = moe_get_num_threads();
#pragma omp parallel num_threads(nt) reduction(+ : total)
    {
        int t = omp_get_thread_num(), threads = omp_get_num_threads();
        int64_t chunk = (n + threads - 1) / threads;
        int64_t lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
        float acc[16] = {0};
        int64_t i = lo;
        for (; i + 16 <= hi; i += 16) { /* one 64-byte line per step, prefetched 2 KiB ahead */
            __builtin_prefetch(x + i + 512, 0, 3);
            for (int j = 0; j < 16; j++) acc[j] += x[i + j];
        }
        for (; i < hi; i++) acc[0] += x[i];
        for (int j = 0; j < 16; j++) total += acc[j];
    }
    return total;
}
