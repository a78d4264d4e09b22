#ifndef MOE_POINTWISE_H
#define MOE_POINTWISE_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Elementwise arithmetic, activations and reductions (moe_pointwise.c).
 * Loops run in parallel (OpenMP, static schedule) above ~32k elements, serially
 * below. Every result is independent of the thread count: elementwise ops touch
 * each element once, and reductions use fixed blocks summed in a fixed order.
 */

/* ---- Binary arithmetic with row broadcasting -------------------------------
 * a: [N, D].  b: [N, D] when b_broadcast == 0, or [D] (one row, added to every
 * row of a) when b_broadcast != 0.  out: [N, D] (may alias a or b).            */

/* out = a + beta * b   (beta = 1 add, -1 subtract) */
void moe_add_forward(float *out, const float *a, const float *b, float beta,
                     int64_t n, int64_t d, int b_broadcast);
/* d_a [N, D] += d_out;  d_b += beta * d_out, summed over the N rows (in row order)
 * when b is broadcast. fresh_a / fresh_b: write (=) instead of adding, never reading the
 * buffer. d_a is complete before d_b is touched (they may be the same buffer). */
void moe_add_backward(float *d_a, float *d_b, const float *d_out, float beta,
                      int64_t n, int64_t d, int b_broadcast, int fresh_a, int fresh_b);

/* out = a * b (elementwise) */
void moe_mul_forward(float *out, const float *a, const float *b,
                     int64_t n, int64_t d, int b_broadcast);
/* d_a += d_out * b;  d_b += d_out * a (summed over rows in row order when broadcast). */
void moe_mul_backward(float *d_a, float *d_b, const float *d_out, const float *a, const float *b,
                      int64_t n, int64_t d, int b_broadcast);

/* out[i] = s * x[i], i < n */
void moe_scale_forward(float *out, const float *x, float s, int64_t n);
/* d_x[i] += s * d_out[i] */
void moe_scale_backward(float *d_x, const float *d_out, float s, int64_t n);


/* ---- Reductions -------------------------------------------------------------- */

/* out[0] = scale * Σ_i x[i], i < n  (scale 1 = sum, 1/n = mean). Accumulated in
 * double over 64 fixed blocks summed in block order. */
void moe_sum_forward(float *out, const float *x, float scale, int64_t n);
/* d_x[i] += scale * d_out[0] */
void moe_sum_backward(float *d_x, const float *d_out, float scale, int64_t n);

/* Sum over the last axis: out[N] = Σ_j x[N, D]; double accumulation per row. */
void moe_sum_last_forward(float *out, const float *x, int64_t n, int64_t d);
/* d_x[i, j] += d_out[i] */
void moe_sum_last_backward(float *d_x, const float *d_out, int64_t n, int64_t d);

/* ---- Activations: out, x, d_x, d_out all [n] --------------------------------- */

/* SiLU: x · σ(x) */
void moe_silu_forward(float *out, const float *x, int64_t n);
void moe_silu_backward(float *d_x, const float *d_out, const float *x, int64_t n);

/* GELU, tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))) */
void moe_gelu_tanh_forward(float *out, const float *x, int64_t n);
void moe_gelu_tanh_backward(float *d_x, const float *d_out, const float *x, int64_t n);

/* GELU, exact: ½x(1 + erf(x/√2)) = ½x·erfc(−x/√2) (erfc to ~1e-7 relative) */
void moe_gelu_erf_forward(float *out, const float *x, int64_t n);
void moe_gelu_erf_backward(float *d_x, const float *d_out, const float *x, int64_t n);

/* ReLU: max(x, 0); gradient 0 at x <= 0 */
void moe_relu_forward(float *out, const float *x, int64_t n);
void moe_relu_backward(float *d_x, const float *d_out, const float *x, int64_t n);

/* SwiGLU: out = silu(gate) · up. gate, up, out: [n]. d_gate / d_up may be NULL. */
void moe_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
void moe_swiglu_backward(float *d_gate, float *d_up, const float *d_out,
                         const float *gate, const float *up, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
