#ifndef MOE_ATTENTION_H
#define MOE_ATTENTION_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Multi-head scaled-dot-product attention with grouped-query heads.
 *
 *   q:   [B, T, H,   D]      queries
 *   k:   [B, S, Hkv, D]      keys
 *   v:   [B, S, Hkv, Dv]     values (Dv may differ from D)
 *   out: [B, T, H,   Dv]
 *   probs: [B, H, T, S]      saved softmax probabilities (needed by backward)
 *
 * H % Hkv == 0; query head h reads kv head g = h / (H / Hkv).
 *   P[b,h,i,:] = softmax_j( scale · q[b,i,h,:] · k[b,j,g,:] )   over allowed j
 *   out[b,i,h,:] = Σ_j P[b,h,i,j] · v[b,j,g,:]
 * causal != 0: query i attends to keys j <= i + (S - T), i.e. the queries are the
 * last T of S positions (KV-cache decoding); requires S >= T. Masked entries of
 * probs are exactly 0.
 *
 * Forward runs (b, h) pairs in parallel (OpenMP) with single-threaded sgemm on
 * the strided head slices; causal rows are processed in blocks so that keys that
 * no query of the block can see are never multiplied.
 */
void moe_attention_forward(float *out, float *probs,
                           const float *q, const float *k, const float *v,
                           int64_t B, int64_t T, int64_t S, int64_t H, int64_t Hkv,
                           int64_t D, int64_t Dv, int causal, float scale);

/*
 * Attention of several sequences' new rows, each over its own keys (continuous batching; no
 * backward). Segment g has rows[g] query rows starting at row first_row[g] of q [N, H, D],
 * keys k[g] [keys[g], Hkv, D] and values v[g] [keys[g], Hkv, Dv] (its cache, new rows
 * included), and writes the same rows of out [N, H, Dv]; causal as moe_attention_forward with
 * T = rows[g], S = keys[g] (requires keys[g] ≥ rows[g]). Each (segment, head) pair computes
 * exactly what moe_attention_forward computes for that sequence alone, so the results are the
 * same bits; all pairs run in one parallel region. probs: Σ_g H·rows[g]·keys[g] floats of
 * scratch (the probabilities, [H, rows[g], keys[g]] per segment, one after another).
 */
void moe_attention_segments_forward(float *out, float *probs, const float *q,
                                    const float *const *k, const float *const *v,
                                    const int64_t *first_row, const int64_t *rows, const int64_t *keys,
                                    int64_t segments, int64_t H, int64_t Hkv, int64_t D, int64_t Dv,
                                    int causal, float scale);

/* Workspace (in floats) that moe_attention_backward needs: B·H·T·S. */
int64_t moe_attention_backward_workspace_size(int64_t B, int64_t T, int64_t S, int64_t H);

/*
 * Gradients of moe_attention_forward, accumulated (+=) into d_q [B,T,H,D],
 * d_k [B,S,Hkv,D], d_v [B,S,Hkv,Dv]; any may be NULL. fresh_q / fresh_k / fresh_v: written
 * (=) instead, never read. d_q is complete before d_k, and each key row's d_k before its
 * d_v, so aliased gradients (attention(x, x, x)) accumulate correctly.
 *   dP = dO · Vᵀ,  dZ = P ⊙ (dP − rowsum(dP ⊙ P)),
 *   dQ += scale · dZ · K,  dK += scale · Σ_{h in group} dZᵀ · Q,  dV += Σ_{h in group} Pᵀ · dO.
 * workspace: moe_attention_backward_workspace_size floats (holds dZ).
 * dQ/dZ run (b, h) pairs in parallel; dK/dV run (b, kv head, key-row chunk) items in
 * parallel, summing the query heads of a group in head order (no atomics).
 */
void moe_attention_backward(float *d_q, float *d_k, float *d_v, float *workspace,
                            const float *d_out, const float *probs,
                            const float *q, const float *k, const float *v,
                            int64_t B, int64_t T, int64_t S, int64_t H, int64_t Hkv,
                            int64_t D, int64_t Dv, int causal, float scale, int fresh_q, int fresh_k, int fresh_v);


#ifdef __cplusplus
}
#endif
#endif
