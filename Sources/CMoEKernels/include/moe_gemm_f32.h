#ifndef MOE_GEMM_F32_H
#define MOE_GEMM_F32_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Row-major float32 GEMM, the one every float32 matmul of the kernels runs:
 *   C[m, n] = alpha · op(A)·op(B) + beta · C[m, n]
 *   op(A) is A [m, k] (lda ≥ k), or Aᵀ with A stored [k, m] (lda ≥ m) when ta != 0;
 *   op(B) is B [k, n] (ldb ≥ n), or Bᵀ with B stored [n, k] (ldb ≥ k) when tb != 0; beta = 0
 *   never reads C. On the kernel threads (OpenMP; OpenBLAS itself always runs single-threaded):
 *   called outside a parallel region with more than one thread and enough work, it splits the
 *   larger of m and n into one contiguous chunk per thread; inside a parallel region (experts,
 *   heads or batches in parallel) it runs on the calling thread. Under
 *   moe_set_matmul_precision(1) it is moe_sgemm_bf16.
 * Two paths, chosen at run time (SPARSEMOE_F32_GEMM=openblas|avx512 asks for one the CPU runs):
 *   0  OpenBLAS sgemm, any CPU;
 *   1  our AVX-512 kernel (moe_gemm_f32.c: 8 × 32 register tiles over packed panels, each
 *      element of C summed in ascending k whatever the split, so the bits do not depend on the
 *      thread count), where the kernels' SIMD level is AVX-512.
 */
void moe_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* The path moe_sgemm takes (0 OpenBLAS, 1 AVX-512), chosen on first use. */
int moe_gemm_f32_path(void);

/* Sets the path to `path` where the CPU runs it, else to 0, and returns the path chosen; for tests
 * and measurements (do not call while a GEMM runs). */
int moe_gemm_f32_set_path(int path);

#ifdef __cplusplus
}
#endif
#endif
