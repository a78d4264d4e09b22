#ifndef MOE_POSITION_H
#define MOE_POSITION_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Rotary position embedding (RoPE).
 *
 * R is the rotary width (even, R <= D): the first R features of every head are
 * rotated, features R..D-1 pass through unchanged (partial rotary). Frequency i
 * (i in 0..<R/2) rotates by angle pos * inv_freq[i].
 *
 * Pairing styles:
 *   MOE_ROPE_HALF_SPLIT  (0) pairs (i, i + R/2)   Hugging Face "rotate_half"
 *                            (Llama, Mixtral, Qwen, GPT-NeoX).
 *   MOE_ROPE_INTERLEAVED (1) pairs (2i, 2i + 1)   GPT-J, Meta's original Llama
 *                            (complex multiplication).
 * For a pair (a, b) rotated by angle θ:  a' = a·cosθ − b·sinθ,  b' = b·cosθ + a·sinθ.
 */
enum { MOE_ROPE_HALF_SPLIT = 0, MOE_ROPE_INTERLEAVED = 1 };

/* inv_freq[R/2]: inv_freq[i] = 1 / theta^(2i / R), in float32 exactly as
 * transformers computes it (exponent float(2i)/float(R), powf, float division). */
void moe_rope_inv_freq(float *inv_freq, int64_t R, float theta);

/* Angle tables for positions start .. start+T-1:
 *   cos_t, sin_t: [T, R/2];  angle[t, i] = float(start + t) * inv_freq[i] (float32
 *   product, then cosf/sinf, as transformers' float32 path). inv_freq: [R/2]. */
void moe_rope_tables(float *cos_t, float *sin_t, const float *inv_freq,
                     int64_t start, int64_t T, int64_t R);

/* out[B, T, H, D] = rotate(x[B, T, H, D]) with tables cos_t/sin_t [T, R/2].
 * out may equal x (in place). Parallel over the B·T rows. */
void moe_rope_forward(float *out, const float *x, const float *cos_t, const float *sin_t,
                      int64_t B, int64_t T, int64_t H, int64_t D, int64_t R, int style);

/* dx[B, T, H, D] += rotation of d_out by the negative angle (the transpose of the
 * forward rotation); pass-through features accumulate d_out unchanged. fresh: dx = … instead
 * (dx is never read). */
void moe_rope_backward(float *dx, const float *d_out, const float *cos_t, const float *sin_t,
                       int64_t B, int64_t T, int64_t H, int64_t D, int64_t R, int style, int fresh);


/*
 * Sinusoidal position encoding (Vaswani et al. 2017), width C:
 *   PE[p, 2i]   = sin(p / 10000^(2i/C)),   PE[p, 2i+1] = cos(p / 10000^(2i/C)),
 * p = start + t. For odd C the last column (2i = C-1) is a sine.
 * Computed in double, rounded to float.  pe: [T, C].  base is 10000 in the paper.
 */
void moe_sinusoidal_table(float *pe, int64_t start, int64_t T, int64_t C, double base);

/* out[B, T, C] = x[B, T, C] + pe[T, C] (broadcast over B). out may equal x. */
void moe_sinusoidal_forward(float *out, const float *x, const float *pe,
                            int64_t B, int64_t T, int64_t C);

/* dx[B, T, C] += d_out[B, T, C] (the table is a constant). */
void moe_sinusoidal_backward(float *dx, const float *d_out, int64_t B, int64_t T, int64_t C);

#ifdef __cplusplus
}
#endif
#endif
