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

/* Q4 × Q8 activation blocks, integer dot products (as llama.cpp's AVX2 Q4_0 × Q8_0): per
 * group the 32 weights q_w ∈ [−8, 7] as bytes; maddubs(|q_w|, sign(q_x, q_w)) gives 16 exact
 * int16 pair sums (|·| ≤ 2·8·127), madd with ones 8 int32, converted to float and FMA'd with
 * s_w · d_x. Also used at the AVX-512 level. */
static inline ATTR __m256i avx2_q4_bytes(const uint8_t *g) {
    /* the 16 bytes in both lanes; the high lane shifted right by 4 (whole 64-bit words: the
     * bits that cross into a byte's high nibble are masked off) */
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)g));
    const __m256i v = _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

static inline ATTR __m256 avx2_dot32(__m256i aw, __m256i wq, const int8_t *xq) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)xq);
    const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, wq));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* out[i] = Σ_g s[g] · xd[i·G + g] · Σ_j q_w · xq[i·32G + 32g + j] for i < mr (mr ≤ 4). */
static inline __attribute__((always_inline)) ATTR void avx2_q4q8_row(const int mr, const uint8_t *row,
                                                                    const uint16_t *gs, int64_t G,
                                                                    const int8_t *xq, const float *xd,
                                                                    float *out) {
    __m256 acc[4][2];
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    float sc[4][64]; /* s_w · d_x of the chunk's groups, per x row */
    for (int64_t g0 = 0; g0 < G; g0 += 64) {
        const int64_t gl = G - g0 < 64 ? G - g0 : 64;
        int64_t j = 0;
        for (; j + 8 <= gl; j += 8) {
            const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gs + g0 + j)));
            for (int i = 0; i < mr; i++) _mm256_storeu_ps(sc[i] + j, _mm256_mul_ps(s, _mm256_loadu_ps(xd + i * G + g0 + j)));
        }
        for (; j < gl; j++)
            for (int i = 0; i < mr; i++) sc[i][j] = _cvtsh_ss(gs[g0 + j]) * xd[i * G + g0 + j];
        int64_t g = 0;
        for (; g + 2 <= gl; g += 2) {
            const int64_t ga = g0 + g, gb = ga + 1;
            const __m256i wa = avx2_q4_bytes(row + 16 * ga), wb = avx2_q4_bytes(row + 16 * gb);
            __builtin_prefetch(row + 16 * ga + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
            const __m256i aa = _mm256_sign_epi8(wa, wa), ab = _mm256_sign_epi8(wb, wb);
            for (int i = 0; i < mr; i++) {
                const int8_t *xi = xq + i * 32 * G;
                acc[i][0] = _mm256_fmadd_ps(avx2_dot32(aa, wa, xi + 32 * ga), _mm256_broadcast_ss(sc[i] + g), acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(avx2_dot32(ab, wb, xi + 32 * gb), _mm256_broadcast_ss(sc[i] + g + 1), acc[i][1]);
            }
        }
        if (g < gl) {
            const int64_t ga = g0 + g;
            const __m256i wa = avx2_q4_bytes(row + 16 * ga), aa = _mm256_sign_epi8(wa, wa);
            for (int i = 0; i < mr; i++)
                acc[i][0] = _mm256_fmadd_ps(avx2_dot32(aa, wa, xq + i * 32 * G + 32 * ga), _mm256_broadcast_ss(sc[i] + g), acc[i][0]);
        }
    }
    for (int i = 0; i < mr; i++) out[i] = avx2_hsum(_mm256_add_ps(acc[i][0], acc[i][1]));
}

/* One x row (m = 1): avx2_q4q8_row with mr = 1 and the same bits, one sign step less per group:
 * the nibbles u = q_w + 8 ∈ [0, 15] go into maddubs unsigned, and sx8[g] (per int32 lane, 8 ·
 * the same lane's sum of q_x) is subtracted before the conversion: Σ u·q_x − 8·Σ q_x = Σ q_w·q_x
 * exactly, lane by lane (pair sums |·| ≤ 2·15·127). */
static inline __attribute__((always_inline)) ATTR void avx2_q4q8_row1(const uint8_t *row, const uint16_t *gs, int64_t G,
                                                                     const int8_t *xq, const float *xd,
                                                                     const __m256i *sx8, float *out) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), mask = _mm256_set1_epi8(0x0f), sh = _mm256_set_epi64x(4, 4, 0, 0);
    float sc[64];
    for (int64_t g0 = 0; g0 < G; g0 += 64) {
        const int64_t gl = G - g0 < 64 ? G - g0 : 64;
        int64_t j = 0;
        for (; j + 8 <= gl; j += 8)
            _mm256_storeu_ps(sc + j, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gs + g0 + j))),
                                                  _mm256_loadu_ps(xd + g0 + j)));
        for (; j < gl; j++) sc[j] = _cvtsh_ss(gs[g0 + j]) * xd[g0 + j];
#define Q4U(ga) _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16( \
        _mm256_and_si256(_mm256_srlv_epi64(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(row + 16 * (ga)))), sh), mask), \
        _mm256_loadu_si256((const __m256i *)(xq + 32 * (ga)))), ones), sx8[ga]))
        int64_t g = 0;
        for (; g + 2 <= gl; g += 2) { /* pairs into acc0, acc1; a last odd group into acc0, as avx2_q4q8_row */
            __builtin_prefetch(row + 16 * (g0 + g) + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
            acc0 = _mm256_fmadd_ps(Q4U(g0 + g), _mm256_broadcast_ss(sc + g), acc0);
            acc1 = _mm256_fmadd_ps(Q4U(g0 + g + 1), _mm256_broadcast_ss(sc + g + 1), acc1);
        }
        if (g < gl) acc0 = _mm256_fmadd_ps(Q4U(g0 + g), _mm256_broadcast_ss(sc + g), acc0);
#undef Q4U
    }
    *out = avx2_hsum(_mm256_add_ps(acc0, acc1));
}

/* Largest G of the m = 1 path (its sx8 lives on the stack: 32 bytes per group). */
#define Q4Q8_ROW1_MAX_GROUPS 256

static ATTR void avx2_gemv_q4q8(const moe_weight *w, int64_t n0, int64_t n1, const int8_t *xq, const float *xd,
                                int64_t m, float *y, int64_t ldy, int accumulate) {
    const int64_t G = moe_weight_scales_per_row(MOE_WEIGHT_Q4, w->cols);
    if (m == 1 && G <= Q4Q8_ROW1_MAX_GROUPS) {
        __m256i sx8[Q4Q8_ROW1_MAX_GROUPS];
        const __m256i ones8 = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);
        for (int64_t g = 0; g < G; g++)
            sx8[g] = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(xq + 32 * g))), ones), 3);
        for (int64_t n = n0; n < n1; n++) {
            float out;
            avx2_q4q8_row1((const uint8_t *)w->data + n * 16 * G, (const uint16_t *)w->scales + n * G, G, xq, xd, sx8, &out);
            y[n] = accumulate ? y[n] + out : out;
        }
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)w->data + n * 16 * G;
        const uint16_t *gs = (const uint16_t *)w->scales + n * G;
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            float out[4];
            const int8_t *xi = xq + i0 * 32 * G;
            const float *di = xd + i0 * G;
            const int64_t mr = m - i0 < 4 ? m - i0 : 4;
            switch (mr) {
            case 1: avx2_q4q8_row(1, row, gs, G, xi, di, out); break;
            case 2: avx2_q4q8_row(2, row, gs, G, xi, di, out); break;
            case 3: avx2_q4q8_row(3, row, gs, G, xi, di, out); break;
            default: avx2_q4q8_row(4, row, gs, G, xi, di, out); break;
            }
            for (int64_t i = 0; i < mr; i++) {
                float *yi = y + (i0 + i) * ldy + n;
                *yi = accumulate ? *yi + out[i] : out[i];
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
