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
 * Three paths, chosen at run time from the CPU (the fastest it runs, unless
 * SPARSEMOE_BF16_GEMM=portable|avx512bf16|amx asks for another it runs):
 *   0  any CPU: the operands rounded to bf16 into float32 buffers, then sgemm (same math;
 *      0.5–0.9× sgemm's speed, the rounding copies being the difference);
 *   1  AVX-512 BF16 (vdpbf16ps: two bf16 products per float lane and instruction; 8 × 32 register
 *      tiles over vectorised pair panels), 1.6–2.1× OpenBLAS's AVX-512 sgemm on training shapes on
 *      AMD Zen 4 (0.4–0.6× on an Intel Xeon before its packing was vectorised); it treats
 *      subnormal bf16 operands as zero;
 *   2  AMX (Intel Sapphire Rapids and later: TDPBF16PS on 16 × 16 float32 tiles), 2.5–4.9×
 *      OpenBLAS's AVX-512 sgemm on training shapes (Benchmarks/gemm/run.sh bf16); it treats
 *      subnormal bf16 operands as zero and flushes subnormal sums.
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

/* The path moe_sgemm_bf16 takes (0 portable, 1 AVX-512 BF16, 2 AMX), chosen on first use: the
 * one SPARSEMOE_BF16_GEMM names where the CPU runs it, else AMX where the CPU and OS allow it
 * (AMX-BF16, AVX-512 at SIMD level 3, tile state granted by the kernel), else 1 where the CPU has
 * AVX-512 BF16 (at SIMD level 3), else 0. */
int moe_gemm_bf16_path(void);

/* Sets the path to `path` where the CPU runs it, else to 0, and returns the path chosen; for tests
 * and measurements (do not call while a GEMM runs). */
int moe_gemm_bf16_set_path(int path);

#ifdef __cplusplus
}
#endif
#endif
