#ifndef MOE_GEMM_BF16_H
#define MOE_GEMM_BF16_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Row-major GEMM with bf16 operands and float32 accumulation (the matmul of mixed-precision
 * training):  C[m, n] = alpha · Σ_k bf16(op(A)[m, k]) · bf16(op(B)[k, n]) + beta · C[m, n]
 *   op(A) is A [m, k] (lda ≥ k), or Aᵀ with A stored [k, m] (lda ≥ m) when ta != 0;
 *   op(B) is B [k, n] (ldb ≥ n), or Bᵀ with B stored [n, k] (ldb ≥ k) when tb != 0;
 *   bf16(x): x rounded to bfloat16, nearest even (8 significant bits). beta = 0 never reads C.
 * A and B are float32 in memory and rounded while they are packed, so callers keep one float32
 * copy. The products of two bf16 values are exact in float32; only the sums round.
 * Two paths:
 *   0  (default) any CPU: the operands rounded to bf16 into float32 buffers, then sgemm (same
 *      math; 0.5–0.9× sgemm's speed, the rounding copies being the difference);
 *   1  AVX-512 BF16 (vdpbf16ps: two bf16 products per float lane and instruction), a first
 *      kernel at 0.4–0.6× OpenBLAS's AVX-512 sgemm (Benchmarks/gemm-bf16/run.sh), so not the
 *      default: SPARSEMOE_BF16_GEMM=avx512bf16 or moe_gemm_bf16_set_path(1) selects it.
 * On the kernel threads like moe_sgemm (the larger of m and n split, one chunk per thread);
 * deterministic for a fixed thread count and path.
 */
void moe_sgemm_bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* The arithmetic of every GEMM the kernels run (matmul, attention, expert GEMMs, prefill
 * panels): 0 float32 (OpenBLAS sgemm), 1 bf16 operands with float32 sums (moe_sgemm_bf16).
 * Process-wide; mixed-precision training sets 1 around its steps (float32 by default). */
void moe_set_matmul_precision(int bf16);
int moe_matmul_precision(void);

/* The path moe_sgemm_bf16 takes: 1 AVX-512 BF16, 0 the portable one. The first use picks 0, or 1
 * with SPARSEMOE_BF16_GEMM=avx512bf16 where the CPU has AVX-512 BF16 (and F, BW, VL) at SIMD
 * level 3. */
int moe_gemm_bf16_path(void);

/* Sets the path to `hardware` where the CPU allows it and returns the path chosen; for tests and
 * measurements (do not call while a GEMM runs). */
int moe_gemm_bf16_set_path(int hardware);

#ifdef __cplusplus
}
#endif
#endif
