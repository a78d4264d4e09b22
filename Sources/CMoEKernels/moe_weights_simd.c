/* The weight kernels per SIMD level (dot products with W dequantized in registers, and row
 * dequantization) and the run-time choice of level. The package is built without -march:
 * the AVX2 and AVX-512 paths are compiled with target attributes and chosen once at run time
 * from the CPU's features; the scalar path is portable C and always correct.
 * See moe_weights_internal.h for the kernel contract, moe_weights_simd_body.h for the code. */
#include "moe_weights_internal.h"
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------
 * Scalar: dequantize a chunk of the row, then 8-lane dot products (vectorisable anywhere).
 * ------------------------------------------------------------------------------------ */

#define SCALAR_CHUNK 256

/* buf[0 ..< len) = W[n, k0 ..< k0 + len] (scale applied). */
static void scalar_chunk(const moe_weight *w, int64_t n, int64_t k0, int64_t len, float *restrict buf) {
    const int64_t K = w->cols;
    const uint8_t *row = (const uint8_t *)w->data + n * moe_weight_row_bytes(w->format, K);
    switch (w->format) {
    case MOE_WEIGHT_F32:
        memcpy(buf, (const float *)row + k0, (size_t)len * sizeof(float));
        break;
    case MOE_WEIGHT_BF16:
        for (int64_t j = 0; j < len; j++) buf[j] = moe_bf16_to_f32(((const uint16_t *)row)[k0 + j]);
        break;
    case MOE_WEIGHT_F16:
        for (int64_t j = 0; j < len; j++) buf[j] = moe_f16_to_f32(((const uint16_t *)row)[k0 + j]);
        break;
    case MOE_WEIGHT_Q8: {
        const float s = ((const float *)w->scales)[n];
        for (int64_t j = 0; j < len; j++) buf[j] = (float)((const int8_t *)row)[k0 + j] * s;
        break;
    }
    default: {
        const uint16_t *gs = (const uint16_t *)w->scales + n * moe_weight_scales_per_row(MOE_WEIGHT_Q4, K);
        for (int64_t j = 0; j < len; j++) {
            const int64_t k = k0 + j;
            buf[j] = (float)moe_q4_at(row, k) * moe_f16_to_f32(gs[k / 32]);
        }
        break;
    }
    }
}

static void scalar_dequant(const moe_weight *w, int64_t n0, int64_t n1, float *dst, int64_t ldd) {
    for (int64_t n = n0; n < n1; n++) scalar_chunk(w, n, 0, w->cols, dst + (n - n0) * ldd);
}

static void scalar_gemv(const moe_weight *w, int64_t n0, int64_t n1, const float *x, int64_t ldx, int64_t m,
                        float *y, int64_t ldy, int accumulate) {
    const int64_t K = w->cols;
    float buf[SCALAR_CHUNK];
    for (int64_t n = n0; n < n1; n++) {
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0.0f;
            for (int64_t k0 = 0; k0 < K; k0 += SCALAR_CHUNK) {
                const int64_t len = K - k0 < SCALAR_CHUNK ? K - k0 : SCALAR_CHUNK;
                scalar_chunk(w, n, k0, len, buf);
                int64_t j = 0;
                for (; j + 8 <= len; j += 8)
                    for (int l = 0; l < 8; l++) acc[l] += buf[j + l] * xi[k0 + j + l];
                for (; j < len; j++) tail += buf[j] * xi[k0 + j];
            }
            float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
            float *yi = y + i * ldy + n;
            *yi = accumulate ? *yi + s : s;
        }
    }
}

static const moe_weight_kernels scalar_kernels = {scalar_gemv, scalar_dequant, NULL};

#if defined(__x86_64__)
#include <immintrin.h>

/* ------------------------------------------------------------------------------------
 * AVX2 + FMA + F16C: 8 floats per vector.
 * ------------------------------------------------------------------------------------ */

#define ATTR __attribute__((target("avx2,fma,f16c")))
#define VL 8
#define LV(name) avx2_##name
typedef __m256 avx2_v;

static inline ATTR __m256 avx2_zero(void) { return _mm256_setzero_ps(); }
static inline ATTR __m256 avx2_loadf(const float *p) { return _mm256_loadu_ps(p); }
static inline ATTR void avx2_storef(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
static inline ATTR __m256 avx2_set1(float f) { return _mm256_set1_ps(f); }
static inline ATTR __m256 avx2_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
static inline ATTR __m256 avx2_mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
static inline ATTR __m256 avx2_fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
static inline ATTR float avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* lanes i + (i+4) */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                        /* + (i+2) */
    s = _mm_add_ss(s, _mm_movehdup_ps(s));                                         /* + (i+1) */
    return _mm_cvtss_f32(s);
}
static inline ATTR __m256 avx2_load_bf16(const uint16_t *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
static inline ATTR __m256 avx2_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline ATTR __m256 avx2_load_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
/* 16 bytes: low nibbles are elements 0..15, high nibbles 16..31; q = nibble − 8. */
static inline ATTR void avx2_q4(const uint8_t *g, __m256 s, __m256 out[4]) {
    const __m128i b = _mm_loadu_si128((const __m128i *)g), mask = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(b, mask), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), mask), eight);
    out[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), s);
    out[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), s);
    out[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), s);
    out[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), s);
}

#include "moe_weights_simd_body.h"

/* Q4 × Q8 activation blocks, integer dot products per group of 32. The nibbles u = q_w + 8 ∈
 * [0, 15] go into maddubs unsigned against the signed q_x: 16 exact int16 pair sums
 * (|·| ≤ 2·15·127), madd with ones 8 int32 lanes, converted and FMA'd with sc = s_w · d_x.
 * The −8 of every nibble is taken off once per (W row, x row) in floats:
 *   Σ_g sc_g · Σ_j q_w·q_x = Σ_g sc_g · Σ_j u·q_x − Σ_g sc_g · 8·Σ_j q_x,
 * with 8·Σ_j q_x per group (xs8, exact) computed once per call. The same code for every
 * x-row count (per x row: two accumulators, even / odd groups, and one for the correction),
 * so a row's result does not depend on how many rows share the call. Also used at the
 * AVX-512 level. */

/* Groups per window: the x sums of one window (m × this many floats) live on the stack;
 * longer rows run window after window, the later windows accumulating. */
#define Q4Q8_WINDOW_GROUPS 256

/* The 32 nibbles of one group, unsigned: low nibbles (elements 0..15) in the low lane, high
 * nibbles (16..31) in the high lane (the high lane shifted right by 4 as whole 64-bit words:
 * bits that cross into a byte's high nibble are masked off). */
static inline ATTR __m256i avx2_q4_nibbles(const uint8_t *g) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)g));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0f));
}

/* 8 int32 lanes of Σ u·q_x over one group, as floats. */
static inline ATTR __m256 avx2_q4q8_group(__m256i u, const int8_t *xq) {
    const __m256i p16 = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)xq));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* out[i] = Σ_{g<G} s[g]·xd[i·ldd + g]·Σ_j q_w·xq[i·ldq + 32g + j] for i < mr (mr ≤ 4), the
 * groups g of one window; xs8[i·G + g] = 8·Σ_j xq[…]. */
static inline __attribute__((always_inline)) ATTR void avx2_q4q8_rows(const int mr, const uint8_t *row,
                                                                     const uint16_t *gs, int64_t G,
                                                                     const int8_t *xq, int64_t ldq,
                                                                     const float *xd, int64_t ldd,
                                                                     const float *xs8, float *out) {
    __m256 acc[4][2], cor[4];
    float cor_tail[4] = {0, 0, 0, 0};
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = cor[i] = _mm256_setzero_ps();
    float sc[4][64]; /* s_w · d_x of the chunk's groups, per x row */
    for (int64_t g0 = 0; g0 < G; g0 += 64) {
        const int64_t gl = G - g0 < 64 ? G - g0 : 64;
        int64_t j = 0;
        for (; j + 8 <= gl; j += 8) {
            const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gs + g0 + j)));
            for (int i = 0; i < mr; i++) {
                const __m256 v = _mm256_mul_ps(s, _mm256_loadu_ps(xd + i * ldd + g0 + j));
                _mm256_storeu_ps(sc[i] + j, v);
                cor[i] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xs8 + i * G + g0 + j), cor[i]);
            }
        }
        for (; j < gl; j++)
            for (int i = 0; i < mr; i++) {
                sc[i][j] = _cvtsh_ss(gs[g0 + j]) * xd[i * ldd + g0 + j];
                cor_tail[i] += sc[i][j] * xs8[i * G + g0 + j];
            }
        int64_t g = 0;
        for (; g + 2 <= gl; g += 2) { /* pairs into acc[·][0], acc[·][1]; a last odd group into [0] */
            const int64_t ga = g0 + g;
            __builtin_prefetch(row + 16 * ga + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
            const __m256i ua = avx2_q4_nibbles(row + 16 * ga), ub = avx2_q4_nibbles(row + 16 * ga + 16);
            for (int i = 0; i < mr; i++) {
                const int8_t *xi = xq + i * ldq + 32 * ga;
                acc[i][0] = _mm256_fmadd_ps(avx2_q4q8_group(ua, xi), _mm256_broadcast_ss(sc[i] + g), acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(avx2_q4q8_group(ub, xi + 32), _mm256_broadcast_ss(sc[i] + g + 1), acc[i][1]);
            }
        }
        if (g < gl) {
            const __m256i ua = avx2_q4_nibbles(row + 16 * (g0 + g));
            for (int i = 0; i < mr; i++)
                acc[i][0] = _mm256_fmadd_ps(avx2_q4q8_group(ua, xq + i * ldq + 32 * (g0 + g)), _mm256_broadcast_ss(sc[i] + g), acc[i][0]);
        }
    }
    for (int i = 0; i < mr; i++)
        out[i] = avx2_hsum(_mm256_add_ps(acc[i][0], acc[i][1])) - (avx2_hsum(cor[i]) + cor_tail[i]);
}

static ATTR void avx2_gemv_q4q8(const moe_weight *w, int64_t n0, int64_t n1, const int8_t *xq, const float *xd,
                                int64_t m, float *y, int64_t ldy, int accumulate) {
    const int64_t G = moe_weight_scales_per_row(MOE_WEIGHT_Q4, w->cols);
    const __m256i ones8 = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);
    for (int64_t i0 = 0; i0 < m; i0 += MOE_WEIGHT_DECODE_MAX_M) { /* x rows: at most the GEMV limit at a time */
        const int64_t mb = m - i0 < MOE_WEIGHT_DECODE_MAX_M ? m - i0 : MOE_WEIGHT_DECODE_MAX_M;
        for (int64_t w0 = 0; w0 < G; w0 += Q4Q8_WINDOW_GROUPS) {
            const int64_t gw = G - w0 < Q4Q8_WINDOW_GROUPS ? G - w0 : Q4Q8_WINDOW_GROUPS;
            const int add = accumulate || w0 > 0;
            float xs8[MOE_WEIGHT_DECODE_MAX_M * Q4Q8_WINDOW_GROUPS];
            for (int64_t i = 0; i < mb; i++)
                for (int64_t g = 0; g < gw; g++) {
                    const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + (i0 + i) * 32 * G + 32 * (w0 + g)));
                    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, x), ones);
                    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
                    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
                    xs8[i * gw + g] = (float)(8 * _mm_cvtsi128_si32(h));
                }
            for (int64_t n = n0; n < n1; n++) {
                const uint8_t *row = (const uint8_t *)w->data + n * 16 * G + 16 * w0;
                const uint16_t *gs = (const uint16_t *)w->scales + n * G + w0;
                for (int64_t i1 = 0; i1 < mb; i1 += 4) {
                    float out[4];
                    const int64_t i = i0 + i1, mr = mb - i1 < 4 ? mb - i1 : 4;
                    const int8_t *xi = xq + i * 32 * G + 32 * w0;
                    const float *di = xd + i * G + w0, *si = xs8 + i1 * gw;
                    switch (mr) {
                    case 1: avx2_q4q8_rows(1, row, gs, gw, xi, 32 * G, di, G, si, out); break;
                    case 2: avx2_q4q8_rows(2, row, gs, gw, xi, 32 * G, di, G, si, out); break;
                    case 3: avx2_q4q8_rows(3, row, gs, gw, xi, 32 * G, di, G, si, out); break;
                    default: avx2_q4q8_rows(4, row, gs, gw, xi, 32 * G, di, G, si, out); break;
                    }
                    for (int64_t r = 0; r < mr; r++) {
                        float *yi = y + (i + r) * ldy + n;
                        *yi = add ? *yi + out[r] : out[r];
                    }
                }
            }
        }
    }
}

static const moe_weight_kernels avx2_kernels = {avx2_gemv, avx2_dequant, avx2_gemv_q4q8};
#undef ATTR
#undef VL
#undef LV

/* ------------------------------------------------------------------------------------
 * AVX-512 (F, BW, VL) + FMA + F16C: 16 floats per vector; the AVX2 code with wider vectors.
 * ------------------------------------------------------------------------------------ */

#define ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define VL 16
#define LV(name) avx512_##name
typedef __m512 avx512_v;

static inline ATTR __m512 avx512_zero(void) { return _mm512_setzero_ps(); }
static inline ATTR __m512 avx512_loadf(const float *p) { return _mm512_loadu_ps(p); }
static inline ATTR void avx512_storef(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
static inline ATTR __m512 avx512_set1(float f) { return _mm512_set1_ps(f); }
static inline ATTR __m512 avx512_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static inline ATTR __m512 avx512_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
static inline ATTR __m512 avx512_fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
static inline ATTR float avx512_hsum(__m512 v) {
    /* lanes i + (i+8), then the AVX2 order on the 8 sums */
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline ATTR __m512 avx512_load_bf16(const uint16_t *p) {
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
static inline ATTR __m512 avx512_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline ATTR __m512 avx512_load_i8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
/* 16 bytes: low nibbles are elements 0..15, high nibbles 16..31; q = nibble − 8. */
static inline ATTR void avx512_q4(const uint8_t *g, __m512 s, __m512 out[2]) {
    const __m128i b = _mm_loadu_si128((const __m128i *)g), mask = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(b, mask), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), mask), eight);
    out[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), s);
    out[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), s);
}

#include "moe_weights_simd_body.h"
static const moe_weight_kernels avx512_kernels = {avx512_gemv, avx512_dequant, avx2_gemv_q4q8};
#undef ATTR
#undef VL
#undef LV

/* Best level of this CPU: 3 AVX-512 F+BW+VL (with FMA, F16C), 2 AVX2+FMA+F16C, else 0. */
static int cpu_level(void) {
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (!avx2) return 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return 3;
    return 2;
}
#else
static int cpu_level(void) { return 0; }
#endif

/* ------------------------------------------------------------------------------------
 * Level choice: once, from the CPU, lowered by SPARSEMOE_SIMD; moe_weight_set_simd_level.
 * ------------------------------------------------------------------------------------ */

static int g_level = -1; /* -1: not chosen yet */

static int clamp_level(int requested) {
    const int best = cpu_level();
    int level = requested < best ? requested : best;
    return level >= 2 ? level : 0;
}

static int initial_level(void) {
    const char *env = getenv("SPARSEMOE_SIMD");
    int requested = 3;
    if (env && strcmp(env, "scalar") == 0) requested = 0;
    else if (env && strcmp(env, "avx2") == 0) requested = 2;
    return clamp_level(requested);
}

int moe_weight_simd_level(void) {
    int level = __atomic_load_n(&g_level, __ATOMIC_ACQUIRE);
    if (level < 0) {
        level = initial_level(); /* the same answer on every thread: a race is harmless */
        __atomic_store_n(&g_level, level, __ATOMIC_RELEASE);
    }
    return level;
}

int moe_weight_set_simd_level(int level) {
    const int chosen = clamp_level(level);
    __atomic_store_n(&g_level, chosen, __ATOMIC_RELEASE);
    return chosen;
}

const moe_weight_kernels *moe_weight_kernels_current(void) {
#if defined(__x86_64__)
    switch (moe_weight_simd_level()) {
    case 3: return &avx512_kernels;
    case 2: return &avx2_kernels;
    default: break;
    }
#endif
    return &scalar_kernels;
}
