/* AVX-512 pieces shared by the GEMM kernels (moe_gemm_bf16.c, moe_gemm_bf16_pack.c,
 * moe_gemm_f32.c): masked loads, 16 × 16 word transposes, merging a register tile into C.
 * x86-64 only; call them only from functions compiled for AVX-512 F or more. */
#ifndef MOE_GEMM_SIMD_H
#define MOE_GEMM_SIMD_H
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

/* AVX-512F alone, a subset of every caller's target, so that the inline helpers below are
 * inlined (a helper whose target the caller lacks becomes a call: 12 % of a bf16 step). */
#define MOE_GEMM_AVX512 __attribute__((target("avx512f")))
#define MOE_GEMM_INLINE static MOE_GEMM_AVX512 inline __attribute__((always_inline))

/* 16 floats from x (n of them valid, zero past). */
MOE_GEMM_INLINE __m512 moe_load16(const float *x, int64_t n) {
    const __mmask16 m = n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
    return _mm512_maskz_loadu_ps(m, x);
}

/* Transposes a 16 × 16 matrix of 32-bit words held as 16 row vectors. */
MOE_GEMM_INLINE void moe_transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* r[4q + c] now holds in its 128-bit lane L rows 4q ..< 4q + 4 of column 4L + c: gather the
     * lanes L of r[c], r[4 + c], r[8 + c], r[12 + c] into column 4L + c */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* dst[lanes in mask] = alpha · v + (first ? beta · dst : dst); beta = 0 on the first block never
 * reads dst. */
MOE_GEMM_INLINE void moe_merge16(float *dst, __m512 v, __mmask16 mask, float alpha, float beta, int first) {
    v = _mm512_mul_ps(v, _mm512_set1_ps(alpha));
    if (!first) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), v);
    else if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, dst), _mm512_set1_ps(beta), v);
    _mm512_mask_storeu_ps(dst, mask, v);
}

/* The masks of columns 0 ..< 16 and 16 ..< 32 of a block nr columns wide. */
static inline __mmask16 moe_low_mask(int nr) { return nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1); }
static inline __mmask16 moe_high_mask(int nr) { return nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0; }

#endif
#endif
