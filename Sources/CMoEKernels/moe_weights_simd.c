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

static const moe_weight_kernels scalar_kernels = {scalar_gemv, scalar_dequant, NULL, NULL};

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

/* The integer decode kernels (moe_weights_simd_int.h) with maddubs + madd. */
#define IV(name) avx2_##name
#define DOT_U8S8(u, x) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (x)), _mm256_set1_epi16(1))
#include "moe_weights_simd_int.h"
#undef DOT_U8S8
#undef IV

static const moe_weight_kernels avx2_kernels = {avx2_gemv, avx2_dequant, avx2_gemv_q4q8, avx2_gemv_q8q8};
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
/* Q8 W through the integer kernel here too: one x row in cache ran at 0.76–0.79× the speed of
 * converting W to floats in 512-bit registers, but decode reads W from memory at a fraction of
 * either rate, and from 16 rows on (batched decode, prefill) the integer kernel is 1.7–2.3×. */
static const moe_weight_kernels avx512_kernels = {avx512_gemv, avx512_dequant, avx2_gemv_q4q8, avx2_gemv_q8q8};
#undef ATTR
#undef VL
#undef LV

/* AVX-512 VNNI: the integer decode kernels with vpdpbusd (one instruction where AVX2 needs
 * maddubs + madd), Q8 pairs of groups and Q4 fours on 512-bit vectors, the same sums as the
 * 256-bit ones; the float kernels as AVX-512 above. */
#define ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define IV(name) vnni_##name
#define DOT_U8S8(u, x) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (x))
#define DOT_U8S8_512(acc, u, x) _mm512_dpbusd_epi32((acc), (u), (x))
#include "moe_weights_simd_int.h"
#undef DOT_U8S8_512
#undef DOT_U8S8
#undef IV
#undef ATTR
static const moe_weight_kernels avx512_vnni_kernels = {avx512_gemv, avx512_dequant, vnni_gemv_q4q8, vnni_gemv_q8q8};

/* Read once: moe_weight_kernels_current runs for every GEMV piece. */
static int cpu_has_vnni(void) {
    static int vnni = -1; /* -1: not read yet; every thread reads the same answer */
    if (vnni < 0) {
        __builtin_cpu_init();
        vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512dq") ? 1 : 0;
    }
    return vnni;
}

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
static int cpu_has_vnni(void) { return 0; }
#endif

int moe_weight_simd_vnni(void) { return moe_weight_simd_level() == 3 && cpu_has_vnni(); }

int moe_weight_decode_rounds_x(int format) {
    return moe_weight_q8act_kernel(moe_weight_kernels_current(), format) != NULL;
}

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
    case 3: return cpu_has_vnni() ? &avx512_vnni_kernels : &avx512_kernels;
    case 2: return &avx2_kernels;
    default: break;
    }
#endif
    return &scalar_kernels;
}
