#include "moe_matmul.h"
#include "internal.h"

/* One sgemm: C[M,N] = alpha * op(A) op(B) + beta * C, op by flags. */
static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k,
                 const float *a, const float *b, float *c, float beta) {
    moe_sgemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, beta, c, n);
}

/* Same, with explicit row-major dimensions of the stored operands. */
static void gemm_ld(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float *c, int64_t ldc, float beta) {
    moe_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

void moe_matmul_forward(float *out, const float *a, const float *b,
                        int64_t batch, int64_t m, int64_t n, int64_t k,
                        int trans_a, int trans_b, int64_t a_stride, int64_t b_stride) {
    int threads = moe_threads_current();
    if (batch == 1 || threads == 1) {
        for (int64_t i = 0; i < batch; i++)
            gemm(trans_a, trans_b, m, n, k, a + i * a_stride, b + i * b_stride, out + i * m * n, 0.0f);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < batch; i++)
        gemm(trans_a, trans_b, m, n, k, a + i * a_stride, b + i * b_stride, out + i * m * n, 0.0f);
}

/* dA for one batch: op(A) = dC · op(B)^T, mapped back through the transpose. */
static void grad_a(float *da, const float *dc, const float *b, int64_t m, int64_t n, int64_t k,
                   int ta, int tb, float beta) {
    if (!ta) {
        /* dA[M,K] += dC[M,N] · op(B)^T ; op(B)^T is B^T ([N,K] view of B[K,N]) or B ([N,K]) */
        gemm_ld(0, !tb, m, k, n, dc, n, b, tb ? k : n, da, k, beta);
    } else {
        /* dA[K,M] += op(B)[K,N] · dC^T */
        gemm_ld(tb, 1, k, m, n, b, tb ? k : n, dc, n, da, m, beta);
    }
}

/* dB for one batch: op(B) = op(A)^T · dC, mapped back through the transpose. */
static void grad_b(float *db, const float *dc, const float *a, int64_t m, int64_t n, int64_t k,
                   int ta, int tb, float beta) {
    if (!tb) {
        /* dB[K,N] += op(A)^T[K,M] · dC[M,N] */
        gemm_ld(!ta, 0, k, n, m, a, ta ? m : k, dc, n, db, n, beta);
    } else {
        /* dB[N,K] += dC^T[N,M] · op(A)[M,K] */
        gemm_ld(1, ta, n, k, m, dc, n, a, ta ? m : k, db, k, beta);
    }
}

void moe_matmul_backward(float *d_a, float *d_b, const float *d_out,
                         const float *a, const float *b,
                         int64_t batch, int64_t m, int64_t n, int64_t k,
                         int trans_a, int trans_b, int64_t a_stride, int64_t b_stride, int fresh_a, int fresh_b) {
    int threads = moe_threads_current();
    int parallel = batch > 1 && threads > 1;
    /* A fresh gradient is written by the first GEMM into each of its elements (beta 0); an
     * operand shared by the batch (stride 0) then accumulates the other items. */
    if (d_a) {
        if (!parallel || a_stride == 0) {
            for (int64_t i = 0; i < batch; i++)
                grad_a(d_a + i * a_stride, d_out + i * m * n, b + i * b_stride, m, n, k, trans_a, trans_b,
                       fresh_a && (i == 0 || a_stride != 0) ? 0.0f : 1.0f);
        } else {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < batch; i++)
                grad_a(d_a + i * a_stride, d_out + i * m * n, b + i * b_stride, m, n, k, trans_a, trans_b,
                       fresh_a ? 0.0f : 1.0f);
        }
    }
    if (d_b) {
        if (!parallel || b_stride == 0) {
            for (int64_t i = 0; i < batch; i++)
                grad_b(d_b + i * b_stride, d_out + i * m * n, a + i * a_stride, m, n, k, trans_a, trans_b,
                       fresh_b && (i == 0 || b_stride != 0) ? 0.0f : 1.0f);
        } else {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < batch; i++)
                grad_b(d_b + i * b_stride, d_out + i * m * n, a + i * a_stride, m, n, k, trans_a, trans_b,
                       fresh_b ? 0.0f : 1.0f);
        }
    }
}

