#ifndef MOE_DISPATCH_H
#define MOE_DISPATCH_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Routed experts: the expert computation of a sparse MoE layer (ggml mul_mat_id style).
 *
 *   y[t] = Σ_{s : experts[t,s] ≥ 0} gates[t,s] · FFN_{experts[t,s]}(x[t])
 *
 * Shapes: x, y [T, C]; experts (int32), gates [T, K]; an experts entry of -1 is a
 * dropped/unused slot and contributes nothing. A = number of slots with experts ≥ 0
 * ("assignments"). Expert weights are stacked (HF Mixtral naming, PyTorch Linear layout):
 *   SwiGLU: w1 (gate) [E, F, C], w3 (up) [E, F, C], w2 (down) [E, C, F]
 *           FFN_e(x) = w2[e] · (silu(w1[e]·x) ⊙ (w3[e]·x))
 *   MLP:    w1 [E, F, C], w2 [E, C, F], optional b1 [E, F], b2 [E, C]
 *           FFN_e(x) = w2[e] · act(w1[e]·x + b1[e]) + b2[e],  act ∈ {GELU erf, GELU tanh, ReLU}
 *   (b2 is also allowed with SwiGLU; b1 is not.)
 *
 * Algorithm: moe_dispatch_plan counting-sorts the (token, slot) pairs by expert (stable:
 * within an expert ascending token, then slot). The forward gathers the rows of x into a
 * contiguous expert-sorted [A, C] matrix, runs per expert one GEMM per weight matrix on its
 * contiguous block of rows with the activation fused in between, and combines: each token
 * sums its own slots in slot order (no atomics; deterministic for a fixed thread count).
 *
 * Schedules (the `schedule` argument of forward and backward):
 *   SEQUENTIAL: experts one after another, each GEMM on all BLAS threads; pointwise
 *               passes (gather, activation, combine) as OpenMP loops over rows.
 *   PARALLEL:   experts in parallel: one OpenMP region, single-threaded BLAS inside; the
 *               experts, largest first, go one at a time to the next free thread. Each
 *               expert is computed by one thread alone, so results do not depend on which.
 *   AUTO:       PARALLEL when threads > 1 and the greedy longest-first assignment of
 *               experts to threads (cost of an expert = its rows + 32, 0 if it has no rows)
 *               has a makespan ≤ 1.25 × the perfectly balanced share; else SEQUENTIAL
 *               (one dominant expert, E = 1, a single thread). Inside an OpenMP parallel
 *               region every request runs SEQUENTIAL (no nested threading).
 */

typedef enum moe_expert_activation {
    MOE_EXPERT_SWIGLU = 0,
    MOE_EXPERT_GELU = 1,      /* exact: 0.5·h·(1 + erf(h/√2)) */
    MOE_EXPERT_GELU_TANH = 2, /* 0.5·h·(1 + tanh(√(2/π)·(h + 0.044715·h³))) */
    MOE_EXPERT_RELU = 3,
} moe_expert_activation;

typedef enum moe_expert_schedule {
    MOE_SCHEDULE_AUTO = 0,
    MOE_SCHEDULE_SEQUENTIAL = 1,
    MOE_SCHEDULE_PARALLEL = 2,
} moe_expert_schedule;

/*
 * Counting sort of the (token, slot) pairs by expert.
 *   offsets  [E + 1]  out: expert e owns sorted rows offsets[e] ..< offsets[e+1]; offsets[E] = A
 *   sorted   [T * K]  out (first A used): flat pair index t*K + s of each sorted row
 *   position [T * K]  out: sorted row of pair (t, s), or -1 for a dropped slot
 *   experts  [T, K]   in: expert index in 0..<E, or -1
 * Returns A, or -1 - (t*K + s) for the first pair whose index is ≥ E or < -1 (outputs
 * are then unspecified). O(T·K + E), single-threaded.
 */
int64_t moe_dispatch_plan(int64_t *offsets, int32_t *sorted, int32_t *position,
                          const int32_t *experts, int64_t T, int64_t K, int64_t E);

/*
 * Number of float32 elements of scratch the forward (backward = 0) or backward
 * (backward = 1) needs for A assignments. Forward: 2·E rounded up to a multiple of 16 (expert→thread
 * tables, stored as int32). Backward: that + A·C + A·F (+ A·F more for SwiGLU).
 */
int64_t moe_routed_experts_workspace_size(int64_t A, int64_t C, int64_t F, int64_t E,
                                          int activation, int backward);

/*
 * Forward. Writes y and the saved activations backward needs.
 *   y   [T, C]  out (overwritten; tokens whose slots are all dropped get 0)
 *   xs  [A, C]  saved: gathered input rows in sorted order
 *   h1  [A, F]  saved: w1·x (+ b1): the pre-activation (SwiGLU: the gate branch)
 *   h3  [A, F]  saved: w3·x, SwiGLU only (NULL otherwise)
 *   act [A, F]  saved: silu(h1) ⊙ h3, or act(h1)
 *   eo  [A, C]  saved: per-assignment expert output FFN_e(x[t]) before gating
 *   workspace   moe_routed_experts_workspace_size(..., backward = 0) floats
 *   x [T, C], gates [T, K]; offsets/sorted/position from moe_dispatch_plan
 *   w1 [E, F, C], w3 [E, F, C] (SwiGLU, else NULL), w2 [E, C, F], b1 [E, F] or NULL,
 *   b2 [E, C] or NULL
 * Returns the schedule run (MOE_SCHEDULE_SEQUENTIAL or MOE_SCHEDULE_PARALLEL).
 */
int moe_routed_experts_forward(float *y, float *xs, float *h1, float *h3, float *act, float *eo,
                               float *workspace,
                               const float *x, const float *gates,
                               const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                               const float *w1, const float *w3, const float *w2,
                               const float *b1, const float *b2,
                               int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                               int activation, int schedule);

/*
 * Backward of moe_routed_experts_forward. Accumulates (+=) into every non-NULL gradient:
 *   dx [T, C], dgates [T, K] (dropped slots get nothing), dw1 [E, F, C], dw3 [E, F, C],
 *   dw2 [E, C, F], db1 [E, F], db2 [E, C]; except that the gradients named in `fresh`
 *   (MOE_FRESH_WEIGHTS: dw1, dw3, dw2; MOE_FRESH_DX: dx) are not read but written (an expert
 *   without rows, a token whose slots were all dropped, gets zeros), which spares the caller
 *   zero-filling fresh gradients.
 *   workspace: moe_routed_experts_workspace_size(..., backward = 1) floats.
 *   dy [T, C]; xs, h1, h3, act, eo: saved by the forward; the rest as in the forward.
 * Per expert: dEo = gate·dy (gathered), dW2 += dEoᵀ·act, dAct = dEo·w2, dH = dAct ⊙ act',
 * dW1 += dH1ᵀ·xs, dW3 += dH3ᵀ·xs, dXs = dH1·w1 + dH3·w3; then per token
 * dx[t] += Σ_s dXs[row(t,s)] and dgates[t,s] += <dy[t], eo[row(t,s)]>, in slot order.
 */
void moe_routed_experts_backward(float *dx, float *dgates, float *dw1, float *dw3, float *dw2,
                                 float *db1, float *db2, float *workspace,
                                 const float *dy, const float *xs, const float *h1, const float *h3,
                                 const float *act, const float *eo, const float *gates,
                                 const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                                 const float *w1, const float *w3, const float *w2,
                                 int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                                 int activation, int schedule, int fresh);

/* moe_routed_experts_backward's `fresh` flags. */
enum { MOE_FRESH_WEIGHTS = 1, MOE_FRESH_DX = 2 };


#ifdef __cplusplus
}
#endif
#endif
