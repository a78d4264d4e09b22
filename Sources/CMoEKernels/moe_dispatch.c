/* Routed experts (sparse MoE expert computation): plan, forward, backward.
 * See include/moe_dispatch.h for the math, shapes and schedules. */
#include "moe_dispatch.h"
#include "internal.h"
#include "moe_math.h"
#include "moe_activation.h"
#include <math.h>
#include <string.h>

/* out[c0..c1) += Σ_{r in r0..<r1} in[r*ld + c], rows in ascending order (deterministic). */
static void colsum(float *restrict out, const float *restrict in, int64_t r0, int64_t r1, int64_t ld,
                   int64_t c0, int64_t c1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = in + r * ld;
        for (int64_t c = c0; c < c1; c++) out[c] += row[c];
    }
}

/* <u, v> with 8 interleaved partial sums (vectorises without reassociation flags; the
 * summation order is fixed, so the result is deterministic). */
static float dot(const float *restrict u, const float *restrict v, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += u[i + j] * v[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += u[i] * v[i];
    return s;
}

/* C[m,n] = A[m,k]·op(B) + beta·C, row-major, op(B) = Bᵀ (B stored [n,k]) when tb. */
static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    moe_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* ------------------------------------------------------------------------------------
 * Plan and schedule
 * ------------------------------------------------------------------------------------ */

int64_t moe_dispatch_plan(int64_t *offsets, int32_t *sorted, int32_t *position,
                          const int32_t *experts, int64_t T, int64_t K, int64_t E) {
    const int64_t P = T * K;
    for (int64_t e = 0; e <= E; e++) offsets[e] = 0;
    for (int64_t i = 0; i < P; i++) {
        int32_t e = experts[i];
        if (e < -1 || e >= E) return -1 - i;
        if (e >= 0) offsets[e + 1]++;
    }
    for (int64_t e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    /* Stable fill: pairs visited in (token, slot) order; offsets[e] is used as the cursor
     * and restored afterwards by shifting. */
    for (int64_t i = 0; i < P; i++) {
        int32_t e = experts[i];
        if (e < 0) { position[i] = -1; continue; }
        int64_t r = offsets[e]++;
        sorted[r] = (int32_t)i;
        position[i] = (int32_t)r;
    }
    for (int64_t e = E; e > 0; e--) offsets[e] = offsets[e - 1];
    offsets[0] = 0;
    return offsets[E];
}

#define TABLE_FLOATS(E) ((((E) * 2) + 15) / 16 * 16)
#define MAX_SCHED_THREADS 256

/* Longest-first assignment of experts to threads, the model of the PARALLEL schedule (which
 * hands the experts out in this order to whichever thread is free). order[E]: experts by
 * descending cost (ties: lower index first); owner[E]: thread of each expert (-1: no rows).
 * Returns the makespan (max per-thread cost). Deterministic. */
static int64_t assign_experts(int32_t *order, int32_t *owner, const int64_t *offsets, int64_t E,
                              int threads) {
    if (threads > MAX_SCHED_THREADS) threads = MAX_SCHED_THREADS;
    int64_t load[MAX_SCHED_THREADS];
    for (int i = 0; i < threads; i++) load[i] = 0;
    for (int64_t e = 0; e < E; e++) {
        /* insertion sort by descending rows (stable) */
        int64_t rows = offsets[e + 1] - offsets[e];
        int64_t j = e;
        while (j > 0 && offsets[order[j - 1] + 1] - offsets[order[j - 1]] < rows) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (int32_t)e;
    }
    int64_t makespan = 0;
    for (int64_t i = 0; i < E; i++) {
        int32_t e = order[i];
        int64_t rows = offsets[e + 1] - offsets[e];
        if (rows == 0) { owner[e] = -1; continue; }
        int best = 0;
        for (int t = 1; t < threads; t++)
            if (load[t] < load[best]) best = t;
        load[best] += rows + 32;
        owner[e] = best;
        if (load[best] > makespan) makespan = load[best];
    }
    return makespan;
}

static int resolve_schedule(int32_t *order, int32_t *owner, const int64_t *offsets, int64_t E,
                            int threads, int requested) {
    int64_t makespan = assign_experts(order, owner, offsets, E, threads);
    /* Inside an enclosing OpenMP region a parallel schedule would nest: run sequentially. */
    if (moe_in_region()) return MOE_SCHEDULE_SEQUENTIAL;
    if (requested == MOE_SCHEDULE_SEQUENTIAL || requested == MOE_SCHEDULE_PARALLEL) return requested;
    if (threads <= 1) return MOE_SCHEDULE_SEQUENTIAL;
    int64_t total = 0;
    for (int64_t e = 0; e < E; e++) {
        int64_t rows = offsets[e + 1] - offsets[e];
        if (rows > 0) total += rows + 32;
    }
    /* makespan ≤ 1.25 · total / threads */
    return 4 * makespan * threads <= 5 * total ? MOE_SCHEDULE_PARALLEL : MOE_SCHEDULE_SEQUENTIAL;
}

/* The PARALLEL schedule, shared by forward and backward: the experts, largest first (`order`),
 * each to the next free thread through one atomic counter — this absorbs uneven GEMM speed
 * and time stolen from one core, and since each expert is computed by one thread alone the
 * result does not depend on which — then, after a barrier, tokens 0..<T in static blocks.
 * (An OpenMP schedule(dynamic) loop would need a newer runtime than Debian's libomp 14.) */
static void run_parallel_schedule(const void *args, void (*expert)(const void *, int64_t),
                                  void (*token)(const void *, int64_t), const int32_t *order,
                                  const int32_t *owner, int64_t E, int64_t T, int threads) {
    int64_t cursor = 0;
#pragma omp parallel num_threads(moe_team(threads))
    {
        for (int64_t i; (i = __atomic_fetch_add(&cursor, 1, __ATOMIC_RELAXED)) < E;)
            if (owner[order[i]] >= 0) expert(args, order[i]);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) token(args, t);
    }
}

int64_t moe_routed_experts_workspace_size(int64_t A, int64_t C, int64_t F, int64_t E,
                                          int activation, int backward) {
    int64_t n = TABLE_FLOATS(E);
    if (backward) n += A * C + A * F * (activation == MOE_EXPERT_SWIGLU ? 2 : 1);
    return n;
}

/* ------------------------------------------------------------------------------------
 * Forward
 * ------------------------------------------------------------------------------------ */

typedef struct {
    float *y, *xs, *h1, *h3, *act, *eo;
    const float *x, *gates;
    const int64_t *offsets;
    const int32_t *sorted, *position;
    const float *w1, *w3, *w2, *b1, *b2;
    int64_t T, C, F, E, K;
    int kind;
} fwd_args;

static void gather_rows(const fwd_args *a, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++)
        memcpy(a->xs + r * a->C, a->x + (int64_t)(a->sorted[r] / a->K) * a->C, (size_t)a->C * sizeof(float));
}

MOE_SIMD_CLONES static void act_rows(const fwd_args *a, int64_t e, int64_t r0, int64_t r1) {
    const int64_t F = a->F;
    for (int64_t r = r0; r < r1; r++)
        activation_forward(a->act + r * F, a->h1 + r * F, a->h3 ? a->h3 + r * F : NULL,
                           a->b1 ? a->b1 + e * F : NULL, F, a->kind);
}

static void bias2_rows(const fwd_args *a, int64_t e, int64_t r0, int64_t r1) {
    const int64_t C = a->C;
    const float *b = a->b2 + e * C;
    for (int64_t r = r0; r < r1; r++) {
        float *row = a->eo + r * C;
        for (int64_t c = 0; c < C; c++) row[c] += b[c];
    }
}

static void up_gemms(const fwd_args *a, int64_t e, int64_t r0, int64_t n) {
    const int64_t C = a->C, F = a->F;
    gemm(0, 1, n, F, C, a->xs + r0 * C, C, a->w1 + e * F * C, C, 0.0f, a->h1 + r0 * F, F);
    if (a->kind == MOE_EXPERT_SWIGLU)
        gemm(0, 1, n, F, C, a->xs + r0 * C, C, a->w3 + e * F * C, C, 0.0f, a->h3 + r0 * F, F);
}

static void down_gemm(const fwd_args *a, int64_t e, int64_t r0, int64_t n) {
    const int64_t C = a->C, F = a->F;
    gemm(0, 1, n, C, F, a->act + r0 * F, F, a->w2 + e * C * F, F, 0.0f, a->eo + r0 * C, C);
}

/* One expert start to finish on the calling thread (parallel schedule). */
static void expert_forward_serial(const fwd_args *a, int64_t e) {
    int64_t r0 = a->offsets[e], r1 = a->offsets[e + 1];
    gather_rows(a, r0, r1);
    up_gemms(a, e, r0, r1 - r0);
    act_rows(a, e, r0, r1);
    down_gemm(a, e, r0, r1 - r0);
    if (a->b2) bias2_rows(a, e, r0, r1);
}

static void combine_tokens(const fwd_args *a, int64_t t0, int64_t t1) {
    const int64_t C = a->C, K = a->K;
    for (int64_t t = t0; t < t1; t++) {
        float *restrict yr = a->y + t * C;
        memset(yr, 0, (size_t)C * sizeof(float));
        for (int64_t s = 0; s < K; s++) {
            int32_t p = a->position[t * K + s];
            if (p < 0) continue;
            const float g = a->gates[t * K + s];
            const float *restrict er = a->eo + (int64_t)p * C;
            for (int64_t c = 0; c < C; c++) yr[c] += g * er[c];
        }
    }
}

/* run_parallel_schedule tasks */
static void forward_expert_task(const void *a, int64_t e) { expert_forward_serial(a, e); }
static void combine_token_task(const void *a, int64_t t) { combine_tokens(a, t, t + 1); }

int moe_routed_experts_forward(float *y, float *xs, float *h1, float *h3, float *act, float *eo,
                               float *workspace,
                               const float *x, const float *gates,
                               const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                               const float *w1, const float *w3, const float *w2,
                               const float *b1, const float *b2,
                               int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                               int activation, int schedule) {
    fwd_args a = {y, xs, h1, activation == MOE_EXPERT_SWIGLU ? h3 : NULL, act, eo, x, gates,
                  offsets, sorted, position, w1, w3, w2, b1, b2, T, C, F, E, K, activation};
    const int threads = moe_threads_current();
    int32_t *order = (int32_t *)workspace, *owner = order + E;
    const int sched = resolve_schedule(order, owner, offsets, E, threads, schedule);
    const int64_t A = offsets[E];

    if (sched == MOE_SCHEDULE_PARALLEL) {
        run_parallel_schedule(&a, forward_expert_task, combine_token_task, order, owner, E, T, threads);
        return sched;
    }

#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < A; r++) gather_rows(&a, r, r + 1);
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = offsets[e], r1 = offsets[e + 1];
        if (r1 == r0) continue;
        up_gemms(&a, e, r0, r1 - r0);
#pragma omp parallel for schedule(static)
        for (int64_t r = r0; r < r1; r++) act_rows(&a, e, r, r + 1);
        down_gemm(&a, e, r0, r1 - r0);
        if (b2) {
#pragma omp parallel for schedule(static)
            for (int64_t r = r0; r < r1; r++) bias2_rows(&a, e, r, r + 1);
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) combine_tokens(&a, t, t + 1);
    return sched;
}

/* ------------------------------------------------------------------------------------
 * Backward
 * ------------------------------------------------------------------------------------ */

typedef struct {
    float *dx, *dgates, *dw1, *dw3, *dw2, *db1, *db2;
    float *deo, *dh1, *dh3; /* workspace: [A,C] (dEo, then dXs), [A,F], [A,F] */
    const float *dy, *xs, *h1, *h3, *act, *eo, *gates;
    const int64_t *offsets;
    const int32_t *sorted, *position;
    const float *w1, *w3, *w2;
    int64_t T, C, F, E, K;
    int kind;
    int need_deo, need_dact;
    float wbeta; /* 1: dW1, dW3, dW2 accumulate; 0: they are written (MOE_FRESH_WEIGHTS) */
    int dx_fresh; /* dx rows are written (MOE_FRESH_DX), not added to */
} bwd_args;

/* dEo[r] = gate(r) · dy[token(r)] */
static void deo_rows(const bwd_args *a, int64_t r0, int64_t r1) {
    const int64_t C = a->C;
    for (int64_t r = r0; r < r1; r++) {
        int32_t pair = a->sorted[r];
        const float g = a->gates[pair];
        const float *restrict src = a->dy + (int64_t)(pair / a->K) * C;
        float *restrict dst = a->deo + r * C;
        for (int64_t c = 0; c < C; c++) dst[c] = g * src[c];
    }
}

MOE_SIMD_CLONES static void dact_rows(const bwd_args *a, int64_t r0, int64_t r1) {
    const int64_t F = a->F;
    for (int64_t r = r0; r < r1; r++)
        activation_backward(a->dh1 + r * F, a->dh3 ? a->dh3 + r * F : NULL, a->h1 + r * F,
                            a->h3 ? a->h3 + r * F : NULL, F, a->kind);
}

/* GEMMs after dEo: dW2, dAct. */
static void bwd_down_gemms(const bwd_args *a, int64_t e, int64_t r0, int64_t n) {
    const int64_t C = a->C, F = a->F;
    if (a->dw2) gemm(1, 0, C, F, n, a->deo + r0 * C, C, a->act + r0 * F, F, a->wbeta, a->dw2 + e * C * F, F);
    if (a->need_dact) gemm(0, 0, n, F, C, a->deo + r0 * C, C, a->w2 + e * C * F, F, 0.0f, a->dh1 + r0 * F, F);
}

/* GEMMs after dH: dW1, dW3, dXs (into the dEo rows, which are no longer needed). */
static void bwd_up_gemms(const bwd_args *a, int64_t e, int64_t r0, int64_t n) {
    const int64_t C = a->C, F = a->F;
    const int swiglu = a->kind == MOE_EXPERT_SWIGLU;
    if (a->dw1) gemm(1, 0, F, C, n, a->dh1 + r0 * F, F, a->xs + r0 * C, C, a->wbeta, a->dw1 + e * F * C, C);
    if (swiglu && a->dw3) gemm(1, 0, F, C, n, a->dh3 + r0 * F, F, a->xs + r0 * C, C, a->wbeta, a->dw3 + e * F * C, C);
    if (a->dx) {
        gemm(0, 0, n, C, F, a->dh1 + r0 * F, F, a->w1 + e * F * C, C, 0.0f, a->deo + r0 * C, C);
        if (swiglu) gemm(0, 0, n, C, F, a->dh3 + r0 * F, F, a->w3 + e * F * C, C, 1.0f, a->deo + r0 * C, C);
    }
}

static void expert_backward_serial(const bwd_args *a, int64_t e) {
    const int64_t r0 = a->offsets[e], r1 = a->offsets[e + 1], n = r1 - r0;
    if (!a->need_deo) return;
    deo_rows(a, r0, r1);
    if (a->db2) colsum(a->db2 + e * a->C, a->deo, r0, r1, a->C, 0, a->C);
    bwd_down_gemms(a, e, r0, n);
    if (!a->need_dact) return;
    dact_rows(a, r0, r1);
    if (a->db1) colsum(a->db1 + e * a->F, a->dh1, r0, r1, a->F, 0, a->F);
    bwd_up_gemms(a, e, r0, n);
}

/* dx[t] += Σ_s dXs[row(t,s)] (dx[t] = … where dx_fresh), dgates[t,s] += <dy[t], eo[row(t,s)]>,
 * slot order. */
static void scatter_tokens(const bwd_args *a, int64_t t0, int64_t t1) {
    const int64_t C = a->C, K = a->K;
    for (int64_t t = t0; t < t1; t++) {
        if (a->dx && a->dx_fresh) memset(a->dx + t * C, 0, sizeof(float) * (size_t)C);
        for (int64_t s = 0; s < K; s++) {
            int32_t p = a->position[t * K + s];
            if (p < 0) continue;
            if (a->dx) {
                float *restrict d = a->dx + t * C;
                const float *restrict src = a->deo + (int64_t)p * C;
                for (int64_t c = 0; c < C; c++) d[c] += src[c];
            }
            if (a->dgates) {
                a->dgates[t * K + s] += dot(a->dy + t * C, a->eo + (int64_t)p * C, C);
            }
        }
    }
}

/* run_parallel_schedule tasks */
static void backward_expert_task(const void *a, int64_t e) { expert_backward_serial(a, e); }
static void scatter_token_task(const void *a, int64_t t) { scatter_tokens(a, t, t + 1); }

void moe_routed_experts_backward(float *dx, float *dgates, float *dw1, float *dw3, float *dw2,
                                 float *db1, float *db2, float *workspace,
                                 const float *dy, const float *xs, const float *h1, const float *h3,
                                 const float *act, const float *eo, const float *gates,
                                 const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                                 const float *w1, const float *w3, const float *w2,
                                 int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                                 int activation, int schedule, int fresh) {
    const int weights_fresh = (fresh & MOE_FRESH_WEIGHTS) != 0;
    const int swiglu = activation == MOE_EXPERT_SWIGLU;
    const int64_t A = offsets[E];
    float *deo = workspace + TABLE_FLOATS(E);
    float *dh1 = deo + A * C;
    bwd_args a = {dx, dgates, dw1, swiglu ? dw3 : NULL, dw2, db1, db2,
                  deo, dh1, swiglu ? dh1 + A * F : NULL,
                  dy, xs, h1, swiglu ? h3 : NULL, act, eo, gates, offsets, sorted, position,
                  w1, w3, w2, T, C, F, E, K, activation, 0, 0, weights_fresh ? 0.0f : 1.0f, (fresh & MOE_FRESH_DX) != 0};
    a.need_dact = dx || dw1 || (swiglu && dw3) || db1;
    a.need_deo = a.need_dact || dw2 || db2;
    if (weights_fresh) /* experts without rows write nothing: their gradients are zero */
        for (int64_t e = 0; e < E; e++) {
            if (offsets[e + 1] > offsets[e]) continue;
            if (dw1) memset(dw1 + e * F * C, 0, sizeof(float) * (size_t)(F * C));
            if (swiglu && dw3) memset(dw3 + e * F * C, 0, sizeof(float) * (size_t)(F * C));
            if (dw2) memset(dw2 + e * C * F, 0, sizeof(float) * (size_t)(C * F));
        }
    const int threads = moe_threads_current();
    int32_t *order = (int32_t *)workspace, *owner = order + E;
    const int sched = resolve_schedule(order, owner, offsets, E, threads, schedule);

    if (sched == MOE_SCHEDULE_PARALLEL) {
        run_parallel_schedule(&a, backward_expert_task, scatter_token_task, order, owner, E, T, threads);
        return;
    }

    if (a.need_deo) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < A; r++) deo_rows(&a, r, r + 1);
        for (int64_t e = 0; e < E; e++) {
            const int64_t r0 = offsets[e], r1 = offsets[e + 1], n = r1 - r0;
            if (n == 0) continue;
            if (db2) {
#pragma omp parallel for schedule(static)
                for (int64_t c0 = 0; c0 < C; c0 += 64) colsum(db2 + e * C, deo, r0, r1, C, c0, c0 + 64 < C ? c0 + 64 : C);
            }
            bwd_down_gemms(&a, e, r0, n);
            if (!a.need_dact) continue;
#pragma omp parallel for schedule(static)
            for (int64_t r = r0; r < r1; r++) dact_rows(&a, r, r + 1);
            if (db1) {
#pragma omp parallel for schedule(static)
                for (int64_t c0 = 0; c0 < F; c0 += 64) colsum(db1 + e * F, dh1, r0, r1, F, c0, c0 + 64 < F ? c0 + 64 : F);
            }
            bwd_up_gemms(&a, e, r0, n);
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) scatter_tokens(&a, t, t + 1);
}

