/* moe_sgemm_bf16's AMX path (moe_gemm_bf16.h, path 2): Intel's tile unit, Sapphire Rapids and
 * later. TDPBF16PS adds to a tile C[16 × 16 float32] the products of A[16 × 32 bf16] (16 rows
 * of 64 bytes, k along the row) and B[32 × 16 bf16] stored as 16 rows of (k, k+1) pairs, one
 * 32-bit pair per column: C[i, j] += Σ_p A[i, 2p]·B[2p, j] + A[i, 2p+1]·B[2p+1, j].
 *
 * GotoBLAS loop order per thread: for each block of NC columns and KC depth, op(B) is packed
 * (rounded to bf16) once as pair panels; for each block of MC rows, op(A) is packed as row
 * panels; a 32 × 32 block of C lives in four tiles (two A tiles, two B tiles, eight in all)
 * while k runs through the block, then is stored and merged into C with alpha and beta.
 * Every tile a kernel loads is one contiguous kilobyte:
 *   A panel (32 rows):    [k step s][row 0..<32][32 bf16]          (zero past m and k)
 *   B panel (32 columns): [k step s][half h][pair 0..<16][16 words] (zero past n and k)
 * Packing rounds float32 to bf16 to nearest even (vcvtne2ps2bf16) and transposes 16 × 16
 * blocks of 32-bit words where the stored layout runs the other way (op(A) = Aᵀ, op(B) = Bᵀ).
 * The tile unit treats subnormal bf16 inputs as zero and flushes subnormal results; sums are
 * float32 in a fixed order, so results are deterministic for a fixed thread count.
 * A full 32 × 32 block with alpha = 1 and beta 0 or 1 loads and stores its tiles in C itself;
 * other blocks go through a buffer and moe_gemm_bf16_merge_block. */
#define _GNU_SOURCE /* syscall() */
#include "internal.h"
#include "moe_weights.h"
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KC 512  /* depth of a block: a multiple of 32 */
#define MC 128  /* rows of a packed A block: a multiple of 32 */
#define NC 512  /* columns of a packed B block: a multiple of 32 */

#define PACK_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define TILE_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")))

/* ------------------------------------------------------------------------------------
 * Packing.
 * ------------------------------------------------------------------------------------ */

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

/* Transposes a 16 × 16 matrix of 32-bit words held as 16 row vectors. */
static PACK_ATTR void transpose16(__m512i r[16]) {
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

/* 16 floats of x from column j0 (n of them valid, zero past). */
static PACK_ATTR inline __m512 load16(const float *x, int64_t n) {
    const __mmask16 m = n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
    return _mm512_maskz_loadu_ps(m, x);
}

/* Words w[0..<16] of one 16 × 16 block of pairs: X[k, j] for k in k0 + 2p, k0 + 2p + 1 (p <
 * 16) and j in j0 ..< j0 + 16, X[k, j] = x[k·ld + j] (rows of x run along j): w[p] = pair row
 * p (word j = the pair of column j). Zero past kc rows and nc columns. */
static PACK_ATTR void pairs_from_rows(__m512i w[16], const float *x, int64_t ld, int64_t k0, int64_t kc, int64_t j0,
                                      int64_t nc) {
    const __m512 zero = _mm512_setzero_ps();
    for (int p = 0; p < 16; p++) {
        const int64_t k = k0 + 2 * p;
        const __m512 lo = k < kc ? load16(x + k * ld + j0, nc - j0) : zero;
        const __m512 hi = k + 1 < kc ? load16(x + (k + 1) * ld + j0, nc - j0) : zero;
        w[p] = pair_words(lo, hi);
    }
}

/* The same block when X[k, j] = x[j·ld + k] (rows of x run along k): w[j] = column j's 16
 * pairs; transposed, w[p] = pair row p. */
static PACK_ATTR void pairs_from_columns(__m512i w[16], const float *x, int64_t ld, int64_t k0, int64_t kc, int64_t j0,
                                         int64_t nc) {
    for (int j = 0; j < 16; j++)
        w[j] = j0 + j < nc ? row_words(x + (j0 + j) * ld + k0, kc - k0) : _mm512_setzero_si512();
    transpose16(w);
}

/* op(B)[k0 ..< k0 + kc, j0 ..< j0 + nc] as B panels (layout above); kcp = kc rounded up to 32.
 * op(B)[k, j] = trans ? b[j·ld + k] : b[k·ld + j]. */
static PACK_ATTR void pack_b(uint32_t *dst, const float *b, int64_t ld, int trans, int64_t k0, int64_t kc, int64_t j0,
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
static PACK_ATTR void pack_a(uint16_t *dst, const float *a, int64_t ld, int trans, int64_t i0, int64_t mc, int64_t k0,
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
                    transpose16(w);
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

/* ------------------------------------------------------------------------------------
 * Tiles.
 * ------------------------------------------------------------------------------------ */

/* The tile configuration: palette 1, eight tiles of 16 rows × 64 bytes. */
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

/* A 32 × 32 block of Σ over `steps` k steps of one A panel times one B panel, stored at t (row
 * stride ldt floats), which holds the block to add to when `accumulate` (else zeros start it). */
static TILE_ATTR void block_32x32(int64_t steps, const uint16_t *ap, const uint32_t *bp, float *t, int64_t ldt,
                                  int accumulate) {
    const int64_t stride = ldt * (int64_t)sizeof(float);
    if (accumulate) {
        _tile_loadd(0, t, stride);
        _tile_loadd(1, t + 16, stride);
        _tile_loadd(2, t + 16 * ldt, stride);
        _tile_loadd(3, t + 16 * ldt + 16, stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t s = 0; s < steps; s++) {
        _tile_loadd(4, ap + s * 1024, 64);
        _tile_loadd(5, ap + s * 1024 + 512, 64);
        _tile_loadd(6, bp + s * 512, 64);
        _tile_loadd(7, bp + s * 512 + 256, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, t, stride);
    _tile_stored(1, t + 16, stride);
    _tile_stored(2, t + 16 * ldt, stride);
    _tile_stored(3, t + 16 * ldt + 16, stride);
}

static TILE_ATTR void tiles_configure(void) {
    struct tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int i = 0; i < 8; i++) {
        config.bytes_per_row[i] = 64;
        config.rows[i] = 16;
    }
    _tile_loadconfig(&config);
}

static TILE_ATTR void tiles_release(void) { _tile_release(); }

void moe_gemm1_bf16_amx(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    uint32_t *pb = moe_gemm_bf16_thread_buffer(sizeof(uint32_t) * (KC / 2 * NC) + sizeof(uint16_t) * (MC * KC) +
                                               sizeof(float) * 32 * 32);
    if (!pb) __builtin_trap(); /* out of memory for < 1 MB: nothing sensible is left to do */
    uint16_t *pa = (uint16_t *)(pb + KC / 2 * NC);
    float *t = (float *)(pa + MC * KC);
    tiles_configure();
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = n - jc < NC ? n - jc : NC;
        for (int64_t pc = 0; pc < k; pc += KC) {
            const int64_t kc = k - pc < KC ? k - pc : KC, kcp = (kc + 31) / 32 * 32;
            pack_b(pb, b, ldb, tb, pc, kc, jc, nc, kcp);
            for (int64_t ic = 0; ic < m; ic += MC) {
                const int64_t mc = m - ic < MC ? m - ic : MC;
                pack_a(pa, a, lda, ta, ic, mc, pc, kc, kcp);
                for (int64_t r = 0; r < mc; r += 32)
                    for (int64_t q = 0; q < nc; q += 32) {
                        const int mr = (int)(mc - r < 32 ? mc - r : 32), nr = (int)(nc - q < 32 ? nc - q : 32);
                        float *cb = c + (ic + r) * ldc + jc + q;
                        const uint16_t *ap = pa + r * kcp;
                        const uint32_t *bp = pb + q / 32 * (kcp / 2 * 32);
                        if (mr == 32 && nr == 32 && alpha == 1.0f && (pc > 0 || beta == 0.0f || beta == 1.0f)) {
                            block_32x32(kcp / 32, ap, bp, cb, ldc, pc > 0 || beta == 1.0f);
                        } else {
                            block_32x32(kcp / 32, ap, bp, t, 32, 0);
                            moe_gemm_bf16_merge_block(t, cb, ldc, mr, nr, alpha, beta, pc == 0);
                        }
                    }
            }
        }
    }
    tiles_release();
}

/* Whether the CPU and the OS let this process use the tiles, asked once: cpuid 7.0 EDX bit 22
 * AMX-BF16 and bit 24 AMX-TILE, 7.1 EAX bit 5 AVX512-BF16 (packing), 1.0 ECX bit 27 OSXSAVE;
 * XCR0 bits 17-18 (tile state) enabled by the OS; and Linux's per-process permission for the
 * tile data (arch_prctl, kernel 5.16+). */
static int tiles_granted(void) {
    static int granted = -1;
    int value = __atomic_load_n(&granted, __ATOMIC_ACQUIRE);
    if (value >= 0) return value;
    unsigned a7, b7, c7, d7, a71 = 0, b71, c71, d71, a1, b1, c1 = 0, d1;
    value = 0;
    if (__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7) && (d7 >> 22 & 1) && (d7 >> 24 & 1) &&
        __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71) && (a71 >> 5 & 1) && __get_cpuid(1, &a1, &b1, &c1, &d1) &&
        (c1 >> 27 & 1)) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        const unsigned long long xcr0 = (unsigned long long)hi << 32 | lo;
        enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
        value = (xcr0 >> 17 & 3) == 3 && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
    __atomic_store_n(&granted, value, __ATOMIC_RELEASE);
    return value;
}

/* The tiles, and AVX-512 at the kernels' SIMD level (SPARSEMOE_SIMD or a test may lower it). */
int moe_gemm_bf16_amx_available(void) { return moe_weight_simd_level() == 3 && tiles_granted(); }

#else
void moe_gemm1_bf16_amx(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)beta, (void)c,
        (void)ldc;
    __builtin_trap(); /* never chosen: moe_gemm_bf16_amx_available() is 0 */
}
int moe_gemm_bf16_amx_available(void) { return 0; }
#endif
