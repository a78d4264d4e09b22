/*
 * Naive references of the optimised kernels in CMoEKernels, for the tests only: plain
 * loops, mostly double accumulation, no workspace, no threads. Each has the argument list
 * of the kernel it checks.
 */
#ifndef MOE_NAIVE_H
#define MOE_NAIVE_H

#include <stdint.h>
#include "moe_weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reference (tests only): plain per-head loops, double accumulation, no probs. */
void moe_attention_forward_naive(float *out,
                                 const float *q, const float *k, const float *v,
                                 int64_t B, int64_t T, int64_t S, int64_t H, int64_t Hkv,
                                 int64_t D, int64_t Dv, int causal, float scale);

/*
 * Naive reference of the forward (tests only): per token, per slot, plain loops with
 * double accumulation. Same arguments as the math above; no plan, no workspace.
 */
void moe_routed_experts_forward_naive(float *y, const float *x, const int32_t *experts,
                                      const float *gates, const float *w1, const float *w3,
                                      const float *w2, const float *b1, const float *b2,
                                      int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                                      int activation);

/*
 * Naive reference of moe_routed_experts_backward (tests only), same arguments: per (token,
 * slot), plain loops in double from the saved xs, h1, h3, eo (act and its derivative are
 * recomputed from h1, h3; the saved act, sorted, workspace and schedule are unused), then
 * per expert double sums over its rows. Accumulates (+=) into every non-NULL gradient.
 */
void moe_routed_experts_backward_naive(float *dx, float *dgates, float *dw1, float *dw3, float *dw2,
                                       float *db1, float *db2, float *workspace,
                                       const float *dy, const float *xs, const float *h1, const float *h3,
                                       const float *act, const float *eo, const float *gates,
                                       const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                                       const float *w1, const float *w3, const float *w2,
                                       int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                                       int activation, int schedule);

/* Serial reference of moe_embedding_backward (tests only). */
void moe_embedding_backward_naive(float *d_table, const float *d_out, const int32_t *ids, int64_t n, int64_t c);

/* Naive triple-loop reference of moe_matmul_forward (tests only). */
void moe_matmul_forward_naive(float *out, const float *a, const float *b,
                              int64_t batch, int64_t m, int64_t n, int64_t k,
                              int trans_a, int trans_b, int64_t a_stride, int64_t b_stride);

/* Reference of moe_sgemm (tests only), written from its definition: products summed in double.
 * C[m, n] = alpha · Σ_k op(A) · op(B) + beta · C (beta = 0: C not read); abs_c[m, n] = |alpha| ·
 * Σ_k |op(A) · op(B)| (for error bounds; may be NULL). */
void moe_sgemm_naive(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *abs_c);

/* Reference of moe_sgemm_bf16 (tests only), written from its definition: each operand rounded
 * to bfloat16 (nearest even, by integer arithmetic on the bits), products summed in double.
 * C[m, n] = alpha · Σ_k bf16(op(A)) · bf16(op(B)) + beta · C (beta = 0: C not read);
 * abs_c[m, n] = |alpha| · Σ_k |bf16(op(A)) · bf16(op(B))| (for error bounds; may be NULL). */
void moe_sgemm_bf16_naive(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *abs_c);

/* Sequential reference of moe_grad_norm_sq (tests only). */
double moe_grad_norm_sq_naive(const float *x, int64_t n);

/* Reference for the broadcast gradient reduction: d_b[j] += scale * Σ_i d_out[i, j]
 * (* a[i, j] when a != NULL), a plain double-accumulated loop (tests only). */
void moe_reduce_rows_naive(float *d_b, const float *d_out, const float *a, float scale,
                           int64_t n, int64_t d);

/* Serial double-accumulated reference of moe_sum_forward (tests only). */
void moe_sum_forward_naive(float *out, const float *x, float scale, int64_t n);

/* Reference (tests only): angles computed per element from start and theta,
 * same float32 recipe, plain loops, no tables. */
void moe_rope_forward_naive(float *out, const float *x, int64_t start, float theta,
                            int64_t B, int64_t T, int64_t H, int64_t D, int64_t R, int style);

/* Reference of moe_weight_dequantize (tests only), element by element straight from the
 * format description in moe_weights.h (its own half and bfloat16 decoding). */
void moe_weight_dequantize_naive(float *dst, moe_weight w, int64_t first, int64_t count);

/* Reference of moe_weight_matmul (tests only): each row of W dequantized by the reference
 * above, dot products accumulated in double (with y in double when accumulate). No workspace. */
void moe_weight_matmul_naive(float *y, int64_t ldy, const float *x, int64_t ldx, moe_weight w, int64_t m,
                             int accumulate);

/* Q8 activation blocks of x[0 ..< K] (tests only), from the rule in moe_weights.h: per block of
 * 32 (zero past K) d = max|x| / 127, q = nearbyintf(x · (1/d)) clamped to [−127, 127], 0 where
 * d = 0; q [32·ceil(K/32)], d [ceil(K/32)]. */
void moe_q8_blocks_naive(const float *x, int64_t K, int8_t *q, float *d);

/* Reference of the Q4 / Q8 decode product on Q8 activation blocks (tests only): each x row replaced
 * by q·d of moe_q8_blocks_naive, then moe_weight_matmul_naive. */
void moe_weight_matmul_q8act_naive(float *y, int64_t ldy, const float *x, int64_t ldx, moe_weight w, int64_t m,
                                   int accumulate);

/* Reference of moe_routed_experts_infer's decode path with Q8 activation blocks (tests only):
 * as moe_routed_experts_infer_naive, with x rounded by moe_q8_blocks_naive for a Q4 or Q8 w1
 * (w3). For a Q4 or Q8 w2 the hidden activations stay exact and bound [T, C] gets the error the kernel's
 * rounding of them may add: Σ_slots |gate| · Σ_f |w2[c, f]| · d(f's block) / 2 (0 otherwise). */
void moe_routed_experts_infer_q8act_naive(float *y, float *bound, const float *x, const int32_t *experts,
                                          const float *gates, moe_weight w1, moe_weight w3, moe_weight w2,
                                          const float *b1, const float *b2,
                                          int64_t T, int64_t C, int64_t F, int64_t E, int64_t K, int activation);

/* Reference of moe_routed_experts_infer (tests only): per token, per slot (experts [T, K],
 * -1 dropped), no plan, weights dequantized by the reference above, double accumulation and
 * activations in double. */
void moe_routed_experts_infer_naive(float *y, const float *x, const int32_t *experts, const float *gates,
                                    moe_weight w1, moe_weight w3, moe_weight w2,
                                    const float *b1, const float *b2,
                                    int64_t T, int64_t C, int64_t F, int64_t E, int64_t K, int activation);

#ifdef __cplusplus
}
#endif
#endif
