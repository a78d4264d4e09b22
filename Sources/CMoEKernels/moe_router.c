#include "moe_router.h"
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows per thread below which a parallel region costs more than it saves. */
#define ROUTER_PAR_MIN_ROWS 256

/* Top-k of one row by selection: descending, ties towards the lower index.
 * Writes k indices (and values if non-NULL). O(E·K), K is small. */
static void row_topk(const float *row, int64_t e, int64_t k, int32_t *idx, float *val) {
    for (int64_t s = 0; s < k; s++) {
        int64_t best = -1;
        float bv = 0;
        for (int64_t j = 0; j < e; j++) {
            int taken = 0;
            for (int64_t r = 0; r < s; r++)
                if (idx[r] == j) { taken = 1; break; }
            if (taken) continue;
            /* NaN never wins over a number; among equal values the lower index wins. */
            if (best < 0 || row[j] > bv || (isnan(bv) && !isnan(row[j]))) { best = j; bv = row[j]; }
        }
        idx[s] = (int32_t)best;
        if (val) val[s] = bv;
    }
}

void moe_topk_forward(float *values, int32_t *indices, const float *scores,
                      int64_t t, int64_t e, int64_t k) {
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        row_topk(scores + i * e, e, k, indices + i * k, values + i * k);
    );
}

void moe_topk_backward(float *d_scores, const float *d_values, const int32_t *indices,
                       int64_t t, int64_t e, int64_t k) {
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        for (int64_t s = 0; s < k; s++) {
            int32_t j = indices[i * k + s];
            if (j >= 0) d_scores[i * e + j] += d_values[i * k + s];
        }
    );
}

/* ---- softmax top-k ---------------------------------------------------------- */

void moe_router_softmax_topk_forward(float *probs, int32_t *indices, float *weights,
                                     const float *logits, int64_t t, int64_t e, int64_t k,
                                     int renormalize) {
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        const float *l = logits + i * e;
        float *p = probs + i * e;
        float m = l[0];
        for (int64_t j = 1; j < e; j++) m = l[j] > m ? l[j] : m;
        float sum = 0;
        for (int64_t j = 0; j < e; j++) { p[j] = expf(l[j] - m); sum += p[j]; }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < e; j++) p[j] *= inv;
        int32_t *idx = indices + i * k;
        float *w = weights + i * k;
        row_topk(p, e, k, idx, w);
        if (renormalize) {
            float s = 0;
            for (int64_t r = 0; r < k; r++) s += w[r];
            for (int64_t r = 0; r < k; r++) w[r] /= s;
        }
    );
}

void moe_router_softmax_topk_backward(float *d_logits, const float *d_weights, const float *d_probs,
                                      const float *probs, const int32_t *sel_indices,
                                      int64_t t, int64_t e, int64_t k, int renormalize) {
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        const float *p = probs + i * e;
        const int32_t *idx = sel_indices + i * k;
        const float *dw = d_weights + i * k;
        /* dp = d_probs + (∂w/∂p)ᵀ dw, built sparsely on the selected entries. */
        float dsel[k > 0 ? k : 1];
        if (renormalize) {
            float s = 0, dot = 0;
            for (int64_t r = 0; r < k; r++) s += p[idx[r]];
            for (int64_t r = 0; r < k; r++) dot += dw[r] * (p[idx[r]] / s);
            for (int64_t r = 0; r < k; r++) dsel[r] = (dw[r] - dot) / s;
        } else {
            for (int64_t r = 0; r < k; r++) dsel[r] = dw[r];
        }
        /* Σ_j p_j dp_j */
        double pdp = 0;
        if (d_probs)
            for (int64_t j = 0; j < e; j++) pdp += (double)p[j] * d_probs[i * e + j];
        for (int64_t r = 0; r < k; r++) pdp += (double)p[idx[r]] * dsel[r];
        float *dl = d_logits + i * e;
        for (int64_t j = 0; j < e; j++) {
            float dp = d_probs ? d_probs[i * e + j] : 0.0f;
            dl[j] += p[j] * (dp - (float)pdp);
        }
        for (int64_t r = 0; r < k; r++) dl[idx[r]] += p[idx[r]] * dsel[r];
    );
}

/* ---- sigmoid + bias, group-limited (DeepSeek-V3) ------------------------------ */

void moe_router_sigmoid_topk_forward(float *scores, int32_t *indices, float *weights,
                                     const float *logits, const float *bias,
                                     int64_t t, int64_t e, int64_t k, int64_t n_group,
                                     int64_t topk_group, int normalize, float scaling) {
    int64_t gsize = e / n_group;
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        const float *l = logits + i * e;
        float *s = scores + i * e;
        float choice[e];
        for (int64_t j = 0; j < e; j++) {
            s[j] = 1.0f / (1.0f + expf(-l[j]));
            choice[j] = s[j] + (bias ? bias[j] : 0.0f);
        }
        if (n_group > 1 && topk_group < n_group) {
            float gscore[n_group];
            for (int64_t g = 0; g < n_group; g++) {
                int64_t top = gsize < 2 ? gsize : 2;
                int32_t gi[2];
                float gv[2];
                row_topk(choice + g * gsize, gsize, top, gi, gv);
                gscore[g] = 0;
                for (int64_t r = 0; r < top; r++) gscore[g] += gv[r];
            }
            int32_t keep[n_group];
            row_topk(gscore, n_group, topk_group, keep, NULL);
            for (int64_t g = 0; g < n_group; g++) {
                int kept = 0;
                for (int64_t r = 0; r < topk_group; r++) kept |= keep[r] == g;
                if (!kept)
                    for (int64_t j = 0; j < gsize; j++) choice[g * gsize + j] = -INFINITY;
            }
        }
        int32_t *idx = indices + i * k;
        float *w = weights + i * k;
        row_topk(choice, e, k, idx, NULL);
        float sum = 0;
        for (int64_t r = 0; r < k; r++) { w[r] = s[idx[r]]; sum += w[r]; }
        float mul = normalize ? scaling / (sum + 1e-20f) : scaling;
        for (int64_t r = 0; r < k; r++) w[r] *= mul;
    );
}

void moe_router_sigmoid_topk_backward(float *d_logits, const float *d_weights, const float *d_scores,
                                      const float *scores, const int32_t *sel_indices,
                                      int64_t t, int64_t e, int64_t k, int normalize, float scaling) {
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        const float *s = scores + i * e;
        const int32_t *idx = sel_indices + i * k;
        const float *dw = d_weights + i * k;
        float *dl = d_logits + i * e;
        if (d_scores)
            for (int64_t j = 0; j < e; j++) dl[j] += d_scores[i * e + j] * s[j] * (1.0f - s[j]);
        if (normalize) {
            /* w_r = c·s_r / D, D = Σ s_sel + 1e-20: ds_j = c/D · (dw_j − Σ_r dw_r s_r / D) */
            float sum = 0, dot = 0;
            for (int64_t r = 0; r < k; r++) sum += s[idx[r]];
            float den = sum + 1e-20f;
            for (int64_t r = 0; r < k; r++) dot += dw[r] * s[idx[r]];
            for (int64_t r = 0; r < k; r++) {
                float sj = s[idx[r]];
                float ds = scaling / den * (dw[r] - dot / den);
                dl[idx[r]] += ds * sj * (1.0f - sj);
            }
        } else {
            for (int64_t r = 0; r < k; r++) {
                float sj = s[idx[r]];
                dl[idx[r]] += scaling * dw[r] * sj * (1.0f - sj);
            }
        }
    );
}

/* ---- expert choice ------------------------------------------------------------ */

void moe_expert_choice_forward(int32_t *indices, float *weights, const float *scores,
                               int64_t t, int64_t e, int64_t capacity) {
    for (int64_t i = 0; i < t * e; i++) { indices[i] = -1; weights[i] = 0.0f; }
    /* Each expert selects independently and writes only column e: no conflicts. */
    MOE_PARALLEL_FOR(x, e, e >= 2 && t * e >= 4096, omp_get_max_threads(),
        /* Selection of `capacity` best tokens by repeated scan with a threshold:
         * track (value, token) of the last pick; the next pick is the best pair
         * strictly below it in (value desc, token asc) order. O(T·capacity). */
        float lastv = INFINITY;
        int64_t lastt = -1;
        for (int64_t c = 0; c < capacity; c++) {
            int64_t best = -1;
            float bv = 0;
            for (int64_t i = 0; i < t; i++) {
                float v = scores[i * e + x];
                int after_last = v < lastv || (v == lastv && i > lastt);
                if (!after_last) continue;
                if (best < 0 || v > bv) { best = i; bv = v; }
            }
            if (best < 0) break;
            indices[best * e + x] = (int32_t)x;
            weights[best * e + x] = bv;
            lastv = bv;
            lastt = best;
        }
    );
}

/* ---- capacity ----------------------------------------------------------------- */

typedef struct { float w; int64_t pos; } cap_item;

int64_t moe_capacity_workspace_size(int64_t t, int64_t k, int64_t e) {
    return (int64_t)sizeof(int64_t) * (t * k + e) + (int64_t)sizeof(cap_item) * t * k;
}

static int cap_cmp(const void *a, const void *b) {
    const cap_item *x = a, *y = b;
    if (x->w > y->w) return -1;
    if (x->w < y->w) return 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

int64_t moe_apply_capacity(int32_t *indices, const float *weights, int64_t t, int64_t k, int64_t e,
                           int64_t capacity, int policy, void *workspace) {
    int64_t *order = (int64_t *)workspace;     /* t*k assignment positions, in priority order */
    int64_t *fill = order + t * k;             /* e counters */
    memset(fill, 0, sizeof(int64_t) * e);
    int64_t n = 0;
    if (policy == 0) {
        for (int64_t s = 0; s < k; s++)
            for (int64_t i = 0; i < t; i++) order[n++] = i * k + s;
    } else {
        /* Sort (weight desc, then position = token·K + slot asc); positions are unique,
         * so the order is total and qsort's instability does not matter. */
        cap_item *items = (cap_item *)(fill + e);
        for (int64_t p = 0; p < t * k; p++) { items[p].w = weights[p]; items[p].pos = p; }
        qsort(items, (size_t)(t * k), sizeof(cap_item), cap_cmp);
        for (int64_t p = 0; p < t * k; p++) order[n++] = items[p].pos;
    }
    int64_t dropped = 0;
    for (int64_t q = 0; q < n; q++) {
        int64_t p = order[q];
        int32_t x = indices[p];
        if (x < 0) continue;
        if (fill[x] < capacity) fill[x]++;
        else { indices[p] = -1; dropped++; }
    }
    return dropped;
}

/* ---- balancing losses ------------------------------------------------------------ */

float moe_load_balance_loss_forward(float *counts, const float *probs, const int32_t *sel_indices,
                                    int64_t t, int64_t e, int64_t k, int64_t groups) {
    int64_t tg = t / groups;
    double total = 0;
    for (int64_t g = 0; g < groups; g++) {
        float *cnt = counts + g * e;
        for (int64_t j = 0; j < e; j++) cnt[j] = 0;
        for (int64_t i = g * tg; i < (g + 1) * tg; i++)
            for (int64_t s = 0; s < k; s++) {
                int32_t x = sel_indices[i * k + s];
                if (x >= 0) cnt[x] += 1.0f;
            }
        double loss = 0;
        for (int64_t j = 0; j < e; j++) {
            double pe = 0;
            for (int64_t i = g * tg; i < (g + 1) * tg; i++) pe += probs[i * e + j];
            loss += ((double)cnt[j] / tg) * (pe / tg);
        }
        total += loss * e;
    }
    return (float)(total / groups);
}

void moe_load_balance_loss_backward(float *d_probs, float d_loss, const float *counts,
                                    int64_t t, int64_t e, int64_t groups) {
    int64_t tg = t / groups;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t i = g * tg; i < (g + 1) * tg; i++)
            for (int64_t j = 0; j < e; j++)
                d_probs[i * e + j] += d_loss * (float)e * (counts[g * e + j] / (float)tg) / (float)tg / (float)groups;
}

float moe_z_loss_forward(float *lse, const float *logits, int64_t t, int64_t e) {
    /* Rows in parallel, then the squares summed in row order: the same bits on any team. */
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        const float *l = logits + i * e;
        float m = l[0];
        for (int64_t j = 1; j < e; j++) m = l[j] > m ? l[j] : m;
        double s = 0;
        for (int64_t j = 0; j < e; j++) s += exp((double)l[j] - m);
        lse[i] = m + (float)log(s);
    );
    double total = 0;
    for (int64_t i = 0; i < t; i++) total += (double)lse[i] * lse[i];
    return (float)(total / t);
}

void moe_z_loss_backward(float *d_logits, float d_loss, const float *lse, const float *logits,
                         int64_t t, int64_t e) {
    MOE_PARALLEL_FOR(i, t, t >= ROUTER_PAR_MIN_ROWS, omp_get_max_threads(),
        for (int64_t j = 0; j < e; j++) {
            float p = expf(logits[i * e + j] - lse[i]);
            d_logits[i * e + j] += d_loss * 2.0f * lse[i] * p / (float)t;
        }
    );
}

/* ---- noisy gating ---------------------------------------------------------------- */

static inline float softplusf(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void moe_noisy_logits_forward(float *out, const float *clean, const float *raw_std, const float *noise,
                              int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = clean[i] + noise[i] * softplusf(raw_std[i]);
}

void moe_noisy_logits_backward(float *d_clean, float *d_raw_std, const float *d_out, const float *raw_std,
                               const float *noise, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (d_clean) d_clean[i] += d_out[i];
        if (d_raw_std) d_raw_std[i] += d_out[i] * noise[i] * sigmoidf(raw_std[i]);
    }
}

/* ---- sigmoid-gated shared expert ------------------------------------------------------ */

void moe_gated_shared_forward(float *out, const float *routed, const float *shared, const float *gate,
                              int64_t t, int64_t c) {
    MOE_PARALLEL_FOR(i, t, t * c >= 65536, omp_get_max_threads(),
        float g = sigmoidf(gate[i]);
        for (int64_t j = 0; j < c; j++) out[i * c + j] = routed[i * c + j] + g * shared[i * c + j];
    );
}

void moe_gated_shared_backward(float *d_routed, float *d_shared, float *d_gate, const float *d_out,
                               const float *shared, const float *gate, int64_t t, int64_t c) {
    MOE_PARALLEL_FOR(i, t, t * c >= 65536, omp_get_max_threads(),
        float g = sigmoidf(gate[i]);
        const float *d = d_out + i * c;
        if (d_routed)
            for (int64_t j = 0; j < c; j++) d_routed[i * c + j] += d[j];
        if (d_shared)
            for (int64_t j = 0; j < c; j++) d_shared[i * c + j] += g * d[j];
        if (d_gate) {
            double dot = 0;
            for (int64_t j = 0; j < c; j++) dot += (double)d[j] * shared[i * c + j];
            d_gate[i] += (float)dot * g * (1.0f - g);
        }
    );
}
