/* Private: shared by the weight-format kernels (moe_weights.c, moe_weights_simd.c,
 * moe_dispatch_infer.c). Not part of the public header. See include/moe_weights.h. */
#ifndef MOE_WEIGHTS_INTERNAL_H
#define MOE_WEIGHTS_INTERNAL_H

#include "moe_weights.h"
#include <stdint.h>
#include <string.h>

/* m ≤ this: the decode path (dot products with W dequantized in registers, every W byte
 * read from memory once; x rows four at a time, the W row re-read from L1); larger m: the
 * prefill path (W dequantized panel by panel, sgemm). One GEMM in isolation (2 Zen 3 cores,
 * N = 8192, K = 2048) is faster on the decode path up to m ≈ 12, but in a model the prefill
 * path pays more: sgemm packs x again for every 64-row panel and runs small-m tiles. End to
 * end (OLMoE-1B-7B, `moe bench --model … --prompt-tokens 16|128`, the limit set with
 * SPARSEMOE_DECODE_MAX_M) 32 instead of 8 prefilled 16 tokens 1.2–1.4× faster in bf16, int8
 * and int4 (the 2048 × 2048 attention projections with m = 16) and 128 tokens at the same speed
 * within the run-to-run noise; float32 had 32 already (docs/serving.md). */
#ifndef MOE_WEIGHT_DECODE_MAX_M /* overridable for measurements */
#define MOE_WEIGHT_DECODE_MAX_M 32
#endif

/* Formats with an integer kernel at the current level (moe_weight_decode_rounds_x) take the
 * GEMV path at every m: one W row against blocks of MOE_WEIGHT_DECODE_MAX_M x rows runs
 * 2.2–2.6× the rate of dequantized panels × sgemm at 32–256 rows (Q4 with AVX-512 VNNI and
 * with AVX2, Q8 with AVX2; 512 × 2048 in cache, one thread, Intel Xeon with AVX-512 BF16,
 * Benchmarks/weight-gemv/gemv.c with SPARSEMOE_DECODE_MAX_M 256 against 1). */
#define MOE_WEIGHT_INTEGER_MAX_M ((int64_t)1 << 40)

/* The decode kernels prefetch every 64-byte line of W this far ahead of the bytes they read
 * (rows are contiguous, so across rows too); Q8 and Q4 further, as they take longer per byte.
 * Measured out of cache, one x row, 2 threads, Intel Xeon (Emerald Rapids) under KVM, GEMV
 * bytes/s ÷ a plain read of the same bytes (3 rounds): bf16 0.61 without prefetching, 0.84–0.87
 * at 2 KiB (4 and 16 KiB no better); Q8 0.80–0.83 at 2 KiB, 0.84–0.90 at 4 KiB; Q4 0.62–0.68 at
 * 2 KiB, 0.68–0.78 at 8 KiB, worse at 16 KiB. (An earlier measurement on 2 Zen 3 cores had bf16
 * decode end to end slower with prefetching, at one line per 128 bytes of bf16; not re-measured
 * there since every line is prefetched.) */
#ifndef MOE_WEIGHT_PREFETCH_BYTES /* overridable for measurements */
#define MOE_WEIGHT_PREFETCH_BYTES 2048
#endif
#ifndef MOE_WEIGHT_PREFETCH_BYTES_Q8
#define MOE_WEIGHT_PREFETCH_BYTES_Q8 4096
#endif
#ifndef MOE_WEIGHT_PREFETCH_BYTES_Q4
#define MOE_WEIGHT_PREFETCH_BYTES_Q4 8192
#endif

/* Rows of W per dequantized prefill panel (at most; fewer when N is small). */
#ifndef MOE_WEIGHT_PANEL_ROWS
#define MOE_WEIGHT_PANEL_ROWS 64
#endif

/* Below this many weight elements the decode path runs on the calling thread. (Raised to 2^18,
 * tiny-moe's 16-sequence decode steps ran as fast on a quiet machine, to 2^20 0.66–0.85× as
 * fast, 2026-12-01: contention in a server is the team tuner's to handle, not this.) */
#define MOE_WEIGHT_PARALLEL_MIN_ELEMENTS 32768

/* Pieces per thread of a parallel decode GEMV: its rows go out in this many pieces per thread of
 * --threads, each taken by whichever thread is free (moe_next_piece). Split in one piece per
 * thread, the thread holding the experts with more rows (a prefill, a batch), or running on a
 * core that something else shares, made the other wait at the region's end. Every row is
 * computed by the same code whatever piece holds it, so the pieces change no bit. */
#ifndef MOE_WEIGHT_DECODE_PIECES_PER_THREAD
#define MOE_WEIGHT_DECODE_PIECES_PER_THREAD 8
#endif

/* bfloat16 bits → float32. */
static inline float moe_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE half bits → float32 (exact; subnormals, infinities and NaN included). */
static inline float moe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (e == 0) {
        float v = (float)mant * 5.9604644775390625e-8f; /* mant · 2^-24 */
        return sign ? -v : v;
    }
    bits = e == 31 ? sign | 0x7f800000u | (mant << 13) : sign | ((e + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Q4 element k of a stored row: the nibble minus 8 (Q4_0 order, see moe_weights.h). */
static inline int moe_q4_at(const uint8_t *row, int64_t k) {
    uint8_t b = row[(k / 32) * 16 + (k % 32) % 16];
    return (int)((k % 32) < 16 ? (b & 0x0f) : (b >> 4)) - 8;
}

/* Element k of row n as float32 (scale applied). Slow; for tails and references. */
static inline float moe_weight_at(const moe_weight *w, int64_t n, int64_t k) {
    const uint8_t *row = (const uint8_t *)w->data + n * moe_weight_row_bytes(w->format, w->cols);
    switch (w->format) {
    case MOE_WEIGHT_F32: return ((const float *)row)[k];
    case MOE_WEIGHT_BF16: return moe_bf16_to_f32(((const uint16_t *)row)[k]);
    case MOE_WEIGHT_F16: return moe_f16_to_f32(((const uint16_t *)row)[k]);
    case MOE_WEIGHT_Q8: return (float)((const int8_t *)row)[k] * ((const float *)w->scales)[n];
    default: {
        const int64_t G = moe_weight_scales_per_row(MOE_WEIGHT_Q4, w->cols);
        return (float)moe_q4_at(row, k) * moe_f16_to_f32(((const uint16_t *)w->scales)[n * G + k / 32]);
    }
    }
}

/* An integer GEMV on Q8 activation blocks (moe_q8_blocks; for Q4 w in the Q4 order,
 * moe_q8_blocks_q4_order): y[i, n] (= or +=) the product of
 * row n of w (n0 ≤ n < n1) and x row i (i < m), with xq row stride 32·G bytes, xd row stride
 * G floats, G = ceil(K / 32); integer dot products per group of 32:
 *   Q4 w: Σ_g s[n, g] · xd[i, g] · Σ_j q_w[n, 32g + j] · xq[i, 32g + j]
 *   Q8 w: s[n] · Σ_g xd[i, g] · Σ_j q_w[n, 32g + j] · xq[i, 32g + j] */
typedef void (*moe_q8act_gemv)(const moe_weight *w, int64_t n0, int64_t n1, const int8_t *xq, const float *xd,
                               int64_t m, float *y, int64_t ldy, int accumulate);

/*
 * The kernels of one SIMD level (moe_weights_simd.c). All run on the calling thread.
 *   gemv:    y[i, n] (= or +=) Σ_k x[i, k] · W[n, k] for rows n0 ≤ n < n1 of w, i < m;
 *            x row stride ldx, y row stride ldy. Any m (x rows go four at a time).
 *   dequant: dst[(n − n0), k] = W[n, k] for n0 ≤ n < n1, dst row stride ldd.
 *   gemv_q4q8, gemv_q8q8: the integer GEMVs for Q4 and Q8 w (NULL where the level has none:
 *            decode then uses gemv with x in float32).
 */
typedef struct moe_weight_kernels {
    void (*gemv)(const moe_weight *w, int64_t n0, int64_t n1, const float *x, int64_t ldx, int64_t m,
                 float *y, int64_t ldy, int accumulate);
    void (*dequant)(const moe_weight *w, int64_t n0, int64_t n1, float *dst, int64_t ldd);
    moe_q8act_gemv gemv_q4q8, gemv_q8q8;
} moe_weight_kernels;

/* The integer GEMV of `k` for a weight format (Q4, Q8), or NULL. */
static inline moe_q8act_gemv moe_weight_q8act_kernel(const moe_weight_kernels *k, int format) {
    return format == MOE_WEIGHT_Q4 ? k->gemv_q4q8 : format == MOE_WEIGHT_Q8 ? k->gemv_q8q8 : NULL;
}

/* Q8 activation blocks of one row x[0 ..< K] (see moe_weights.h): q [32·G] int8 (zero past
 * K), d [G] float32. Portable C, the same bits at every SIMD level. */
void moe_q8_blocks(const float *x, int64_t K, int8_t *q, float *d);

/* The Q4 kernels' order of one row's Q8 blocks q [32·G] (src and dst may be the same): per
 * four whole groups a, b, c, d (128 bytes) the first halves (elements 0..15 of each group, the
 * ones a Q4 group keeps in its low nibbles), then the second halves:
 *   [a0..15 b0..15 c0..15 d0..15 | a16..31 b16..31 c16..31 d16..31];
 * the G mod 4 groups after the last whole four as they are. So the low and the high nibbles of
 * 64 bytes of Q4 weights (four groups) meet their x bytes without a shuffle. */
void moe_q8_blocks_q4_order(const int8_t *src, int8_t *dst, int64_t K);

/* Floats of workspace that holds the Q8 blocks of m rows of K columns (q and d). */
static inline int64_t moe_q8_blocks_floats(int64_t m, int64_t K) { return 9 * m * ((K + 31) / 32); }

/* The kernels of the level moe_weight_simd_level() reports. */
const moe_weight_kernels *moe_weight_kernels_current(void);

/* Floats of per-thread panel scratch for the prefill path with `cols` columns. */
static inline int64_t moe_weight_panel_floats(int64_t cols) { return MOE_WEIGHT_PANEL_ROWS * cols; }

#endif
