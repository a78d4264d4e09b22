/* moe_sgemm_bf16 (moe_gemm_bf16.h): GEMM with bf16 operands and float32 accumulation.
 * GotoBLAS loop order per thread: for each block of NC columns and KC depth, op(B) is packed
 * (rounded to bf16) once; for each block of MC rows, op(A) is packed; then a register-blocked
 * kernel runs over the micro-tiles. The AVX-512 BF16 kernel holds an 8 × 32 tile of C in 16
 * zmm accumulators and consumes k in pairs: vdpbf16ps adds a[2i]·b[2i] + a[2i+1]·b[2i+1] to
 * float lane i, so B is packed as (k, k+1) pairs per column and A as one 32-bit pair per row,
 * broadcast. The portable path packs the rounded values as float32 and calls sgemm per block.
 * Packing buffers are per thread, allocated on first use and kept for the thread's life. */
#include "internal.h"
#include "moe_gemm_bf16.h"
#include "moe_threads.h"
#include "moe_weights.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define MR 8            /* rows of a micro-tile (AVX-512 BF16 kernel) */
#define NR 32           /* columns of a micro-tile: two zmm of 16 floats */
#define KC 384          /* depth of a block (even) */
#define MC 192          /* rows of a packed A block (multiple of MR) */
#define NC 1024         /* columns of a packed B block (multiple of NR) */

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

void *moe_gemm_bf16_thread_buffer(size_t bytes) {
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
    float *pb = moe_gemm_bf16_thread_buffer(sizeof(float) * (KC * NC + MC * KC));
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

/* Packs X[k0 ..< k0 + kc, j0 ..< j0 + nc] as panels of `width` columns, X[k, j] = trans ?
 * x[j·ld + k] : x[k·ld + j]: panel q, pair p holds `width` 32-bit words, word j =
 * bf16(X[k0 + 2p, j]) | bf16(X[k0 + 2p + 1, j]) << 16 (0 past kc or nc). op(B) is X with
 * width NR; op(A)ᵀ (A's rows as columns, trans flipped) with width MR. */
static void pack_pairs(uint32_t *dst, const float *x, int64_t ld, int trans, int64_t k0, int64_t kc, int64_t j0,
                       int64_t nc, int width) {
    const int64_t pairs = (kc + 1) / 2;
    for (int64_t q = 0; q < nc; q += width) {
        uint32_t *panel = dst + (q / width) * pairs * width;
        for (int64_t p = 0; p < pairs; p++)
            for (int64_t j = 0; j < width; j++) {
                const int64_t col = q + j, k = 2 * p;
                uint32_t lo = 0, hi = 0;
                if (col < nc) {
                    lo = bf16_bits(op_b(x, ld, trans, k0 + k, j0 + col));
                    if (k + 1 < kc) hi = bf16_bits(op_b(x, ld, trans, k0 + k + 1, j0 + col));
                }
                panel[p * width + j] = lo | hi << 16;
            }
    }
}

ATTR void moe_gemm_bf16_merge_block(const float *t, float *c, int64_t ldc, int mr, int nr, float alpha, float beta,
                               int first) {
    const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        for (int h = 0; h < 2; h++) {
            const __mmask16 mask = h ? m1 : m0;
            if (!mask) continue;
            __m512 v = _mm512_mul_ps(_mm512_load_ps(t + 32 * r + 16 * h), va);
            if (!first) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, row + 16 * h), v);
            else if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, row + 16 * h), vb, v);
            _mm512_mask_storeu_ps(row + 16 * h, mask, v);
        }
    }
}

/* C[mr, nr] (stride ldc) = alpha · tile + (first ? beta · C : C), tile = Σ_p A-pairs · B-pairs
 * over `pairs` pairs of one packed A panel and one packed B panel; beta = 0 on the first block
 * never reads C. */
static ATTR void tile_8x32(int64_t pairs, const uint32_t *ap, const uint32_t *bp, float *c, int64_t ldc, int mr, int nr,
                           float alpha, float beta, int first) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < pairs; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * NR), b1 = (__m512bh)_mm512_loadu_si512(bp + p * NR + 16);
        for (int r = 0; r < MR; r++) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)ap[p * MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    float t[MR * NR] __attribute__((aligned(64)));
    for (int r = 0; r < MR; r++) {
        _mm512_store_ps(t + NR * r, acc[r][0]);
        _mm512_store_ps(t + NR * r + 16, acc[r][1]);
    }
    moe_gemm_bf16_merge_block(t, c, ldc, mr, nr, alpha, beta, first);
}

static void gemm1_avx512bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                             const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    uint32_t *pb = moe_gemm_bf16_thread_buffer(sizeof(uint32_t) * (KC / 2 * NC + MC * KC / 2));
    uint32_t *pa = pb + KC / 2 * NC;
    if (!pb) __builtin_trap(); /* out of memory for < 1 MB: nothing sensible is left to do */
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = n - jc < NC ? n - jc : NC;
        for (int64_t pc = 0; pc < k || pc == 0; pc += KC) {
            const int64_t kc = k - pc < KC ? k - pc : KC, pairs = (kc + 1) / 2;
            pack_pairs(pb, b, ldb, tb, pc, kc, jc, nc, NR);
            for (int64_t ic = 0; ic < m; ic += MC) {
                const int64_t mc = m - ic < MC ? m - ic : MC;
                pack_pairs(pa, a, lda, !ta, pc, kc, ic, mc, MR);
                for (int64_t q = 0; q < nc; q += NR)
                    for (int64_t r0 = 0; r0 < mc; r0 += MR)
                        tile_8x32(pairs, pa + (r0 / MR) * pairs * MR, pb + (q / NR) * pairs * NR,
                                  c + (ic + r0) * ldc + jc + q, ldc, (int)(mc - r0 < MR ? mc - r0 : MR),
                                  (int)(nc - q < NR ? nc - q : NR), alpha, beta, pc == 0);
            }
            if (k == 0) break;
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
        path = asked >= 0 && path_available(asked) ? asked : path_available(2) ? 2 : 0;
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
