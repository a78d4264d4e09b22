/* Naive references of the weight-format kernels (see moe_naive.h), written from the format
 * description in moe_weights.h, independent of the optimised code. */
#include "moe_naive.h"
#include "moe_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float half_value(uint16_t h) {
    const int sign = h >> 15, e = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (e == 0) v = ldexp((double)mant, -24);
    else if (e == 31) v = mant ? NAN : INFINITY;
    else v = ldexp(1.0 + mant / 1024.0, e - 15);
    return (float)(sign ? -v : v);
}

static float bf16_value(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* W[n, k] of w (rows counted from w.data). */
static float element(moe_weight w, int64_t n, int64_t k) {
    const int64_t K = w.cols;
    switch (w.format) {
    case MOE_WEIGHT_F32: return ((const float *)w.data)[n * K + k];
    case MOE_WEIGHT_BF16: return bf16_value(((const uint16_t *)w.data)[n * K + k]);
    case MOE_WEIGHT_F16: return half_value(((const uint16_t *)w.data)[n * K + k]);
    case MOE_WEIGHT_Q8: return (float)((const int8_t *)w.data)[n * K + k] * ((const float *)w.scales)[n];
    default: {
        const int64_t G = (K + 31) / 32, g = k / 32, j = k % 32;
        const uint8_t byte = ((const uint8_t *)w.data)[n * 16 * G + 16 * g + (j < 16 ? j : j - 16)];
        const int nibble = j < 16 ? (byte & 15) : (byte >> 4);
        return (float)(nibble - 8) * half_value(((const uint16_t *)w.scales)[n * G + g]);
    }
    }
}

void moe_weight_dequantize_naive(float *dst, moe_weight w, int64_t first, int64_t count) {
    for (int64_t i = 0; i < count; i++)
        for (int64_t k = 0; k < w.cols; k++) dst[i * w.cols + k] = element(w, first + i, k);
}

void moe_weight_matmul_naive(float *y, int64_t ldy, const float *x, int64_t ldx, moe_weight w, int64_t m,
                             int accumulate) {
    const int64_t N = w.rows, K = w.cols;
    float *row = malloc((size_t)(K > 0 ? K : 1) * sizeof(float));
    for (int64_t n = 0; n < N; n++) {
        moe_weight_dequantize_naive(row, w, n, 1);
        for (int64_t i = 0; i < m; i++) {
            double acc = accumulate ? (double)y[i * ldy + n] : 0.0;
            for (int64_t k = 0; k < K; k++) acc += (double)x[i * ldx + k] * (double)row[k];
            y[i * ldy + n] = (float)acc;
        }
    }
    free(row);
}

void moe_q8_blocks_naive(const float *x, int64_t K, int8_t *q, float *d) {
    for (int64_t g = 0; g < (K + 31) / 32; g++) {
        float amax = 0.0f;
        for (int64_t k = 32 * g; k < K && k < 32 * g + 32; k++)
            if (!(fabsf(x[k]) <= amax)) amax = fabsf(x[k]);
        d[g] = amax / 127.0f;
        const float inv = d[g] > 0.0f ? 1.0f / d[g] : 0.0f;
        for (int64_t j = 0; j < 32; j++) {
            const int64_t k = 32 * g + j;
            float v = k < K ? nearbyintf(x[k] * inv) : 0.0f;
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            q[k] = (int8_t)v;
        }
    }
}

/* x[0 ..< K] replaced by q·d of its Q8 blocks. */
static void q8_round_row(float *out, const float *x, int64_t K) {
    const int64_t G = (K + 31) / 32;
    int8_t *q = malloc((size_t)(32 * G > 0 ? 32 * G : 1));
    float *d = malloc((size_t)(G > 0 ? G : 1) * sizeof(float));
    moe_q8_blocks_naive(x, K, q, d);
    for (int64_t k = 0; k < K; k++) out[k] = (float)q[k] * d[k / 32]; /* exact: |q| ≤ 127 */
    free(q);
    free(d);
}

void moe_weight_matmul_q8act_naive(float *y, int64_t ldy, const float *x, int64_t ldx, moe_weight w, int64_t m,
                                   int accumulate) {
    const int64_t K = w.cols;
    float *xr = malloc((size_t)(m * K > 0 ? m * K : 1) * sizeof(float));
    for (int64_t i = 0; i < m; i++) q8_round_row(xr + i * K, x + i * ldx, K);
    moe_weight_matmul_naive(y, ldy, xr, K, w, m, accumulate);
    free(xr);
}

static double activate(double h, double u, int activation) {
    switch (activation) {
    case MOE_EXPERT_SWIGLU: return h / (1.0 + exp(-h)) * u;
    case MOE_EXPERT_GELU: return 0.5 * h * (1.0 + erf(h / sqrt(2.0)));
    case MOE_EXPERT_GELU_TANH: return 0.5 * h * (1.0 + tanh(sqrt(2.0 / 3.141592653589793) * (h + 0.044715 * h * h * h)));
    default: return h > 0 ? h : 0;
    }
}

/* Whether the kernels' decode path rounds x to Q8 activation blocks for w at the current SIMD
 * level (which formats it does so for is the kernels' stated contract, moe_weights.h). */
static int integer_format(moe_weight w) { return moe_weight_decode_rounds_x(w.format); }

/* q8 != 0: Q8 activation blocks where the decode path rounds x (see moe_routed_experts_infer_q8act_naive). */
static void routed_naive(float *y, float *bound, const float *x, const int32_t *experts, const float *gates,
                         moe_weight w1, moe_weight w3, moe_weight w2, const float *b1, const float *b2,
                         int64_t T, int64_t C, int64_t F, int64_t K, int activation, int q8) {
    const int swiglu = activation == MOE_EXPERT_SWIGLU;
    double *acc = malloc((size_t)(C > 0 ? C : 1) * sizeof(double));
    double *err = malloc((size_t)(C > 0 ? C : 1) * sizeof(double));
    double *hid = malloc((size_t)(F > 0 ? F : 1) * sizeof(double));
    float *xr = malloc((size_t)(C > 0 ? C : 1) * sizeof(float));
    float *hf = malloc((size_t)(F > 0 ? F : 1) * sizeof(float));
    int8_t *hq = malloc((size_t)(32 * ((F + 31) / 32) + 1));
    float *hd = malloc((size_t)((F + 31) / 32 + 1) * sizeof(float));
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * C;
        q8_round_row(xr, xt, C);
        const float *x1 = q8 && integer_format(w1) ? xr : xt, *x3 = q8 && integer_format(w3) ? xr : xt;
        for (int64_t c = 0; c < C; c++) acc[c] = err[c] = 0;
        for (int64_t s = 0; s < K; s++) {
            const int32_t e = experts[t * K + s];
            if (e < 0) continue;
            for (int64_t f = 0; f < F; f++) {
                double h = !swiglu && b1 ? b1[e * F + f] : 0.0, u = 0.0;
                for (int64_t c = 0; c < C; c++) {
                    h += (double)element(w1, e * F + f, c) * x1[c];
                    if (swiglu) u += (double)element(w3, e * F + f, c) * x3[c];
                }
                hid[f] = activate(h, u, activation);
                hf[f] = (float)hid[f];
            }
            const int w2q = q8 && integer_format(w2);
            if (w2q) moe_q8_blocks_naive(hf, F, hq, hd);
            for (int64_t c = 0; c < C; c++) {
                double o = b2 ? b2[e * C + c] : 0.0, ob = 0.0;
                for (int64_t f = 0; f < F; f++) {
                    const double wv = (double)element(w2, e * C + c, f);
                    o += wv * hid[f];
                    if (w2q) ob += fabs(wv) * (double)hd[f / 32] / 2;
                }
                acc[c] += (double)gates[t * K + s] * o;
                err[c] += fabs((double)gates[t * K + s]) * ob;
            }
        }
        for (int64_t c = 0; c < C; c++) {
            y[t * C + c] = (float)acc[c];
            if (bound) bound[t * C + c] = (float)err[c];
        }
    }
    free(acc);
    free(err);
    free(hid);
    free(xr);
    free(hf);
    free(hq);
    free(hd);
}

void moe_routed_experts_infer_naive(float *y, const float *x, const int32_t *experts, const float *gates,
                                    moe_weight w1, moe_weight w3, moe_weight w2,
                                    const float *b1, const float *b2,
                                    int64_t T, int64_t C, int64_t F, int64_t E, int64_t K, int activation) {
    (void)E;
    routed_naive(y, NULL, x, experts, gates, w1, w3, w2, b1, b2, T, C, F, K, activation, 0);
}

void moe_routed_experts_infer_q8act_naive(float *y, float *bound, const float *x, const int32_t *experts,
                                          const float *gates, moe_weight w1, moe_weight w3, moe_weight w2,
                                          const float *b1, const float *b2,
                                          int64_t T, int64_t C, int64_t F, int64_t E, int64_t K, int activation) {
    (void)E;
    routed_naive(y, bound, x, experts, gates, w1, w3, w2, b1, b2, T, C, F, K, activation, 1);
}
