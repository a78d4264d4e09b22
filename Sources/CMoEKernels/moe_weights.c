/* Weight storage formats: sizes, views, quantize, dequantize, and y = x·Wᵀ for W in any
 * format (decode and prefill paths). See include/moe_weights.h for the formats. */
#include <stdlib.h>
#include "moe_weights_internal.h"
#include "internal.h"
#include <math.h>
#include <string.h>

int64_t moe_weight_row_bytes(int format, int64_t cols) {
    switch (format) {
    case MOE_WEIGHT_F32: return 4 * cols;
    case MOE_WEIGHT_BF16:
    case MOE_WEIGHT_F16: return 2 * cols;
    case MOE_WEIGHT_Q8: return cols;
    default: return 16 * ((cols + MOE_Q4_GROUP - 1) / MOE_Q4_GROUP);
    }
}

int64_t moe_weight_scales_per_row(int format, int64_t cols) {
    switch (format) {
    case MOE_WEIGHT_Q8: return 1;
    case MOE_WEIGHT_Q4: return (cols + MOE_Q4_GROUP - 1) / MOE_Q4_GROUP;
    default: return 0;
    }
}

moe_weight moe_weight_rows(moe_weight w, int64_t first, int64_t count) {
    moe_weight r = w;
    r.data = (const uint8_t *)w.data + first * moe_weight_row_bytes(w.format, w.cols);
    const int64_t s = first * moe_weight_scales_per_row(w.format, w.cols);
    if (w.format == MOE_WEIGHT_Q8) r.scales = (const float *)w.scales + s;
    else if (w.format == MOE_WEIGHT_Q4) r.scales = (const uint16_t *)w.scales + s;
    r.rows = count;
    return r;
}

/* ------------------------------------------------------------------------------------
 * Quantize
 * ------------------------------------------------------------------------------------ */

/* float32 → bfloat16 bits, round to nearest even (NaN stays NaN, quiet). */
static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* float32 → IEEE half bits, round to nearest even; overflow → ±inf, NaN stays NaN. */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* ≥ 65520 (and inf) */
    if (ax < 0x38800000u) {                                   /* below 2^-14: subnormal or 0 */
        /* |f| + 0.5 has an ulp of 2^-24, the half subnormal unit: the FPU rounds (to nearest
         * even) and the low bits are the half's mantissa (0x400 = the least normal). */
        float v, half = 0.5f;
        memcpy(&v, &ax, sizeof v);
        v += half;
        uint32_t b;
        memcpy(&b, &v, sizeof b);
        return (uint16_t)(sign | (b - 0x3f000000u));
    }
    /* rebias the exponent (−112 · 2^23) and round the 13 dropped bits to nearest even */
    return (uint16_t)(sign | ((ax + 0xc8000fffu + ((ax >> 13) & 1u)) >> 13));
}

/* clamp(roundf(v), lo, hi) (round half away from zero) without a libm call: trunc(v ±
 * 0.49999997) is roundf exactly (the same lowering compilers use with SSE4.1); NaN → lo. */
static inline float round_clamp(float v, float lo, float hi) {
    v = fminf(fmaxf(v, -256.0f), 256.0f);
    const float r = (float)(int32_t)(v + copysignf(0.49999997f, v));
    return fminf(fmaxf(r, lo), hi);
}

static void quantize_row(void *data, void *scales, const float *src, int64_t n, int64_t K, int format) {
    const int64_t rb = moe_weight_row_bytes(format, K);
    uint8_t *row = (uint8_t *)data + n * rb;
    src += n * K;
    switch (format) {
    case MOE_WEIGHT_F32: memcpy(row, src, (size_t)K * sizeof(float)); break;
    case MOE_WEIGHT_BF16:
        for (int64_t k = 0; k < K; k++) ((uint16_t *)row)[k] = f32_to_bf16(src[k]);
        break;
    case MOE_WEIGHT_F16:
        for (int64_t k = 0; k < K; k++) ((uint16_t *)row)[k] = f32_to_f16(src[k]);
        break;
    case MOE_WEIGHT_Q8: {
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(src[k]));
        const float s = amax / 127.0f;
        ((float *)scales)[n] = s;
        if (s > 0.0f)
            for (int64_t k = 0; k < K; k++) ((int8_t *)row)[k] = (int8_t)round_clamp(src[k] / s, -127.0f, 127.0f);
        else memset(row, 0, (size_t)K);
        break;
    }
    default: { /* Q4 */
        const int64_t G = moe_weight_scales_per_row(MOE_WEIGHT_Q4, K);
        uint16_t *gs = (uint16_t *)scales + n * G;
        for (int64_t g = 0; g < G; g++) {
            const int64_t k0 = g * MOE_Q4_GROUP, len = K - k0 < MOE_Q4_GROUP ? K - k0 : MOE_Q4_GROUP;
            float amax = 0.0f;
            for (int64_t j = 0; j < len; j++) amax = fmaxf(amax, fabsf(src[k0 + j]));
            gs[g] = f32_to_f16(amax / 7.0f);
            const float s = moe_f16_to_f32(gs[g]);
            uint8_t nib[MOE_Q4_GROUP];
            if (s > 0.0f && len == MOE_Q4_GROUP)
                for (int64_t j = 0; j < MOE_Q4_GROUP; j++)
                    nib[j] = (uint8_t)((int)round_clamp(src[k0 + j] / s, -8.0f, 7.0f) + 8);
            else
                for (int64_t j = 0; j < MOE_Q4_GROUP; j++)
                    nib[j] = (uint8_t)((j < len && s > 0.0f ? (int)round_clamp(src[k0 + j] / s, -8.0f, 7.0f) : 0) + 8);
            for (int j = 0; j < 16; j++) row[g * 16 + j] = (uint8_t)(nib[j] | (nib[j + 16] << 4));
        }
        break;
    }
    }
}

void moe_weight_quantize(void *data, void *scales, const float *src, int64_t rows, int64_t cols, int format) {
#pragma omp parallel for schedule(static) if (rows * cols > MOE_WEIGHT_PARALLEL_MIN_ELEMENTS && !moe_in_region())
    for (int64_t n = 0; n < rows; n++) quantize_row(data, scales, src, n, cols, format);
}

void moe_weight_dequantize(float *dst, moe_weight w, int64_t first, int64_t count) {
    const moe_weight_kernels *kern = moe_weight_kernels_current();
    const int64_t K = w.cols;
#pragma omp parallel for schedule(static) if (count * K > MOE_WEIGHT_PARALLEL_MIN_ELEMENTS && !moe_in_region())
    for (int64_t i = 0; i < count; i++) kern->dequant(&w, first + i, first + i + 1, dst + i * K, K);
}

/* ------------------------------------------------------------------------------------
 * y = x·Wᵀ
 * ------------------------------------------------------------------------------------ */

/* Threads the weight kernels use here: 1 inside a parallel region. */
static int weight_threads(void) { return moe_in_region() ? 1 : moe_threads_current(); }

/* Rows up to which a matmul runs as GEMV (each weight read once for all rows) rather than
 * dequantized panels × sgemm (float32: plain sgemm, which would pack W on every call):
 * MOE_WEIGHT_DECODE_MAX_M, or no limit for a format with an integer kernel at this level
 * (both measured in moe_weights_internal.h).
 * SPARSEMOE_DECODE_MAX_M (1…256), read once, overrides it, for measurements. */
static int64_t g_decode_max_m = 0; /* 0: not read yet; -1: no override */

int64_t moe_weight_decode_max_m(int format) {
    if (g_decode_max_m == 0) {
        const char *env = getenv("SPARSEMOE_DECODE_MAX_M");
        const long v = env ? strtol(env, NULL, 10) : 0;
        g_decode_max_m = v >= 1 && v <= 256 ? v : -1;
    }
    if (g_decode_max_m > 0) return g_decode_max_m;
    if (moe_weight_q8act_kernel(moe_weight_kernels_current(), format)) return MOE_WEIGHT_INTEGER_MAX_M;
    return MOE_WEIGHT_DECODE_MAX_M;
}

int64_t moe_weight_matmul_workspace_size(moe_weight w, int64_t m) {
    if (m <= moe_weight_decode_max_m(w.format))
        return moe_weight_decode_rounds_x(w.format) ? moe_q8_blocks_floats(m, w.cols) : 0;
    if (w.format == MOE_WEIGHT_F32) return 0;
    return (int64_t)weight_threads() * moe_weight_panel_floats(w.cols);
}

void moe_q8_blocks(const float *x, int64_t K, int8_t *q, float *d) {
    const int64_t G = (K + 31) / 32;
    for (int64_t g = 0; g < G; g++) {
        const int64_t k0 = 32 * g, len = K - k0 < 32 ? K - k0 : 32;
        float amax = 0.0f;
        for (int64_t j = 0; j < len; j++) {
            const float a = fabsf(x[k0 + j]);
            amax = a > amax || a != a ? a : amax; /* NaN propagates into d */
        }
        const float dg = amax / 127.0f, id = dg > 0.0f ? 1.0f / dg : 0.0f;
        d[g] = dg;
        for (int64_t j = 0; j < 32; j++) {
            float v = j < len ? x[k0 + j] * id : 0.0f;
            v = fminf(fmaxf(v, -127.0f), 127.0f);
            v = (v + 12582912.0f) - 12582912.0f; /* round half to even (|v| ≤ 127 < 2^22) */
            q[k0 + j] = (int8_t)v;
        }
    }
}

void moe_q8_blocks_q4_order(const int8_t *src, int8_t *dst, int64_t K) {
    const int64_t G = (K + 31) / 32;
    for (int64_t b = 0; b + 4 <= G; b += 4) {
        int8_t t[128];
        memcpy(t, src + 32 * b, 128);
        for (int64_t g = 0; g < 4; g++) {
            memcpy(dst + 32 * b + 16 * g, t + 32 * g, 16);
            memcpy(dst + 32 * b + 64 + 16 * g, t + 32 * g + 16, 16);
        }
    }
    if (dst != src) memcpy(dst + 32 * (G - G % 4), src + 32 * (G - G % 4), (size_t)(32 * (G % 4)));
}

/* Decode: every thread a contiguous block of rows of W, dot products on the fly (Q4 and Q8
 * with a level's integer kernel: x as Q8 activation blocks in the workspace first). */
static void matmul_decode(float *y, int64_t ldy, const float *x, int64_t ldx, const moe_weight *w, int64_t m,
                          int accumulate, float *workspace) {
    const moe_weight_kernels *kern = moe_weight_kernels_current();
    const int64_t N = w->rows, K = w->cols, G = (K + 31) / 32;
    const moe_q8act_gemv q8 = moe_weight_q8act_kernel(kern, w->format);
    int8_t *xq = (int8_t *)workspace;
    float *xd = workspace + 8 * m * G;
    if (q8)
        for (int64_t i = 0; i < m; i++) {
            moe_q8_blocks(x + i * ldx, K, xq + i * 32 * G, xd + i * G);
            if (w->format == MOE_WEIGHT_Q4) moe_q8_blocks_q4_order(xq + i * 32 * G, xq + i * 32 * G, K);
        }
    int nt = weight_threads();
    if (N * w->cols < MOE_WEIGHT_PARALLEL_MIN_ELEMENTS || N < 2) nt = 1;
    /* Pieces of rows taken by whichever thread of the team (moe_team) is free: a row's result
     * depends on neither the piece nor the thread. */
    int64_t pieces = nt > 1 ? (int64_t)nt * MOE_WEIGHT_DECODE_PIECES_PER_THREAD : 1;
    if (pieces > N) pieces = N;
    if (nt == 1) { /* no OpenMP region at all (MOE_PARALLEL_FOR says why) */
        if (q8) q8(w, 0, N, xq, xd, m, y, ldy, accumulate);
        else kern->gemv(w, 0, N, x, ldx, m, y, ldy, accumulate);
        return;
    }
    int64_t next = 0;
#pragma omp parallel num_threads(moe_team(nt))
    for (int64_t p; (p = moe_next_piece(&next, pieces)) >= 0;) {
        const int64_t n0 = N * p / pieces, n1 = N * (p + 1) / pieces;
        if (q8) q8(w, n0, n1, xq, xd, m, y, ldy, accumulate);
        else kern->gemv(w, n0, n1, x, ldx, m, y, ldy, accumulate);
    }
}

/* Prefill: panels of P rows of W dequantized into the thread's workspace, then one
 * single-threaded sgemm per panel; panels go round-robin over the threads. */
static void matmul_prefill(float *y, int64_t ldy, const float *x, int64_t ldx, const moe_weight *w, int64_t m,
                           int accumulate, float *workspace) {
    const moe_weight_kernels *kern = moe_weight_kernels_current();
    const int64_t N = w->rows, K = w->cols;
    const int nt = weight_threads();
    /* P: at most MOE_WEIGHT_PANEL_ROWS, small enough that every thread gets a panel */
    int64_t P = (N + nt - 1) / nt;
    P = (P + 15) / 16 * 16;
    if (P > MOE_WEIGHT_PANEL_ROWS) P = MOE_WEIGHT_PANEL_ROWS;
    const int64_t panels = (N + P - 1) / P;
    const int team = moe_team(panels < nt ? (int)panels : nt);
#pragma omp parallel num_threads(team) if (team > 1)
    {
        const int t = team > 1 ? omp_get_thread_num() : 0, size = team > 1 ? omp_get_num_threads() : 1;
        float *panel = workspace + (int64_t)t * moe_weight_panel_floats(K);
        for (int64_t p = t; p < panels; p += size) {
            const int64_t n0 = p * P, n1 = n0 + P < N ? n0 + P : N;
            kern->dequant(w, n0, n1, panel, K);
            moe_sgemm(0, 1, m, n1 - n0, K, 1.0f, x, ldx, panel, K, accumulate ? 1.0f : 0.0f, y + n0, ldy);
        }
    }
}

void moe_weight_matmul(float *y, int64_t ldy, const float *x, int64_t ldx, moe_weight w, int64_t m,
                       int accumulate, float *workspace) {
    const int64_t N = w.rows, K = w.cols;
    if (m <= 0 || N <= 0) return;
    if (K == 0) {
        if (!accumulate)
            for (int64_t i = 0; i < m; i++) memset(y + i * ldy, 0, (size_t)N * sizeof(float));
        return;
    }
    if (m <= moe_weight_decode_max_m(w.format)) matmul_decode(y, ldy, x, ldx, &w, m, accumulate, workspace);
    else if (w.format == MOE_WEIGHT_F32)
        moe_sgemm(0, 1, m, N, K, 1.0f, x, ldx, (const float *)w.data, K, accumulate ? 1.0f : 0.0f, y, ldy);
    else matmul_prefill(y, ldy, x, ldx, &w, m, accumulate, workspace);
}
