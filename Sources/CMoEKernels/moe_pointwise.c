#include <string.h>
#include "moe_pointwise.h"
#include "internal.h"
#include "moe_math.h"
#include <math.h>

/* Below this many elements a loop runs serially: an OpenMP fork costs more. */
#define PAR_MIN 32768
/* Columns per tile in the broadcast gradient reduction (double accumulators stay in L1). */
#define COL_TILE 1024
/* Fixed number of blocks of the full sum (independent of the thread count). */
#define SUM_BLOCKS 64

/* Columns [c0, c1) of the reduction below, in tiles of COL_TILE columns. */
static void reduce_rows_range(float *d_b, const float *g, const float *a, float scale, int64_t n, int64_t d,
                              int64_t c0, int64_t c1) {
    double acc[COL_TILE];
    for (int64_t t0 = c0; t0 < c1; t0 += COL_TILE) {
        int64_t w = c1 - t0 < COL_TILE ? c1 - t0 : COL_TILE;
        for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float *gr = g + i * d + t0;
            if (a) {
                const float *ar = a + i * d + t0;
                for (int64_t j = 0; j < w; j++) acc[j] += (double)gr[j] * (double)ar[j];
            } else {
                for (int64_t j = 0; j < w; j++) acc[j] += (double)gr[j];
            }
        }
        for (int64_t j = 0; j < w; j++) d_b[t0 + j] += (float)((double)scale * acc[j]);
    }
}

/* d_b[j] += scale * Σ_i g[i, j] (· a[i, j] when a != NULL).
 * The threads split the columns; each column sums its rows in row order in
 * double, so the result does not depend on the thread count. */
static void reduce_rows(float *d_b, const float *g, const float *a, float scale, int64_t n, int64_t d) {
    int nt = moe_column_threads(moe_threads_current(), n, d);
    if (nt <= 1) { reduce_rows_range(d_b, g, a, scale, n, d, 0, d); return; }
#pragma omp parallel num_threads(moe_team(nt))
    {
        int64_t c0, c1;
        moe_column_range(d, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        reduce_rows_range(d_b, g, a, scale, n, d, c0, c1);
    }
}

/* ---- Binary arithmetic ---------------------------------------------------- */

void moe_add_forward(float *out, const float *a, const float *b, float beta,
                     int64_t n, int64_t d, int b_broadcast) {
    int64_t total = n * d;
    int nt = moe_threads_current();
    if (!b_broadcast) {
        MOE_PARALLEL_FOR(i, total, total > PAR_MIN, moe_team(nt),
            out[i] = a[i] + beta * b[i];
        );
    } else {
        MOE_PARALLEL_FOR(i, n, total > PAR_MIN, moe_team(nt),
            for (int64_t j = 0; j < d; j++) out[i * d + j] = a[i * d + j] + beta * b[j];
        );
    }
}

void moe_add_backward(float *d_a, float *d_b, const float *d_out, float beta,
                      int64_t n, int64_t d, int b_broadcast, int fresh_a, int fresh_b) {
    int64_t total = n * d;
    int nt = moe_threads_current();
    if (d_a) {
        MOE_PARALLEL_FOR(i, total, total > PAR_MIN, moe_team(nt),
            d_a[i] = (fresh_a ? 0.0f : d_a[i]) + d_out[i];
        );
    }
    if (d_b) {
        if (b_broadcast) {
            if (fresh_b) memset(d_b, 0, sizeof(float) * (size_t)d);
            reduce_rows(d_b, d_out, NULL, beta, n, d);
        } else {
            MOE_PARALLEL_FOR(i, total, total > PAR_MIN, moe_team(nt),
                d_b[i] = (fresh_b ? 0.0f : d_b[i]) + beta * d_out[i];
            );
        }
    }
}

void moe_mul_forward(float *out, const float *a, const float *b,
                     int64_t n, int64_t d, int b_broadcast) {
    int64_t total = n * d;
    int nt = moe_threads_current();
    if (!b_broadcast) {
        MOE_PARALLEL_FOR(i, total, total > PAR_MIN, moe_team(nt),
            out[i] = a[i] * b[i];
        );
    } else {
        MOE_PARALLEL_FOR(i, n, total > PAR_MIN, moe_team(nt),
            for (int64_t j = 0; j < d; j++) out[i * d + j] = a[i * d + j] * b[j];
        );
    }
}

void moe_mul_backward(float *d_a, float *d_b, const float *d_out, const float *a, const float *b,
                      int64_t n, int64_t d, int b_broadcast) {
    int64_t total = n * d;
    int nt = moe_threads_current();
    if (d_a) {
        if (!b_broadcast) {
            MOE_PARALLEL_FOR(i, total, total > PAR_MIN, moe_team(nt),
                d_a[i] += d_out[i] * b[i];
            );
        } else {
            MOE_PARALLEL_FOR(i, n, total > PAR_MIN, moe_team(nt),
                for (int64_t j = 0; j < d; j++) d_a[i * d + j] += d_out[i * d + j] * b[j];
            );
        }
    }
    if (d_b) {
        if (b_broadcast) {
            reduce_rows(d_b, d_out, a, 1.0f, n, d);
        } else {
            MOE_PARALLEL_FOR(i, total, total > PAR_MIN, moe_team(nt),
                d_b[i] += d_out[i] * a[i];
            );
        }
    }
}

void moe_scale_forward(float *out, const float *x, float s, int64_t n) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n > PAR_MIN, moe_team(nt),
        out[i] = s * x[i];
    );
}

void moe_scale_backward(float *d_x, const float *d_out, float s, int64_t n) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n > PAR_MIN, moe_team(nt),
        d_x[i] += s * d_out[i];
    );
}

/* ---- Reductions ------------------------------------------------------------- */

void moe_sum_forward(float *out, const float *x, float scale, int64_t n) {
    double partial[SUM_BLOCKS];
    int64_t chunk = (n + SUM_BLOCKS - 1) / SUM_BLOCKS;
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(blk, SUM_BLOCKS, n > PAR_MIN, moe_team(nt),
        int64_t lo = blk * chunk, hi = lo + chunk < n ? lo + chunk : n;
        partial[blk] = hi > lo ? moe_sum_d(x + lo, hi - lo) : 0.0;
    );
    double total = 0.0;
    for (int64_t blk = 0; blk < SUM_BLOCKS; blk++) total += partial[blk];
    out[0] = (float)((double)scale * total);
}

void moe_sum_backward(float *d_x, const float *d_out, float scale, int64_t n) {
    float g = scale * d_out[0];
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n > PAR_MIN, moe_team(nt),
        d_x[i] += g;
    );
}

void moe_sum_last_forward(float *out, const float *x, int64_t n, int64_t d) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * d > PAR_MIN, moe_team(nt),
        out[i] = (float)moe_sum_d(x + i * d, d);
    );
}

void moe_sum_last_backward(float *d_x, const float *d_out, int64_t n, int64_t d) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * d > PAR_MIN, moe_team(nt),
        float g = d_out[i];
        float *row = d_x + i * d;
        for (int64_t j = 0; j < d; j++) row[j] += g;
    );
}

/* ---- Activations -------------------------------------------------------------- */

/* The activations: each element's math in a range function compiled for AVX2 + FMA and the
 * baseline (MOE_SIMD_CLONES), run on contiguous ranges of [0, n), one per thread (an
 * elementwise map: the split changes no result); up to PAR_MIN elements, as one range on the
 * calling thread without entering OpenMP (see MOE_PARALLEL_FOR). */
#define FOR_RANGES(n, range_call)                                                              \
    do {                                                                                       \
        const int64_t n_ = (n);                                                                \
        const int nt_ = moe_threads_current();                                                 \
        if (n_ > PAR_MIN) {                                                                    \
            _Pragma("omp parallel num_threads(moe_team(nt_))")                                 \
            {                                                                                  \
                const int64_t t_ = omp_get_thread_num(), s_ = omp_get_num_threads();           \
                const int64_t lo = n_ * t_ / s_, hi = n_ * (t_ + 1) / s_;                      \
                range_call;                                                                    \
            }                                                                                  \
        } else {                                                                               \
            const int64_t lo = 0, hi = n_;                                                     \
            range_call;                                                                        \
        }                                                                                      \
    } while (0)

MOE_SIMD_CLONES static void silu_forward_range(float *out, const float *x, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) out[i] = x[i] * moe_sigmoidf(x[i]);
}

void moe_silu_forward(float *out, const float *x, int64_t n) { FOR_RANGES(n, silu_forward_range(out, x, lo, hi)); }

MOE_SIMD_CLONES static void silu_backward_range(float *d_x, const float *d_out, const float *x, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
        float s = moe_sigmoidf(x[i]);
        d_x[i] += d_out[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void moe_silu_backward(float *d_x, const float *d_out, const float *x, int64_t n) {
    FOR_RANGES(n, silu_backward_range(d_x, d_out, x, lo, hi));
}

#define GELU_K 0.7978845608028654f /* √(2/π) */
#define GELU_C 0.044715f

MOE_SIMD_CLONES static void gelu_tanh_forward_range(float *out, const float *x, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + moe_tanhf(GELU_K * (v + GELU_C * v * v * v)));
    }
}

void moe_gelu_tanh_forward(float *out, const float *x, int64_t n) { FOR_RANGES(n, gelu_tanh_forward_range(out, x, lo, hi)); }

MOE_SIMD_CLONES static void gelu_tanh_backward_range(float *d_x, const float *d_out, const float *x, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
        float v = x[i];
        float t = moe_tanhf(GELU_K * (v + GELU_C * v * v * v));
        float sech2 = 1.0f - t * t;
        float local = 0.5f * (1.0f + t) + 0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        d_x[i] += d_out[i] * local;
    }
}

void moe_gelu_tanh_backward(float *d_x, const float *d_out, const float *x, int64_t n) {
    FOR_RANGES(n, gelu_tanh_backward_range(d_x, d_out, x, lo, hi));
}

#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

MOE_SIMD_CLONES static void gelu_erf_forward_range(float *out, const float *x, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) out[i] = 0.5f * x[i] * moe_erfcf(-x[i] * INV_SQRT2);
}

void moe_gelu_erf_forward(float *out, const float *x, int64_t n) { FOR_RANGES(n, gelu_erf_forward_range(out, x, lo, hi)); }

MOE_SIMD_CLONES static void gelu_erf_backward_range(float *d_x, const float *d_out, const float *x, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
        float v = x[i];
        float local = 0.5f * moe_erfcf(-v * INV_SQRT2) + v * INV_SQRT_2PI * moe_expf(-0.5f * v * v);
        d_x[i] += d_out[i] * local;
    }
}

void moe_gelu_erf_backward(float *d_x, const float *d_out, const float *x, int64_t n) {
    FOR_RANGES(n, gelu_erf_backward_range(d_x, d_out, x, lo, hi));
}

void moe_relu_forward(float *out, const float *x, int64_t n) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n > PAR_MIN, moe_team(nt),
        out[i] = x[i] > 0.0f ? x[i] : 0.0f;
    );
}

void moe_relu_backward(float *d_x, const float *d_out, const float *x, int64_t n) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n > PAR_MIN, moe_team(nt),
        if (x[i] > 0.0f) d_x[i] += d_out[i];
    );
}

MOE_SIMD_CLONES static void swiglu_forward_range(float *out, const float *gate, const float *up, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) out[i] = gate[i] * moe_sigmoidf(gate[i]) * up[i];
}

void moe_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    FOR_RANGES(n, swiglu_forward_range(out, gate, up, lo, hi));
}

MOE_SIMD_CLONES static void swiglu_backward_range(float *d_gate, float *d_up, const float *d_out, const float *gate,
                                                  const float *up, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
        float g = gate[i], s = moe_sigmoidf(g);
        if (d_gate) d_gate[i] += d_out[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (d_up) d_up[i] += d_out[i] * g * s;
    }
}

void moe_swiglu_backward(float *d_gate, float *d_up, const float *d_out,
                         const float *gate, const float *up, int64_t n) {
    FOR_RANGES(n, swiglu_backward_range(d_gate, d_up, d_out, gate, up, lo, hi));
}
