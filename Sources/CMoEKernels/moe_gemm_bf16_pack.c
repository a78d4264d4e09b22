/* Packing for the bf16 GEMM paths (moe_gemm_bf16.h): float32 operands rounded to bf16 to
 * nearest even (vcvtne2ps2bf16; subnormals become zero, as the bf16 units treat them anyway)
 * into panels of (k, k + 1) pairs, 16 × 16 blocks of 32-bit words transposed where the stored
 * layout runs the other way (op(A) = Aᵀ, op(B) = Bᵀ). Per k step s of 32 (kcp = kc rounded up
 * to 32, zero past k):
 *   A panel (32 rows):    [k step s][row 0..<32][32 bf16]           (zero past m)
 *   B panel (32 columns): [k step s][half h][pair 0..<16][16 words] (zero past n)
 * so row r's pair p of step s is word 16·r + p of the step's 512 A words, and pair p of
 * columns 16·h ..< 16·h + 16 the 16 words at 256·h + 16·p of the step's 512 B words. */
#include "internal.h"
#include "moe_gemm_simd.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define PACK_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

/* 16 words, word j = bf16(lo[j]) | bf16(hi[j]) << 16. vcvtne2ps2bf16 rounds to nearest even
 * (subnormals to zero, which the tiles would treat as zero anyway) into [lo 0..<16, hi 0..<16];
 * vpermw interleaves the halves. */
static PACK_ATTR inline __m512i pair_words(__m512 lo, __m512 hi) {
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* 32 consecutive floats (n of them, zero past) → 32 bf16 in order, i.e. 16 words of k pairs. */
static PACK_ATTR inline __m512i row_words(const float *x, int64_t n) {
    const __mmask16 m0 = n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + 16), _mm512_maskz_loadu_ps(m0, x));
}

/* Words w[0..<16] of one 16 × 16 block of pairs: X[k, j] for k in k0 + 2p, k0 + 2p + 1 (p <
 * 16) and j in j0 ..< j0 + 16, X[k, j] = x[k·ld + j] (rows of x run along j): w[p] = pair row
 * p (word j = the pair of column j). Zero past kc rows and nc columns. */
static PACK_ATTR void pairs_from_rows(__m512i w[16], const float *x, int64_t ld, int64_t k0, int64_t kc, int64_t j0,
                                      int64_t nc) {
    const __m512 zero = _mm512_setzero_ps();
    for (int p = 0; p < 16; p++) {
        const int64_t k = k0 + 2 * p;
        const __m512 lo = k < kc ? moe_load16(x + k * ld + j0, nc - j0) : zero;
        const __m512 hi = k + 1 < kc ? moe_load16(x + (k + 1) * ld + j0, nc - j0) : zero;
        w[p] = pair_words(lo, hi);
    }
}

/* The same block when X[k, j] = x[j·ld + k] (rows of x run along k): w[j] = column j's 16
 * pairs; transposed, w[p] = pair row p. */
static PACK_ATTR void pairs_from_columns(__m512i w[16], const float *x, int64_t ld, int64_t k0, int64_t kc, int64_t j0,
                                         int64_t nc) {
    for (int j = 0; j < 16; j++)
        w[j] = j0 + j < nc ? row_words(x + (j0 + j) * ld + k0, kc - k0) : _mm512_setzero_si512();
    moe_transpose16(w);
}

/* op(B)[k0 ..< k0 + kc, j0 ..< j0 + nc] as B panels (layout above); kcp = kc rounded up to 32.
 * op(B)[k, j] = trans ? b[j·ld + k] : b[k·ld + j]. */
PACK_ATTR void moe_bf16_pack_b(uint32_t *dst, const float *b, int64_t ld, int trans, int64_t k0, int64_t kc, int64_t j0,
                             int64_t nc, int64_t kcp) {
    const float *origin = trans ? b + j0 * ld + k0 : b + k0 * ld + j0;
    __m512i w[16];
    for (int64_t q = 0; q < nc; q += 32) {
        uint32_t *panel = dst + q / 32 * (kcp / 2 * 32);
        for (int64_t s = 0; s < kcp / 32; s++)
            for (int h = 0; h < 2; h++) {
                const int64_t col = q + 16 * h;
                if (trans) pairs_from_columns(w, origin, ld, 32 * s, kc, col, nc);
                else pairs_from_rows(w, origin, ld, 32 * s, kc, col, nc);
                uint32_t *tile = panel + s * 512 + h * 256;
                for (int p = 0; p < 16; p++) _mm512_store_si512(tile + 16 * p, w[p]);
            }
    }
}

/* op(A)[i0 ..< i0 + mc, k0 ..< k0 + kc] as A panels (layout above), op(A)[i, k] = trans ?
 * a[k·ld + i] : a[i·ld + k]. A tile row is 32 bf16 of one row, i.e. 16 words of k pairs: the
 * pair block of op(A)ᵀ, transposed. */
PACK_ATTR void moe_bf16_pack_a(uint16_t *dst, const float *a, int64_t ld, int trans, int64_t i0, int64_t mc, int64_t k0,
                             int64_t kc, int64_t kcp) {
    const float *origin = trans ? a + k0 * ld + i0 : a + i0 * ld + k0;
    __m512i w[16];
    for (int64_t r = 0; r < mc; r += 32) {
        uint16_t *panel = dst + r * kcp;
        for (int64_t s = 0; s < kcp / 32; s++)
            for (int h = 0; h < 2; h++) {
                const int64_t row = r + 16 * h;
                if (trans) {
                    /* op(A)ᵀ[k, i] = a[k·ld + i]: pair rows, then rows of op(A) */
                    pairs_from_rows(w, origin, ld, 32 * s, kc, row, mc);
                    moe_transpose16(w);
                } else {
                    for (int i = 0; i < 16; i++)
                        w[i] = row + i < mc ? row_words(origin + (row + i) * ld + 32 * s, kc - 32 * s)
                                            : _mm512_setzero_si512();
                }
                uint16_t *tile = panel + s * 1024 + h * 512;
                for (int i = 0; i < 16; i++) _mm512_store_si512(tile + 32 * i, w[i]);
            }
    }
}
#endif
