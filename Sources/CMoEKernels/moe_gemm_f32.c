/* moe_sgemm's AVX-512 path (internal.h: moe_gemm1_f32_avx512): float32 GEMM with our own
 * kernel, C[m, n] = alpha · op(A)·op(B) + beta · C, row-major, single-threaded (moe_gemm_split
 * cuts C between the threads).
 * GotoBLAS loop order: for each block of FNC columns and FKC depth, op(B) is packed as panels
 * of 32 columns, [k][32 floats]; for each block of FMC rows, op(A) as panels of 16 rows,
 * [k][16 floats] (16 × 16 transposes where the stored layout runs the other way; zero past m,
 * n) — unless op(A) = A and the block has at most FDIRECT_NC columns: packing pays off only
 * over many column panels, so there the tiles broadcast A's elements in place. An 8 × 32 tile
 * of C lives in 16 zmm accumulators while k runs through the block, one fused multiply-add
 * chain per accumulator in ascending k, and is then merged into C from the registers (alpha,
 * and beta on the first block; beta = 0 never reads C). So every element of C is the same
 * sequence of roundings whichever rows and columns the call covers: the result does not depend
 * on how moe_gemm_split cuts C, i.e. on the thread count. */
#include "internal.h"
#include "moe_gemm_simd.h"
#include "moe_weights.h"
#include <stdlib.h>
#include <string.h>

#define FKC 512  /* depth of a block */
#define FMC 128  /* rows of a packed A block (a multiple of 16) */
#define FNC 1024 /* columns of a packed B block (a multiple of 32) */
#define FMR 8    /* rows of a micro-tile */
#define FNR 32   /* columns of a micro-tile = of a B panel: two zmm */
#define FAP 16   /* rows of an A panel */
#define FDIRECT_NC 256 /* up to this many columns in a block, a row-major op(A) is read in place, not packed */

#if defined(__x86_64__)

/* op(B)[k0 ..< k0 + kc, j0 ..< j0 + nc] as 32-column panels [k][32] (panel q at dst + q·kc·32),
 * op(B)[k, j] = trans ? b[j·ld + k] : b[k·ld + j]. */
static MOE_GEMM_AVX512 void pack_b(float *dst, const float *b, int64_t ld, int trans, int64_t k0, int64_t kc, int64_t j0,
                                   int64_t nc) {
    for (int64_t q = 0; q < nc; q += FNR) {
        float *panel = dst + q / FNR * kc * FNR;
        if (!trans) {
            for (int64_t k = 0; k < kc; k++) {
                const float *row = b + (k0 + k) * ld + j0 + q;
                _mm512_store_ps(panel + k * FNR, moe_load16(row, nc - q));
                _mm512_store_ps(panel + k * FNR + 16, moe_load16(row + 16, nc - q - 16));
            }
            continue;
        }
        for (int h = 0; h < 2; h++) {
            const int64_t col = q + 16 * h;
            for (int64_t kb = 0; kb < kc; kb += 16) {
                __m512i w[16];
                for (int j = 0; j < 16; j++)
                    w[j] = col + j < nc ? _mm512_castps_si512(moe_load16(b + (j0 + col + j) * ld + k0 + kb, kc - kb))
                                        : _mm512_setzero_si512();
                moe_transpose16(w);
                for (int64_t kk = 0; kk < 16 && kb + kk < kc; kk++)
                    _mm512_store_si512(panel + (kb + kk) * FNR + 16 * h, w[kk]);
            }
        }
    }
}

/* op(A)[i0 ..< i0 + mc, k0 ..< k0 + kc] as 16-row panels [k][16] (panel r / 16 at dst + r·kc),
 * op(A)[i, k] = trans ? a[k·ld + i] : a[i·ld + k]. */
static MOE_GEMM_AVX512 void pack_a(float *dst, const float *a, int64_t ld, int trans, int64_t i0, int64_t mc, int64_t k0,
                                   int64_t kc) {
    for (int64_t r = 0; r < mc; r += FAP) {
        float *panel = dst + r * kc;
        if (trans) {
            for (int64_t k = 0; k < kc; k++) _mm512_store_ps(panel + k * FAP, moe_load16(a + (k0 + k) * ld + i0 + r, mc - r));
            continue;
        }
        for (int64_t kb = 0; kb < kc; kb += 16) {
            __m512i w[16];
            for (int i = 0; i < 16; i++)
                w[i] = r + i < mc ? _mm512_castps_si512(moe_load16(a + (i0 + r + i) * ld + k0 + kb, kc - kb))
                                  : _mm512_setzero_si512();
            moe_transpose16(w);
            for (int64_t kk = 0; kk < 16 && kb + kk < kc; kk++) _mm512_store_si512(panel + (kb + kk) * FAP, w[kk]);
        }
    }
}

/* C[mr, nr] (stride ldc, mr ≤ 8, nr ≤ 32) = alpha · T + (first ? beta · C : C), T = Σ_{k < kc}
 * op(A)[r, k]·op(B)[k, j] over 8 rows of op(A) and one B panel. op(A)[r, k] is ap[16·k + r]
 * when `packed` (an A panel's rows), else ap[r·lda + k] (A itself, stored row-major; rows past
 * mr repeat row mr − 1 and are not stored). The same fused multiply-adds in the same order
 * either way, so the choice never changes a bit. */
MOE_GEMM_INLINE void tile_body(int packed, int64_t kc, const float *ap, int64_t lda, const float *bp, float *c,
                               int64_t ldc, int mr, int nr, float alpha, float beta, int first) {
    __m512 acc[FMR][2];
    const float *row[FMR];
    for (int r = 0; r < FMR; r++) {
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        row[r] = ap + (r < mr ? r : mr - 1) * lda;
    }
    for (int64_t k = 0; k < kc; k++, bp += FNR) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        for (int r = 0; r < FMR; r++) {
            const __m512 x = _mm512_set1_ps(packed ? ap[FAP * k + r] : row[r][k]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
        }
    }
    const __mmask16 m0 = moe_low_mask(nr), m1 = moe_high_mask(nr);
    for (int r = 0; r < FMR && r < mr; r++) {
        moe_merge16(c + r * ldc, acc[r][0], m0, alpha, beta, first);
        if (m1) moe_merge16(c + r * ldc + 16, acc[r][1], m1, alpha, beta, first);
    }
}

static MOE_GEMM_AVX512 void tile_packed(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int mr,
                                        int nr, float alpha, float beta, int first) {
    tile_body(1, kc, ap, 0, bp, c, ldc, mr, nr, alpha, beta, first);
}
static MOE_GEMM_AVX512 void tile_rows(int64_t kc, const float *ap, int64_t lda, const float *bp, float *c, int64_t ldc,
                                      int mr, int nr, float alpha, float beta, int first) {
    tile_body(0, kc, ap, lda, bp, c, ldc, mr, nr, alpha, beta, first);
}

void moe_gemm1_f32_avx512(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (k == 0) {
        moe_gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    float *pb = moe_gemm_thread_buffer(sizeof(float) * (FKC * FNC + FMC * FKC));
    if (!pb) __builtin_trap(); /* out of memory for < 3 MB: nothing sensible is left to do */
    float *pa = pb + FKC * FNC;
    for (int64_t jc = 0; jc < n; jc += FNC) {
        const int64_t nc = n - jc < FNC ? n - jc : FNC;
        for (int64_t pc = 0; pc < k; pc += FKC) {
            const int64_t kc = k - pc < FKC ? k - pc : FKC;
            pack_b(pb, b, ldb, tb, pc, kc, jc, nc);
            for (int64_t ic = 0; ic < m; ic += FMC) {
                const int64_t mc = m - ic < FMC ? m - ic : FMC;
                const int direct = !ta && nc <= FDIRECT_NC;
                if (!direct) pack_a(pa, a, lda, ta, ic, mc, pc, kc);
                for (int64_t q = 0; q < nc; q += FNR) {
                    const float *bp = pb + q / FNR * kc * FNR;
                    for (int64_t r = 0; r < mc; r += FMR) {
                        const int mr = (int)(mc - r < FMR ? mc - r : FMR), nr = (int)(nc - q < FNR ? nc - q : FNR);
                        float *cp = c + (ic + r) * ldc + jc + q;
                        if (direct)
                            tile_rows(kc, a + (ic + r) * lda + pc, lda, bp, cp, ldc, mr, nr, alpha, beta, pc == 0);
                        else
                            tile_packed(kc, pa + r / FAP * FAP * kc + r % FAP, bp, cp, ldc, mr, nr, alpha, beta, pc == 0);
                    }
                }
            }
        }
    }
}

int moe_gemm_f32_avx512_available(void) { return moe_weight_simd_level() == 3; }

#else
void moe_gemm1_f32_avx512(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)beta, (void)c,
        (void)ldc;
    __builtin_trap(); /* never chosen: moe_gemm_f32_avx512_available() is 0 */
}
int moe_gemm_f32_avx512_available(void) { return 0; }
#endif
