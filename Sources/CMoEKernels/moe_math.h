/* Private math helpers for the elementwise / row kernels. Not part of the public header.
 *
 * - moe_expf: exp(x) for float without libm calls, written so that loops over it
 *   vectorise (no branches, only selects, no calls). Cephes-style: n = round(x·log2 e),
 *   r = x − n·ln 2 (two-constant split), degree-6 polynomial, scale by 2ⁿ built
 *   from exponent bits. Relative error ≈ 1–2 ulp over the normal range.
 *   x > 88.72 → +inf; x < −87.33 → 0 (results that would be subnormal flush to 0);
 *   NaN → NaN. Needs no -ffast-math.
 * - Row reductions with 8 independent double accumulators in a fixed order:
 *   vectorisable and deterministic (same bits for any thread count), slightly
 *   different rounding from a single running sum.
 */
#ifndef MOE_MATH_H
#define MOE_MATH_H

#include <stdint.h>
#include <string.h>

static inline float moe_pow2i(int32_t n) { /* 2ⁿ for n in [-126, 127] */
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float moe_expf(float x) {
    const float hi = 88.72283f, lo = -87.33654f;
    float xc = x > hi ? hi : (x < lo ? lo : x);
    /* n = round(x·log2 e), to nearest even by adding and removing 1.5·2²³ (|x·log2 e| ≤ 128):
     * plain SSE2 arithmetic, where floorf is a libm call per element in a build without
     * -msse4.1 (the package's is portable), which kept these loops from vectorising. Two
     * statements, so that no FMA contraction changes the rounding. */
    const float t = xc * 1.44269504088896341f;
    const float fn = (t + 12582912.0f) - 12582912.0f;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t n = (int32_t)fn;          /* in [-126, 128] */
    int32_t a = n >> 1, b = n - a;    /* both in [-63, 64] */
    float y = p * moe_pow2i(a) * moe_pow2i(b);
    y = x > hi ? __builtin_inff() : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

/* σ(x) = 1 / (1 + e^{−x}) */
static inline float moe_sigmoidf(float x) { return 1.0f / (1.0f + moe_expf(-x)); }

/* tanh(u) = 1 − 2 / (e^{2u} + 1): absolute error ≈ 1e-7 (relative error grows near 0). */
static inline float moe_tanhf(float u) { return 1.0f - 2.0f / (moe_expf(2.0f * u) + 1.0f); }

/* erfc(x) without libm: for z = |x|, erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2)
 * (Numerical Recipes' erfcc, fractional error < 1.2e-7 in exact arithmetic; the float
 * rounding of z² adds ≈ z²·6e-8 relative), and erfc(−z) = 2 − erfc(z). Computing
 * GELU as ½x·erfc(−x/√2) keeps relative accuracy in the negative tail, where
 * 1 + erf(x) cancels. */
static inline float moe_erfcf(float x) {
    float z = __builtin_fabsf(x);
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = -1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f));
    p = 0.37409196f + t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f + t * p)));
    p = -z * z - 1.26551223f + t * (1.00002368f + t * p);
    float r = t * moe_expf(p);
    return x >= 0.0f ? r : 2.0f - r;
}

#define MOE_LANES 8

/* Combine the lanes in a fixed pairwise order. (Loops index their lane arrays only
 * with constants and keep the remainder in a separate scalar, so that the arrays
 * live in vector registers.) */
static inline double moe_lanes_total(const double *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Σ x[i] in double. */
static inline double moe_sum_d(const float *x, int64_t n) {
    double acc[MOE_LANES] = {0}, tail = 0.0;
    int64_t i = 0;
    for (; i + MOE_LANES <= n; i += MOE_LANES)
        for (int l = 0; l < MOE_LANES; l++) acc[l] += (double)x[i + l];
    for (; i < n; i++) tail += (double)x[i];
    return moe_lanes_total(acc) + tail;
}

/* Σ x[i]·y[i] in double. */
static inline double moe_dot_d(const float *x, const float *y, int64_t n) {
    double acc[MOE_LANES] = {0}, tail = 0.0;
    int64_t i = 0;
    for (; i + MOE_LANES <= n; i += MOE_LANES)
        for (int l = 0; l < MOE_LANES; l++) acc[l] += (double)x[i + l] * (double)y[i + l];
    for (; i < n; i++) tail += (double)x[i] * (double)y[i];
    return moe_lanes_total(acc) + tail;
}

/* max_i x[i]; −inf for n == 0. NaN elements are skipped here (callers' exp sums still
 * turn them into NaN results). */
static inline float moe_max_f(const float *x, int64_t n) {
    float acc[MOE_LANES];
    for (int l = 0; l < MOE_LANES; l++) acc[l] = -__builtin_inff();
    int64_t i = 0;
    for (; i + MOE_LANES <= n; i += MOE_LANES)
        for (int l = 0; l < MOE_LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    float m = -__builtin_inff();
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int l = 0; l < MOE_LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

#define MOE_EXP_CHUNK 512

/* out[i] = e^{x[i] − m} (out may be NULL: a stack chunk is used); returns Σ e^{x[i] − m}
 * in double. Exponentials are computed a chunk at a time in a plain loop (vectorised),
 * then summed into the lanes. */
static inline double moe_exp_shift_sum(float *out, const float *x, float m, int64_t n) {
    float tmp[MOE_EXP_CHUNK];
    double total = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += MOE_EXP_CHUNK) {
        int64_t w = n - i0 < MOE_EXP_CHUNK ? n - i0 : MOE_EXP_CHUNK;
        float *dst = out ? out + i0 : tmp;
        const float *src = x + i0;
        for (int64_t j = 0; j < w; j++) dst[j] = moe_expf(src[j] - m);
        total += moe_sum_d(dst, w);
    }
    return total;
}

/* Columns [*c0, *c1) of thread t of `parts` when c columns are split in aligned
 * groups of 16. Reductions over rows split this way never share an output element,
 * and each column still sums its rows in row order: the result does not depend on
 * the partition (or the thread count). */
static inline void moe_column_range(int64_t c, int64_t t, int64_t parts, int64_t *c0, int64_t *c1) {
    int64_t groups = (c + 15) / 16;
    int64_t g0 = groups * t / parts, g1 = groups * (t + 1) / parts;
    *c0 = g0 * 16;
    *c1 = g1 * 16 < c ? g1 * 16 : c;
}

/* How many threads a column-split reduction over c columns and n·c elements uses:
 * 1 below ~32k elements, at most one per 16 columns. */
static inline int moe_column_threads(int nt, int64_t n, int64_t c) {
    if (n * c <= 32768) return 1;
    int64_t groups = c / 16;
    return groups < nt ? (groups < 1 ? 1 : (int)groups) : nt;
}

#endif
