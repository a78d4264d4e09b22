/* moe_sgemm_bf16's AMX path (moe_gemm_bf16.h, path 2): Intel's tile unit, Sapphire Rapids and
 * later. TDPBF16PS adds to a tile C[16 × 16 float32] the products of A[16 × 32 bf16] (16 rows
 * of 64 bytes, k along the row) and B[32 × 16 bf16] stored as 16 rows of (k, k+1) pairs, one
 * 32-bit pair per column: C[i, j] += Σ_p A[i, 2p]·B[2p, j] + A[i, 2p+1]·B[2p+1, j].
 *
 * GotoBLAS loop order per thread: for each block of NC columns and KC depth, op(B) is packed
 * (rounded to bf16) once as pair panels; for each block of MC rows, op(A) is packed as row
 * panels; a 32 × 32 block of C lives in four tiles (two A tiles, two B tiles, eight in all)
 * while k runs through the block, then is stored and merged into C with alpha and beta.
 * Every tile a kernel loads is one contiguous kilobyte of the pair panels that
 * moe_gemm_bf16_pack.c writes (moe_bf16_pack_a, moe_bf16_pack_b).
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

#define TILE_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")))

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
        moe_gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    uint32_t *pb = moe_gemm_thread_buffer(sizeof(uint32_t) * (KC / 2 * NC) + sizeof(uint16_t) * (MC * KC) +
                                               sizeof(float) * 32 * 32);
    if (!pb) __builtin_trap(); /* out of memory for < 1 MB: nothing sensible is left to do */
    uint16_t *pa = (uint16_t *)(pb + KC / 2 * NC);
    float *t = (float *)(pa + MC * KC);
    tiles_configure();
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = n - jc < NC ? n - jc : NC;
        for (int64_t pc = 0; pc < k; pc += KC) {
            const int64_t kc = k - pc < KC ? k - pc : KC, kcp = (kc + 31) / 32 * 32;
            moe_bf16_pack_b(pb, b, ldb, tb, pc, kc, jc, nc, kcp);
            for (int64_t ic = 0; ic < m; ic += MC) {
                const int64_t mc = m - ic < MC ? m - ic : MC;
                moe_bf16_pack_a(pa, a, lda, ta, ic, mc, pc, kc, kcp);
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
