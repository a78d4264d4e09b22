#include "moe_attention.h"
#include "internal.h"
#include "moe_math.h"
#include "moe_weights.h"
#include <math.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Query rows per block when causal: a block multiplies only the keys its last
 * row can see, so about half of the T×S products are skipped for T = S. */
#ifndef ATTN_ROW_BLOCK
#define ATTN_ROW_BLOCK 64
#endif
/* Query rows up to which a block is computed with dot products and row updates instead of
 * two sgemm calls: decode attends one row per sequence, and packing K and V for a
 * one-row product costs more than the product. */
#ifndef ATTN_GEMV_ROWS
#define ATTN_GEMV_ROWS 4
#endif
/* Key rows per work item of the dK/dV pass. */
#ifndef ATTN_KEY_CHUNK
#define ATTN_KEY_CHUNK 64
#endif

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Number of keys query row i may see. */
static inline int64_t visible_keys(int64_t i, int64_t T, int64_t S, int causal) {
    return causal ? min64(S, i + (S - T) + 1) : S;
}

/* Σ a[j]·b[j] with 8 partial sums in a fixed order (vectorisable, deterministic). */
static inline float dot8(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[j + u] * b[j + u];
    float s = 0.0f;
    for (; j < n; j++) s += a[j] * b[j];
    for (int u = 0; u < 8; u++) s += acc[u];
    return s;
}

/* In-place softmax of row[0..lim) (lim >= 1); row[lim..S) set to 0. */
MOE_SIMD_CLONES static void softmax_row(float *row, int64_t lim, int64_t S) {
    float mx8[8];
    for (int u = 0; u < 8; u++) mx8[u] = row[0];
    int64_t j = 0;
    for (; j + 8 <= lim; j += 8)
        for (int u = 0; u < 8; u++) mx8[u] = row[j + u] > mx8[u] ? row[j + u] : mx8[u];
    float mx = row[0];
    for (; j < lim; j++) mx = row[j] > mx ? row[j] : mx;
    for (int u = 0; u < 8; u++) mx = mx8[u] > mx ? mx8[u] : mx;
    for (j = 0; j < lim; j++) row[j] = moe_expf(row[j] - mx);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (j = 0; j + 8 <= lim; j += 8)
        for (int u = 0; u < 8; u++) acc[u] += row[j + u];
    float sum = 0.0f;
    for (; j < lim; j++) sum += row[j];
    for (int u = 0; u < 8; u++) sum += acc[u];
    float inv = 1.0f / sum;
    for (j = 0; j < lim; j++) row[j] *= inv;
    for (j = lim; j < S; j++) row[j] = 0.0f;
}

/* One query row without sgemm (decode): P[s] = scale·(q · k_s) for s < lim, softmax, then
 * o = Σ_s P[s]·v_s, keys in order. Compiled twice: plain C, and for AVX2 + FMA; head_forward
 * picks one by the kernels' SIMD level (moe_weight_simd_level: the CPU's, SPARSEMOE_SIMD). */
static inline __attribute__((always_inline)) void attend_row_body(
    float *restrict o, float *restrict row, const float *restrict q, const float *restrict K,
    const float *restrict V, int64_t lim, int64_t S, int64_t ldk, int64_t ldv, int64_t D, int64_t Dv, float scale) {
    for (int64_t s = 0; s < lim; s++) row[s] = scale * dot8(q, K + s * ldk, D);
    softmax_row(row, lim, S);
    for (int64_t d = 0; d < Dv; d++) o[d] = 0.0f;
    for (int64_t s = 0; s < lim; s++) {
        const float p = row[s], *restrict v = V + s * ldv;
        for (int64_t d = 0; d < Dv; d++) o[d] += p * v[d];
    }
}

typedef void (*attend_row_fn)(float *, float *, const float *, const float *, const float *, int64_t, int64_t,
                              int64_t, int64_t, int64_t, int64_t, float);

static void attend_row_plain(float *o, float *row, const float *q, const float *K, const float *V, int64_t lim,
                             int64_t S, int64_t ldk, int64_t ldv, int64_t D, int64_t Dv, float scale) {
    attend_row_body(o, row, q, K, V, lim, S, ldk, ldv, D, Dv, scale);
}

#if defined(__x86_64__)
#define AVX2_FMA __attribute__((target("avx2,fma")))

/* [Σ a0, Σ a1, …, Σ a7]: the lanes of eight vectors summed, one sum per lane of the result. */
static inline __attribute__((always_inline)) AVX2_FMA __m256 sum8x8(const __m256 *a) {
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3); /* lanes 0..3 of a0..a3 | 4..7 */
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* o[d0 .. d0 + 8·NV) = Σ_{s<lim} row[s]·V[s, d0 ..], keys in order, the NV vectors of o held
 * in registers over all keys (NV a constant after inlining). */
static inline __attribute__((always_inline)) AVX2_FMA void weighted_rows(const int nv, float *restrict o, const float *row,
                                                                        const float *restrict V, int64_t lim, int64_t ldv) {
    __m256 acc[8];
    for (int k = 0; k < nv; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t s = 0; s < lim; s++) {
        const __m256 p = _mm256_set1_ps(row[s]);
        const float *v = V + s * ldv;
        for (int k = 0; k < nv; k++) acc[k] = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8 * k), acc[k]);
    }
    for (int k = 0; k < nv; k++) _mm256_storeu_ps(o + 8 * k, acc[k]);
}

/* attend_row_body on AVX2 + FMA vectors where D is a multiple of 8: the scores of eight keys
 * at a time (one vector accumulator per key over D, then the eight summed across lanes
 * together, where one key at a time paid a horizontal sum each), and o in registers 64
 * columns at a time while the keys stream past; otherwise the body compiled for AVX2. */
AVX2_FMA
static void attend_row_avx2(float *o, float *row, const float *q, const float *K, const float *V, int64_t lim,
                            int64_t S, int64_t ldk, int64_t ldv, int64_t D, int64_t Dv, float scale) {
    if (D % 8 != 0) {
        attend_row_body(o, row, q, K, V, lim, S, ldk, ldv, D, Dv, scale);
        return;
    }
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t s = 0;
    for (; s + 8 <= lim; s += 8) {
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(K + (s + j) * ldk + d), acc[j]);
        }
        _mm256_storeu_ps(row + s, _mm256_mul_ps(sc, sum8x8(acc)));
    }
    if (s < lim) { /* the last lim mod 8 keys: one block, the missing keys' accumulators left at 0 */
        const int64_t rem = lim - s;
        __m256 acc[8];
        float scores[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            for (int64_t j = 0; j < rem; j++) acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(K + (s + j) * ldk + d), acc[j]);
        }
        _mm256_storeu_ps(scores, _mm256_mul_ps(sc, sum8x8(acc)));
        for (int64_t j = 0; j < rem; j++) row[s + j] = scores[j];
    }
    softmax_row(row, lim, S);
    int64_t d0 = 0;
    for (; d0 + 64 <= Dv; d0 += 64) weighted_rows(8, o + d0, row, V + d0, lim, ldv);
    switch ((Dv - d0) / 8) {
    case 7: weighted_rows(7, o + d0, row, V + d0, lim, ldv); break;
    case 6: weighted_rows(6, o + d0, row, V + d0, lim, ldv); break;
    case 5: weighted_rows(5, o + d0, row, V + d0, lim, ldv); break;
    case 4: weighted_rows(4, o + d0, row, V + d0, lim, ldv); break;
    case 3: weighted_rows(3, o + d0, row, V + d0, lim, ldv); break;
    case 2: weighted_rows(2, o + d0, row, V + d0, lim, ldv); break;
    case 1: weighted_rows(1, o + d0, row, V + d0, lim, ldv); break;
    default: break;
    }
    for (int64_t d = d0 + (Dv - d0) / 8 * 8; d < Dv; d++) {
        float acc = 0.0f;
        for (int64_t t = 0; t < lim; t++) acc += row[t] * V[t * ldv + d];
        o[d] = acc;
    }
}
#undef AVX2_FMA
#endif

static attend_row_fn attend_row_current(void) {
#if defined(__x86_64__)
    if (moe_weight_simd_level() >= 2) return attend_row_avx2;
#endif
    return attend_row_plain;
}

/* One (b, h) pair: P[T, S] (row stride S), O rows with stride ldo. */
static void head_forward(float *O, float *P, const float *Q, const float *K, const float *V,
                         int64_t T, int64_t S, int64_t ldq, int64_t ldk, int64_t ldv, int64_t ldo,
                         int64_t D, int64_t Dv, int causal, float scale) {
    int64_t rb = causal ? ATTN_ROW_BLOCK : T;
    for (int64_t i0 = 0; i0 < T; i0 += rb) {
        int64_t i1 = min64(T, i0 + rb);
        int64_t n = visible_keys(i1 - 1, T, S, causal);
        float *Pb = P + i0 * S;
        if (i1 - i0 <= ATTN_GEMV_ROWS) {
            const attend_row_fn attend_row = attend_row_current();
            for (int64_t i = i0; i < i1; i++)
                attend_row(O + i * ldo, P + i * S, Q + i * ldq, K, V, visible_keys(i, T, S, causal), S, ldk, ldv, D, Dv, scale);
            continue;
        }
        moe_sgemm(0, 1, i1 - i0, n, D, scale, Q + i0 * ldq, ldq, K, ldk, 0.0f, Pb, S);
        for (int64_t i = i0; i < i1; i++) {
            softmax_row(P + i * S, visible_keys(i, T, S, causal), S);
        }
        moe_sgemm(0, 0, i1 - i0, Dv, n, 1.0f, Pb, S, V, ldv, 0.0f, O + i0 * ldo, ldo);
    }
}

void moe_attention_forward(float *out, float *probs,
                           const float *q, const float *k, const float *v,
                           int64_t B, int64_t T, int64_t S, int64_t H, int64_t Hkv,
                           int64_t D, int64_t Dv, int causal, float scale) {
    int64_t group = H / Hkv, pairs = B * H;
    int threads = moe_threads_current();
#define FORWARD_PAIR(p) do { \
        int64_t b_ = (p) / H, h_ = (p) % H, g_ = h_ / group; \
        head_forward(out + b_ * T * H * Dv + h_ * Dv, probs + (p) * T * S, \
                     q + b_ * T * H * D + h_ * D, k + b_ * S * Hkv * D + g_ * D, \
                     v + b_ * S * Hkv * Dv + g_ * Dv, T, S, H * D, Hkv * D, Hkv * Dv, H * Dv, \
                     D, Dv, causal, scale); \
    } while (0)
    if (threads == 1 || pairs < threads || moe_in_region()) {
        for (int64_t p = 0; p < pairs; p++) FORWARD_PAIR(p);
        return;
    }
    int64_t next = 0; /* (b, h) pairs to whichever thread is free: each pair is one thread's */
#pragma omp parallel num_threads(moe_team(threads))
    for (int64_t p; (p = moe_next_piece(&next, pairs)) >= 0;) FORWARD_PAIR(p);
#undef FORWARD_PAIR
}

void moe_attention_segments_forward(float *out, float *probs, const float *q,
                                    const float *const *k, const float *const *v,
                                    const int64_t *first_row, const int64_t *rows, const int64_t *keys,
                                    int64_t segments, int64_t H, int64_t Hkv, int64_t D, int64_t Dv,
                                    int causal, float scale) {
    if (segments <= 0 || H <= 0) return;
    const int64_t group = H / Hkv, pairs = segments * H;
    /* probs offset of segment g: Σ_{g' < g} H·T_g'·S_g' */
    int64_t *offset = malloc((size_t)segments * sizeof *offset);
    if (offset == NULL) abort();
    int64_t total = 0;
    for (int64_t g = 0; g < segments; g++) { offset[g] = total; total += H * rows[g] * keys[g]; }
    const int threads = moe_threads_current();
#define SEGMENT_PAIR(p) do { \
        const int64_t g_ = (p) / H, h_ = (p) % H, kv_ = h_ / group; \
        head_forward(out + first_row[g_] * H * Dv + h_ * Dv, probs + offset[g_] + h_ * rows[g_] * keys[g_], \
                     q + first_row[g_] * H * D + h_ * D, k[g_] + kv_ * D, v[g_] + kv_ * Dv, rows[g_], keys[g_], \
                     H * D, Hkv * D, Hkv * Dv, H * Dv, D, Dv, causal, scale); \
    } while (0)
    if (threads == 1 || pairs < 2 || moe_in_region()) {
        for (int64_t p = 0; p < pairs; p++) SEGMENT_PAIR(p);
    } else {
        int64_t next = 0; /* (sequence, head) pairs to whichever thread is free */
#pragma omp parallel num_threads(moe_team(threads))
        for (int64_t p; (p = moe_next_piece(&next, pairs)) >= 0;) SEGMENT_PAIR(p);
    }
#undef SEGMENT_PAIR
    free(offset);
}

int64_t moe_attention_backward_workspace_size(int64_t B, int64_t T, int64_t S, int64_t H) {
    return B * H * T * S;
}

/* dZ for one (b, h) pair into W[T, S] (all S columns written, masked ones 0), and
 * dQ = scale · dZ · K + beta_q · dQ. */
static void head_backward_q(float *dQ, float *W, const float *dO, const float *P,
                            const float *K, const float *V,
                            int64_t T, int64_t S, int64_t ldq, int64_t ldk, int64_t ldv, int64_t ldo,
                            int64_t D, int64_t Dv, int causal, float scale, float beta_q) {
    int64_t rb = causal ? ATTN_ROW_BLOCK : T;
    for (int64_t i0 = 0; i0 < T; i0 += rb) {
        int64_t i1 = min64(T, i0 + rb);
        int64_t n = visible_keys(i1 - 1, T, S, causal);
        float *Wb = W + i0 * S;
        moe_sgemm(0, 1, i1 - i0, n, Dv, 1.0f, dO + i0 * ldo, ldo, V, ldv, 0.0f, Wb, S); /* dP */
        for (int64_t i = i0; i < i1; i++) {
            float *w = W + i * S;
            const float *p = P + i * S;
            int64_t lim = visible_keys(i, T, S, causal);
            float dot = dot8(w, p, lim);
            for (int64_t j = 0; j < lim; j++) w[j] = p[j] * (w[j] - dot);
            for (int64_t j = lim; j < S; j++) w[j] = 0.0f;
        }
        if (dQ) moe_sgemm(0, 0, i1 - i0, D, n, scale, Wb, S, K, ldk, beta_q, dQ + i0 * ldq, ldq);
    }
}

/* Key rows [j0, j1) of kv head g of batch b: sum over the group's query heads, into dK and
 * dV or, where fresh_k / fresh_v, written over them. */
static void chunk_backward_kv(float *dK, float *dV, const float *W, const float *P,
                              const float *Q, const float *dO,
                              int64_t j0, int64_t j1, int64_t T, int64_t S, int64_t H, int64_t group,
                              int64_t ldq, int64_t ldk, int64_t ldv, int64_t ldo,
                              int64_t D, int64_t Dv, int causal, float scale, int fresh_k, int fresh_v) {
    /* Query rows before i_start cannot see key j0 (nor any later key). Causal attention has
     * S ≥ T, so the last query sees every key and rows ≥ 1: a fresh dK, dV is written whole. */
    int64_t i_start = causal ? max64(0, j0 - (S - T)) : 0;
    int64_t rows = T - i_start;
    if (rows <= 0) return;
    for (int64_t hh = 0; hh < group; hh++) {
        int64_t off = hh * T * S + i_start * S + j0;
        if (dK) moe_sgemm(1, 0, j1 - j0, D, rows, scale, W + off, S, Q + hh * D + i_start * ldq, ldq,
                      fresh_k && hh == 0 ? 0.0f : 1.0f, dK + j0 * ldk, ldk);
        if (dV) moe_sgemm(1, 0, j1 - j0, Dv, rows, 1.0f, P + off, S, dO + hh * Dv + i_start * ldo, ldo,
                      fresh_v && hh == 0 ? 0.0f : 1.0f, dV + j0 * ldv, ldv);
    }
    (void)H;
}

void moe_attention_backward(float *d_q, float *d_k, float *d_v, float *workspace,
                            const float *d_out, const float *probs,
                            const float *q, const float *k, const float *v,
                            int64_t B, int64_t T, int64_t S, int64_t H, int64_t Hkv,
                            int64_t D, int64_t Dv, int causal, float scale, int fresh_q, int fresh_k, int fresh_v) {
    if (!d_q && !d_k && !d_v) return;
    int64_t group = H / Hkv, pairs = B * H;
    int threads = moe_threads_current();

    /* Pass 1, per (b, h): dZ into the workspace, dQ. */
#define BACKWARD_Q(p) do { \
        int64_t b_ = (p) / H, h_ = (p) % H, g_ = h_ / group; \
        head_backward_q(d_q ? d_q + b_ * T * H * D + h_ * D : NULL, workspace + (p) * T * S, \
                        d_out + b_ * T * H * Dv + h_ * Dv, probs + (p) * T * S, \
                        k + b_ * S * Hkv * D + g_ * D, v + b_ * S * Hkv * Dv + g_ * Dv, \
                        T, S, H * D, Hkv * D, Hkv * Dv, H * Dv, D, Dv, causal, scale, fresh_q ? 0.0f : 1.0f); \
    } while (0)
    if (threads == 1 || pairs < threads || moe_in_region()) {
        for (int64_t p = 0; p < pairs; p++) BACKWARD_Q(p);
    } else {
        int64_t next = 0; /* pairs to whichever thread is free, as in the forward */
#pragma omp parallel num_threads(moe_team(threads))
        for (int64_t p; (p = moe_next_piece(&next, pairs)) >= 0;) BACKWARD_Q(p);
    }
#undef BACKWARD_Q
    if (!d_k && !d_v) return;

    /* Pass 2, per (b, kv head, key chunk): dK, dV; each item owns its rows. */
    int64_t chunks = (S + ATTN_KEY_CHUNK - 1) / ATTN_KEY_CHUNK;
    int64_t items = B * Hkv * chunks;
#define BACKWARD_KV(it) do { \
        int64_t c_ = (it) % chunks, bg_ = (it) / chunks, b_ = bg_ / Hkv, g_ = bg_ % Hkv; \
        int64_t j0_ = c_ * ATTN_KEY_CHUNK, j1_ = min64(S, j0_ + ATTN_KEY_CHUNK); \
        int64_t h0_ = g_ * group; \
        chunk_backward_kv(d_k ? d_k + b_ * S * Hkv * D + g_ * D : NULL, \
                          d_v ? d_v + b_ * S * Hkv * Dv + g_ * Dv : NULL, \
                          workspace + (b_ * H + h0_) * T * S, probs + (b_ * H + h0_) * T * S, \
                          q + b_ * T * H * D + h0_ * D, d_out + b_ * T * H * Dv + h0_ * Dv, \
                          j0_, j1_, T, S, H, group, H * D, Hkv * D, Hkv * Dv, H * Dv, \
                          D, Dv, causal, scale, fresh_k, fresh_v); \
    } while (0)
    if (threads == 1 || items < threads || moe_in_region()) {
        for (int64_t it = 0; it < items; it++) BACKWARD_KV(it);
    } else {
        /* To whichever thread is free: causal chunks near the start carry more query rows,
         * and the cores need not run at one speed. */
        int64_t next = 0;
#pragma omp parallel num_threads(moe_team(threads))
        for (int64_t it; (it = moe_next_piece(&next, items)) >= 0;) BACKWARD_KV(it);
    }
#undef BACKWARD_KV
}

