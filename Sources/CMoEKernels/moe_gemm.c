#include "internal.h"
#include <cblas.h>
#include "moe_gemm_bf16.h"
#include "moe_threads.h"
#include <stdlib.h>
#include <string.h>

/* Below this many FLOPs a GEMM runs on the calling thread: waking the team costs more. */
#define MOE_GEMM_PARALLEL_MIN_FLOPS (1 << 21)

static void sgemm1(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    moe_blas_core_init();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static int g_matmul_precision = 0; /* 0 float32, 1 bf16 operands (moe_gemm_bf16.h) */

void moe_set_matmul_precision(int bf16) { __atomic_store_n(&g_matmul_precision, bf16 ? 1 : 0, __ATOMIC_RELAXED); }

int moe_matmul_precision(void) { return __atomic_load_n(&g_matmul_precision, __ATOMIC_RELAXED); }

void moe_gemm_scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

static int g_f32_path = -1; /* -1: not chosen yet */

static int f32_path_available(int path) { return path == 0 || (path == 1 && moe_gemm_f32_avx512_available()); }

int moe_gemm_f32_path(void) {
    int path = __atomic_load_n(&g_f32_path, __ATOMIC_ACQUIRE);
    if (path < 0) {
        const char *env = getenv("SPARSEMOE_F32_GEMM");
        const int asked = !env ? -1 : strcmp(env, "avx512") == 0 ? 1 : strcmp(env, "openblas") == 0 ? 0 : -1;
        path = asked >= 0 && f32_path_available(asked) ? asked : f32_path_available(1) ? 1 : 0;
        __atomic_store_n(&g_f32_path, path, __ATOMIC_RELEASE);
    }
    return path;
}

int moe_gemm_f32_set_path(int path) {
    const int chosen = f32_path_available(path) ? path : 0;
    __atomic_store_n(&g_f32_path, chosen, __ATOMIC_RELEASE);
    return chosen;
}

void moe_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (moe_matmul_precision()) moe_sgemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else moe_gemm_split(moe_gemm_f32_path() ? moe_gemm1_f32_avx512 : sgemm1, ta, tb, m, n, k, alpha, a, lda, b, ldb,
                        beta, c, ldc);
}

void moe_gemm_split(moe_gemm1 gemm1, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    int threads = moe_threads_current();
    if (threads == 1 || moe_in_region() || 2.0 * m * n * k < MOE_GEMM_PARALLEL_MIN_FLOPS || (m < 32 && n < 32)) {
        gemm1(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* Split the larger of M and N into one contiguous chunk per thread asked for (multiples
     * of 16); a smaller team (load-aware teams, moe_threads.h) runs the same chunks in turn,
     * so the result does not depend on the load. */
    int split_rows = m >= n;
    int64_t dim = split_rows ? m : n;
    int64_t chunk = (dim + threads - 1) / threads;
    chunk = (chunk + 15) / 16 * 16;
#pragma omp parallel num_threads(moe_team(threads))
    for (int part = omp_get_thread_num(); part < threads; part += omp_get_num_threads()) {
        int64_t lo = (int64_t)part * chunk;
        int64_t hi = lo + chunk < dim ? lo + chunk : dim;
        if (lo < hi) {
            if (split_rows) {
                /* rows lo..<hi of op(A) and C */
                const float *a_part = ta ? a + lo : a + lo * lda;
                gemm1(ta, tb, hi - lo, n, k, alpha, a_part, lda, b, ldb, beta, c + lo * ldc, ldc);
            } else {
                /* columns lo..<hi of op(B) and C */
                const float *b_part = tb ? b + lo * ldb : b + lo;
                gemm1(ta, tb, m, hi - lo, k, alpha, a, lda, b_part, ldb, beta, c + lo, ldc);
            }
        }
    }
}
