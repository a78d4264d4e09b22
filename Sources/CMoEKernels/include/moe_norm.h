#ifndef MOE_NORM_H
#define MOE_NORM_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Normalisations over the last axis (moe_norm.c). x, out: [N, C] (any leading
 * shape flattened to N rows). Row statistics are accumulated in double and saved
 * per row for the backward pass. Rows run in parallel (OpenMP, static schedule)
 * above ~32k elements; weight/bias gradients are reduced over rows per column
 * block in row order, so every result is independent of the thread count.
 */

/* RMSNorm: rstd[n] = 1/sqrt(mean_c x[n,c]² + eps);  out[n,c] = x[n,c]·rstd[n]·weight[c].
 * rstd: [N] (may be NULL when no backward pass follows). weight: [C]. */
void moe_rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight,
                         int64_t n, int64_t c, float eps);

/* Gradients of RMSNorm (x̂ = x·rstd, ĝ = d_out·weight):
 *   d_x[n,c]   += rstd[n]·(ĝ[n,c] − x̂[n,c]·mean_c(ĝ·x̂))
 *   d_weight[c] += Σ_n d_out[n,c]·x̂[n,c]
 * d_x or d_weight may be NULL. rstd is the one saved by the forward pass. fresh_x: d_x = …
 * instead (d_x is never read). */
void moe_rmsnorm_backward(float *d_x, float *d_weight, const float *d_out,
                          const float *x, const float *weight, const float *rstd,
                          int64_t n, int64_t c, int fresh_x);

/* LayerNorm: mean[n] = mean_c x, rstd[n] = 1/sqrt(var_c x + eps) (biased variance),
 * out[n,c] = (x[n,c] − mean[n])·rstd[n]·weight[c] + bias[c].
 * mean, rstd: [N] (may be NULL when no backward pass follows). bias may be NULL (no bias). */
void moe_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias,
                           int64_t n, int64_t c, float eps);

/* Gradients of LayerNorm (x̂ = (x − mean)·rstd, ĝ = d_out·weight):
 *   d_x[n,c]    += rstd[n]·(ĝ − mean_c ĝ − x̂·mean_c(ĝ·x̂))
 *   d_weight[c] += Σ_n d_out[n,c]·x̂[n,c];   d_bias[c] += Σ_n d_out[n,c]
 * Any of d_x, d_weight, d_bias may be NULL. */
void moe_layernorm_backward(float *d_x, float *d_weight, float *d_bias, const float *d_out,
                            const float *x, const float *weight, const float *mean, const float *rstd,
                            int64_t n, int64_t c);

#ifdef __cplusplus
}
#endif
#endif
