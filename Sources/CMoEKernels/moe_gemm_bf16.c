/* moe_sgemm_bf16 (moe_gemm_bf16.h): GEMM with bf16 operands and float32 accumulation.
 * GotoBLAS loop order per thread: for each block of NC columns and KC depth, op(B) is packed
 * (rounded to bf16) once; for each block of MC rows, op(A) is packed; then a register-blocked
 * kernel runs over the micro-tiles. The AVX-512 BF16 kernel holds an 8 × 32 tile of C in 16
 * zmm accumulators and consumes k in pairs: vdpbf16ps adds a[2i]·b[2i] + a[2i+1]·b[2i+1] to
 * float lane i, so both operands are packed as (k, k+1) pair panels (moe_gemm_bf16_pack.c,
 * vectorised, shared with the AMX path) and A's pairs are broadcast; the tile is merged into C
 * from the registers. The portable path packs the rounded values as float32 and calls sgemm
 * per block.
 * Packing buffers are per thread, allocated on first use and kept for the thread's life. */
#include "internal.h"
#include "moe_gemm_bf16.h"
#include "moe_gemm_simd.h"
#include "moe_threads.h"
#include "moe_weights.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define KC 384          /* portable: depth of a block */
#define MC 192          /* portable: rows of a rounded A block */
#define NC 1024         /* portable: columns of a rounded B block */
#define MR 8            /* AVX-512 BF16: rows of a micro-tile */
#define NR 32           /* AVX-512 BF16: columns of a micro-tile, two zmm of 16 floats (= a B panel) */
#define BKC 512         /* AVX-512 BF16: depth of a packed block (a multiple of 32) */
#define BMC 128         /* AVX-512 BF16: rows of a packed A block (a multiple of 32) */
#define BNC 1024        /* AVX-512 BF16: columns of a packed B block (a multiple of 32) */

/* float32 → bf16 bits, round to nearest even; NaN stays NaN (quiet). */
static inline uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_round(float x) {
    const uint32_t u = (uint32_t)bf16_bits(x) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* op(A)[i, k] and op(B)[k, j]. */
static inline float op_a(const float *a, int64_t lda, int ta, int64_t i, int64_t k) { return ta ? a[k * lda + i] : a[i * lda + k]; }
static inline float op_b(const float *b, int64_t ldb, int tb, int64_t k, int64_t j) { return tb ? b[j * ldb + k] : b[k * ldb + j]; }

void *moe_gemm_thread_buffer(size_t bytes) {
    static _Thread_local void *buffer = NULL;
    static _Thread_local size_t capacity = 0;
    if (bytes > capacity) {
        free(buffer);
        buffer = aligned_alloc(64, (bytes + 63) / 64 * 64);
        capacity = buffer ? bytes : 0;
    }
    return buffer;
}

/* ------------------------------------------------------------------------------------
 * Portable: rounded float32 blocks through sgemm.
 * ------------------------------------------------------------------------------------ */

static void gemm1_portable(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                           const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    moe_blas_core_init();
    float *pb = moe_gemm_thread_buffer(sizeof(float) * (KC * NC + MC * KC));
    float *pa = pb + KC * NC;
    if (!pb) __builtin_trap(); /* out of memory for < 2 MB: nothing sensible is left to do */
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = n - jc < NC ? n - jc : NC;
        for (int64_t pc = 0; pc < k || pc == 0; pc += KC) {
            const int64_t kc = k - pc < KC ? k - pc : KC;
            for (int64_t p = 0; p < kc; p++)
                for (int64_t j = 0; j < nc; j++) pb[p * nc + j] = bf16_round(op_b(b, ldb, tb, pc + p, jc + j));
            for (int64_t ic = 0; ic < m; ic += MC) {
                const int64_t mc = m - ic < MC ? m - ic : MC;
                for (int64_t i = 0; i < mc; i++)
                    for (int64_t p = 0; p < kc; p++) pa[i * kc + p] = bf16_round(op_a(a, lda, ta, ic + i, pc + p));
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mc, (int)nc, (int)kc, alpha, pa,
                            (int)(kc > 0 ? kc : 1), pb, (int)nc, pc == 0 ? beta : 1.0f, c + ic * ldc + jc, (int)ldc);
            }
            if (k == 0) break;
        }
    }
}

/* ------------------------------------------------------------------------------------
 * AVX-512 BF16.
 * ------------------------------------------------------------------------------------ */

#if defined(__x86_64__)
#include <immintrin.h>
#define ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

ATTR void moe_gemm_bf16_merge_block(const float *t, float *c, int64_t ldc, int mr, int nr, float alpha, float beta,
                                    int first) {
    const __mmask16 m0 = moe_low_mask(nr), m1 = moe_high_mask(nr);
    for (int r = 0; r < mr; r++) {
        moe_merge16(c + r * ldc, _mm512_load_ps(t + 32 * r), m0, alpha, beta, first);
        if (m1) moe_merge16(c + r * ldc + 16, _mm512_load_ps(t + 32 * r + 16), m1, alpha, beta, first);
    }
}

/* C[mr, nr] (stride ldc, mr ≤ 8, nr ≤ 32) = alpha · T + (first ? beta · C : C), T the 8 × 32 tile
 * Σ over `steps` k steps of an A panel's rows (ap: their first word in step 0) times a B panel
 * (pair panels, moe_gemm_bf16_pack.c; rows and columns past the operands are zero there).
 * 16 accumulators in registers; beta = 0 on the first block never reads C. */
static ATTR void tile_8x32(int64_t steps, const uint32_t *ap, const uint32_t *bp, float *c, int64_t ldc, int mr,
                           int nr, float alpha, float beta, int first) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t s = 0; s < steps; s++, ap += 512, bp += 512)
        for (int p = 0; p < 16; p++) {
            const __m512bh b0 = (__m512bh)_mm512_load_si512(bp + 16 * p), b1 = (__m512bh)_mm512_load_si512(bp + 256 + 16 * p);
            for (int r = 0; r < MR; r++) {
                const __m512bh x = (__m512bh)_mm512_set1_epi32((int)ap[16 * r + p]);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
            }
        }
    const __mmask16 m0 = moe_low_mask(nr), m1 = moe_high_mask(nr);
    for (int r = 0; r < MR && r < mr; r++) {
        moe_merge16(c + r * ldc, acc[r][0], m0, alpha, beta, first);
        if (m1) moe_merge16(c + r * ldc + 16, acc[r][1], m1, alpha, beta, first);
    }
}

static void gemm1_avx512bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                             const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (k == 0) {
        moe_gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    uint32_t *pb = moe_gemm_thread_buffer(sizeof(uint32_t) * (BKC / 2 * BNC) + sizeof(uint16_t) * (BMC * BKC));
    if (!pb) __builtin_trap(); /* out of memory for < 1 MB: nothing sensible is left to do */
    uint16_t *pa = (uint16_t *)(pb + BKC / 2 * BNC);
    for (int64_t jc = 0; jc < n; jc += BNC) {
        const int64_t nc = n - jc < BNC ? n - jc : BNC;
        for (int64_t pc = 0; pc < k; pc += BKC) {
            const int64_t kc = k - pc < BKC ? k - pc : BKC, kcp = (kc + 31) / 32 * 32;
            moe_bf16_pack_b(pb, b, ldb, tb, pc, kc, jc, nc, kcp);
            for (int64_t ic = 0; ic < m; ic += BMC) {
                const int64_t mc = m - ic < BMC ? m - ic : BMC;
                moe_bf16_pack_a(pa, a, lda, ta, ic, mc, pc, kc, kcp);
                for (int64_t q = 0; q < nc; q += NR) {
                    const uint32_t *bp = pb + q / NR * (kcp / 2 * NR);
                    for (int64_t r = 0; r < mc; r += MR)
                        tile_8x32(kcp / 32, (const uint32_t *)(pa + r / 32 * 32 * kcp) + r % 32 * 16, bp,
                                  c + (ic + r) * ldc + jc + q, ldc, (int)(mc - r < MR ? mc - r : MR),
                                  (int)(nc - q < NR ? nc - q : NR), alpha, beta, pc == 0);
                }
            }
        }
    }
}

static int cpu_has_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && moe_weight_simd_level() == 3;
}
#else
static int cpu_has_bf16(void) { return 0; }
#endif

/* ------------------------------------------------------------------------------------
 * Path choice and entry point.
 * ------------------------------------------------------------------------------------ */

static int g_path = -1; /* -1: not chosen yet */

/* Whether this CPU and OS run `path` (0 portable, 1 AVX-512 BF16, 2 AMX). */
static int path_available(int path) {
    switch (path) {
    case 0: return 1;
    case 1: return cpu_has_bf16();
    case 2: return moe_gemm_bf16_amx_available();
    default: return 0;
    }
}

int moe_gemm_bf16_path(void) {
    int path = __atomic_load_n(&g_path, __ATOMIC_ACQUIRE);
    if (path < 0) {
        const char *env = getenv("SPARSEMOE_BF16_GEMM");
        const int asked = !env                              ? -1
                          : strcmp(env, "amx") == 0         ? 2
                          : strcmp(env, "avx512bf16") == 0  ? 1
                          : strcmp(env, "portable") == 0    ? 0
                                                            : -1;
        path = asked >= 0 && path_available(asked) ? asked : path_available(2) ? 2 : path_available(1) ? 1 : 0;
        __atomic_store_n(&g_path, path, __ATOMIC_RELEASE);
    }
    return path;
}

int moe_gemm_bf16_set_path(int path) {
    const int chosen = path_available(path) ? path : 0;
    __atomic_store_n(&g_path, chosen, __ATOMIC_RELEASE);
    return chosen;
}

void moe_sgemm_bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    static const moe_gemm1 paths[3] = {gemm1_portable,
#if defined(__x86_64__)
                                       gemm1_avx512bf16,
#else
                                       gemm1_portable,
#endif
                                       moe_gemm1_bf16_amx};
    moe_gemm_split(paths[moe_gemm_bf16_path()], ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
