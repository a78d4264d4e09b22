#ifndef MOE_SOFTMAX_H
#define MOE_SOFTMAX_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Softmax family over the last axis (moe_softmax.c). x, out: [N, V] (any leading
 * shape flattened to N rows). Max-subtracted, exponential sums in double. Rows
 * run in parallel (OpenMP, static schedule) above ~32k elements; results do not
 * depend on the thread count.
 */

/* out[n, v] = exp(x[n, v] − max) / Σ_u exp(x[n, u] − max); a row that is all −inf
 * (fully masked) gives zeros. */
void moe_softmax_forward(float *out, const float *x, int64_t n, int64_t v);
/* d_x += y ⊙ (d_out − Σ_v d_out·y), with y = out of the forward pass. */
void moe_softmax_backward(float *d_x, const float *d_out, const float *out, int64_t n, int64_t v);

/* out[n, v] = x[n, v] − logsumexp_u x[n, u] */
void moe_log_softmax_forward(float *out, const float *x, int64_t n, int64_t v);
/* d_x += d_out − exp(out) · Σ_v d_out, with out the forward result. */
void moe_log_softmax_backward(float *d_x, const float *d_out, const float *out, int64_t n, int64_t v);

/*
 * Fused softmax cross-entropy with an ignore index.
 *   logits: [N, V]; targets: [N] int32, each in [0, V) or equal to ignore_index
 *   (the caller guarantees this; the Swift layer validates).
 *   lse: [N], saved logsumexp of every non-ignored row (ignored rows: 0).
 *   loss[0] = (1/count) Σ_{n: targets[n] != ignore} (lse[n] − logits[n, targets[n]]),
 *   count = number of non-ignored rows; loss[0] = 0 when count == 0.
 * Returns count. The row losses are summed in row order in double.
 */
int64_t moe_cross_entropy_forward(float *loss, float *lse, const float *logits, const int32_t *targets,
                                  int64_t n, int64_t v, int32_t ignore_index);

/* d_logits[n, :] += (d_loss[0] / count) · (softmax(logits[n, :]) − onehot(targets[n]))
 * for non-ignored rows; ignored rows (and count == 0) receive nothing.
 * lse and count are those of the forward pass. */
void moe_cross_entropy_backward(float *d_logits, const float *d_loss, const float *lse,
                                const float *logits, const int32_t *targets,
                                int64_t n, int64_t v, int32_t ignore_index, int64_t count);

#ifdef __cplusplus
}
#endif
#endif
