/* Routed experts, inference forward with weights in any storage format (moe_weights.h):
 * nothing saved for backward. See include/moe_dispatch.h for the math and the plan. */
#include "moe_weights_internal.h"
#include "moe_activation.h"
#include "internal.h"
#include <string.h>

/* Workspace layout (floats): xs [A, C] | h1 [A, F] | h3 [A, F] (SwiGLU) | act [A, F] |
 * eo [A, C] | Q8 activation blocks of xs and of act (decode with Q4 or Q8 weights) | the blocks
 * of xs in the Q4 order (w1 and w3 may differ in format) | per-thread
 * dequantized panels (only when an expert can have more than MOE_WEIGHT_DECODE_MAX_M rows). */
int64_t moe_routed_experts_infer_workspace_size(int64_t A, int64_t C, int64_t F, int64_t E, int activation,
                                                moe_weight w1, moe_weight w2) {
    (void)E; (void)w1; (void)w2; /* w3's format may differ from w1's: panels sized for any format */
    int64_t n = 2 * A * C + A * F * (activation == MOE_EXPERT_SWIGLU ? 3 : 2);
    n += moe_q8_blocks_floats(A, C) + moe_q8_blocks_floats(A, F) + 8 * A * ((C + 31) / 32);
    if (A > moe_weight_decode_max_m(w1.format)) {
        const int nt = moe_in_region() ? 1 : moe_threads_current();
        n += (int64_t)nt * moe_weight_panel_floats(C > F ? C : F);
    }
    return n;
}

typedef struct {
    float *y, *xs, *h1, *h3, *act, *eo, *panels;
    int8_t *xq, *aq; /* Q8 blocks of xs [A, 32·ceil(C/32)] and act [A, 32·ceil(F/32)] (act's in
                      * the Q4 order when w2 is Q4) */
    int8_t *xq4;     /* xq in the Q4 order (moe_q8_blocks_q4_order), where w1 or w3 is Q4 */
    float *xd, *ad;  /* their block scales [A, ceil(C/32)], [A, ceil(F/32)] */
    const float *x, *gates;
    const int64_t *offsets;
    const int32_t *sorted, *position;
    moe_weight w1, w3, w2;
    const float *b1, *b2;
    int64_t T, C, F, E, K;
    int kind;
} infer_args;

static void gather_row(const infer_args *a, int64_t r) {
    memcpy(a->xs + r * a->C, a->x + (int64_t)(a->sorted[r] / a->K) * a->C, (size_t)a->C * sizeof(float));
}

/* act = activation(h1 (+ b1), h3) on columns f0 ..< f1 of expert e's rows. */
MOE_SIMD_CLONES static void act_cols(const infer_args *a, int64_t e, int64_t f0, int64_t f1) {
    const int64_t F = a->F;
    for (int64_t r = a->offsets[e]; r < a->offsets[e + 1]; r++)
        activation_forward(a->act + r * F + f0, a->h1 + r * F + f0, a->h3 ? a->h3 + r * F + f0 : NULL,
                           a->b1 ? a->b1 + e * F + f0 : NULL, f1 - f0, a->kind);
}

/* eo[rows of e, c0 ..< c1] += b2[e, c0 ..< c1] */
static void bias2_cols(const infer_args *a, int64_t e, int64_t c0, int64_t c1) {
    const int64_t C = a->C;
    for (int64_t r = a->offsets[e]; r < a->offsets[e + 1]; r++)
        for (int64_t c = c0; c < c1; c++) a->eo[r * C + c] += a->b2[e * C + c];
}

static void combine_token(const infer_args *a, int64_t t) {
    const int64_t C = a->C, K = a->K;
    float *restrict yr = a->y + t * C;
    memset(yr, 0, (size_t)C * sizeof(float));
    for (int64_t s = 0; s < K; s++) {
        const int32_t p = a->position[t * K + s];
        if (p < 0) continue;
        const float g = a->gates[t * K + s];
        const float *restrict er = a->eo + (int64_t)p * C;
        for (int64_t c = 0; c < C; c++) yr[c] += g * er[c];
    }
}

/* Weight rows lo ..< hi of the experts with rows laid end to end (each contributing `n`
 * rows): calls body(a, e, j0, j1) for each piece, rows j0 ..< j1 of expert e. */
static void for_rows(const infer_args *a, int64_t n, int64_t lo, int64_t hi,
                     void (*body)(const infer_args *, int64_t, int64_t, int64_t)) {
    int64_t base = 0;
    for (int64_t e = 0; e < a->E && base < hi; e++) {
        if (a->offsets[e + 1] == a->offsets[e]) continue;
        const int64_t j0 = lo > base ? lo - base : 0, j1 = hi - base < n ? hi - base : n;
        if (j0 < j1) body(a, e, j0, j1);
        base += n;
    }
}

/* Whether the decode GEMV of w runs on Q8 activation blocks (moe_weight_decode_rounds_x). */
static int uses_q8(const moe_weight *w) { return moe_weight_decode_rounds_x(w->format); }

/* y rows (stride ldy) = x rows (float, stride K; or their Q8 blocks) · rows n0 ..< n1 of w. */
static void piece_gemv(const moe_weight *w, int64_t n0, int64_t n1, const float *x, const int8_t *xq,
                       const float *xd, int64_t m, float *y, int64_t ldy) {
    const moe_weight_kernels *kern = moe_weight_kernels_current();
    const moe_q8act_gemv q8 = moe_weight_q8act_kernel(kern, w->format);
    if (q8) q8(w, n0, n1, xq, xd, m, y, ldy, 0);
    else kern->gemv(w, n0, n1, x, w->cols, m, y, ldy, 0);
}

/* h1, h3 and act of expert e on hidden units f0 ..< f1 (decode). */
static void up_piece(const infer_args *a, int64_t e, int64_t f0, int64_t f1) {
    const int64_t r0 = a->offsets[e], m = a->offsets[e + 1] - r0, F = a->F, C = a->C, GC = (C + 31) / 32;
    const int8_t *xq = a->xq + r0 * 32 * GC, *xq4 = a->xq4 + r0 * 32 * GC;
    const float *xd = a->xd + r0 * GC;
    const moe_weight w1 = moe_weight_rows(a->w1, e * F, F);
    piece_gemv(&w1, f0, f1, a->xs + r0 * C, w1.format == MOE_WEIGHT_Q4 ? xq4 : xq, xd, m, a->h1 + r0 * F, F);
    if (a->h3) {
        const moe_weight w3 = moe_weight_rows(a->w3, e * F, F);
        piece_gemv(&w3, f0, f1, a->xs + r0 * C, w3.format == MOE_WEIGHT_Q4 ? xq4 : xq, xd, m, a->h3 + r0 * F, F);
    }
    act_cols(a, e, f0, f1);
}

/* eo (+ b2) of expert e on outputs c0 ..< c1 (decode). */
static void down_piece(const infer_args *a, int64_t e, int64_t c0, int64_t c1) {
    const int64_t r0 = a->offsets[e], m = a->offsets[e + 1] - r0, F = a->F, C = a->C, GF = (F + 31) / 32;
    const moe_weight w2 = moe_weight_rows(a->w2, e * C, C);
    piece_gemv(&w2, c0, c1, a->act + r0 * F, a->aq + r0 * 32 * GF, a->ad + r0 * GF, m, a->eo + r0 * C, C);
    if (a->b2) bias2_cols(a, e, c0, c1);
}

/* Decode: one parallel region. Gather (and round each row to Q8 blocks once, for Q4 / Q8 w1, w3);
 * then the hidden units of all experts with rows, laid end to end, in pieces over the threads
 * (h1, h3, act; an expert's cost grows with its rows, so even halves of the weight rows were
 * uneven work in a prefill or a batch); then (Q8 blocks of act, for a Q4 / Q8 w2) the outputs
 * likewise (eo); then the tokens. Each element is computed by one thread with the same code
 * whatever the split, so the result does not depend on the thread count. */
static void infer_decode(const infer_args *a, int64_t active) {
    const int64_t A = a->offsets[a->E], C = a->C, F = a->F, GC = (C + 31) / 32, GF = (F + 31) / 32;
    const int xq8 = uses_q8(&a->w1) || (a->h3 && uses_q8(&a->w3)), aq8 = uses_q8(&a->w2);
    const int xq4 = (uses_q8(&a->w1) && a->w1.format == MOE_WEIGHT_Q4) ||
                    (a->h3 && uses_q8(&a->w3) && a->w3.format == MOE_WEIGHT_Q4);
    int nt = moe_in_region() ? 1 : moe_threads_current();
    if (active * (a->F + a->C) * a->C < MOE_WEIGHT_PARALLEL_MIN_ELEMENTS) nt = 1;
    /* The weight rows go out in pieces taken by whichever thread is free (a row's result
     * depends on neither its piece nor its thread: the same bits under any load). */
    const int64_t pieces = nt > 1 ? (int64_t)nt * MOE_WEIGHT_DECODE_PIECES_PER_THREAD : 1;
    int64_t next_up = 0, next_down = 0;
#pragma omp parallel num_threads(moe_team(nt)) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < A; r++) {
            gather_row(a, r);
            if (xq8) moe_q8_blocks(a->xs + r * C, C, a->xq + r * 32 * GC, a->xd + r * GC);
            if (xq4) moe_q8_blocks_q4_order(a->xq + r * 32 * GC, a->xq4 + r * 32 * GC, C);
        }
        const int64_t up = active * a->F, down = active * a->C;
        for (int64_t p; (p = moe_next_piece(&next_up, pieces)) >= 0;)
            for_rows(a, a->F, up * p / pieces, up * (p + 1) / pieces, up_piece);
#pragma omp barrier
        if (aq8) {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < A; r++) {
                moe_q8_blocks(a->act + r * F, F, a->aq + r * 32 * GF, a->ad + r * GF);
                if (a->w2.format == MOE_WEIGHT_Q4) moe_q8_blocks_q4_order(a->aq + r * 32 * GF, a->aq + r * 32 * GF, F);
            }
        }
        for (int64_t p; (p = moe_next_piece(&next_down, pieces)) >= 0;)
            for_rows(a, a->C, down * p / pieces, down * (p + 1) / pieces, down_piece);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t tok = 0; tok < a->T; tok++) combine_token(a, tok);
    }
}

/* Prefill: expert after expert, each matrix product on all threads (moe_weight_matmul). */
static void infer_prefill(const infer_args *a) {
    const int64_t A = a->offsets[a->E], C = a->C, F = a->F;
    const int nt = moe_in_region() ? 1 : moe_threads_current();
#pragma omp parallel for schedule(static) num_threads(moe_team(nt)) if (nt > 1)
    for (int64_t r = 0; r < A; r++) gather_row(a, r);
    for (int64_t e = 0; e < a->E; e++) {
        const int64_t r0 = a->offsets[e], m = a->offsets[e + 1] - r0;
        if (m == 0) continue;
        moe_weight_matmul(a->h1 + r0 * F, F, a->xs + r0 * C, C, moe_weight_rows(a->w1, e * F, F), m, 0, a->panels);
        if (a->h3)
            moe_weight_matmul(a->h3 + r0 * F, F, a->xs + r0 * C, C, moe_weight_rows(a->w3, e * F, F), m, 0, a->panels);
        const int64_t fb = (F + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(moe_team(nt)) if (nt > 1 && m * F > MOE_WEIGHT_PARALLEL_MIN_ELEMENTS)
        for (int64_t b = 0; b < fb; b++) act_cols(a, e, b * 64, (b + 1) * 64 < F ? (b + 1) * 64 : F);
        moe_weight_matmul(a->eo + r0 * C, C, a->act + r0 * F, F, moe_weight_rows(a->w2, e * C, C), m, 0, a->panels);
        if (a->b2) bias2_cols(a, e, 0, C);
    }
#pragma omp parallel for schedule(static) num_threads(moe_team(nt)) if (nt > 1)
    for (int64_t tok = 0; tok < a->T; tok++) combine_token(a, tok);
}

void moe_routed_experts_infer(float *y, float *workspace,
                              const float *x, const float *gates,
                              const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                              moe_weight w1, moe_weight w3, moe_weight w2,
                              const float *b1, const float *b2,
                              int64_t T, int64_t C, int64_t F, int64_t E, int64_t K, int activation) {
    const int64_t A = offsets[E];
    const int swiglu = activation == MOE_EXPERT_SWIGLU;
    float *xs = workspace, *h1 = xs + A * C, *h3 = h1 + A * F, *act = h3 + (swiglu ? A * F : 0);
    float *eo = act + A * F, *xd = eo + A * C + 8 * A * ((C + 31) / 32);
    float *ad = xd + A * ((C + 31) / 32) + 8 * A * ((F + 31) / 32), *xq4f = ad + A * ((F + 31) / 32);
    float *panels = xq4f + 8 * A * ((C + 31) / 32);
    int8_t *xq = (int8_t *)(eo + A * C), *aq = (int8_t *)(xd + A * ((C + 31) / 32));
    infer_args a = {y, xs, h1, swiglu ? h3 : NULL, act, eo, panels, xq, aq, (int8_t *)xq4f, xd, ad, x, gates, offsets, sorted, position,
                    w1, w3, w2, swiglu ? NULL : b1, b2, T, C, F, E, K, activation};
    int64_t active = 0, most = 0;
    for (int64_t e = 0; e < E; e++) {
        const int64_t rows = offsets[e + 1] - offsets[e];
        active += rows > 0;
        most = rows > most ? rows : most;
    }
    if (most <= moe_weight_decode_max_m(w1.format)) infer_decode(&a, active);
    else infer_prefill(&a);
}
