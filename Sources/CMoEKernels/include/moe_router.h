#ifndef MOE_ROUTER_H
#define MOE_ROUTER_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Router kernels: expert selection, gate weights, capacity and balancing losses.
 * T tokens (rows), E experts, K slots per token. Expert index -1 marks an unused
 * or dropped slot. Ties in every top-k are broken towards the lower index, and
 * selections are listed in descending score order (torch.topk's sorted order).
 */

/* Row-wise top-k: values[T,K], indices[T,K] of scores[T,E], descending. K <= E. */
void moe_topk_forward(float *values, int32_t *indices, const float *scores,
                      int64_t t, int64_t e, int64_t k);
/* d_scores[T,E] += scatter of d_values[T,K] to the selected indices. */
void moe_topk_backward(float *d_scores, const float *d_values, const int32_t *indices,
                       int64_t t, int64_t e, int64_t k);

/*
 * Softmax top-k router (Mixtral, Qwen-MoE, OLMoE, Switch):
 *   probs[t] = softmax(logits[t]) in fp32;  indices[t] = top-k of probs[t];
 *   weights[t,s] = probs[t, indices[t,s]]  (/ Σ_s of them when renormalize != 0).
 * probs [T,E] is saved for backward and for the balancing losses.
 */
void moe_router_softmax_topk_forward(float *probs, int32_t *indices, float *weights,
                                     const float *logits, int64_t t, int64_t e, int64_t k,
                                     int renormalize);
/*
 * d_logits[T,E] += J_softmaxᵀ · (d_probs + (∂weights/∂probs)ᵀ · d_weights).
 * d_probs [T,E] may be NULL (no loss on the probabilities). sel_indices is the
 * selection made by the forward (before any capacity dropping; a dropped slot
 * simply has d_weights = 0, and still counts in the renormalisation denominator).
 */
void moe_router_softmax_topk_backward(float *d_logits, const float *d_weights, const float *d_probs,
                                      const float *probs, const int32_t *sel_indices,
                                      int64_t t, int64_t e, int64_t k, int renormalize);

/*
 * Sigmoid router with selection bias and group-limited top-k (DeepSeek-V3):
 *   scores = sigmoid(logits);  choice = scores + bias (bias only steers selection);
 *   group score = sum of the top-2 choice scores in each of n_group groups of E/n_group;
 *   keep the topk_group best groups, others' choice scores set to -inf (transformers 5;
 *   DeepSeek's reference and transformers 4 used 0, which differs when biased scores are < 0);
 *   indices = top-k of the masked choice scores;
 *   weights = scores[indices] (/ (Σ + 1e-20) when normalize) · scaling.
 * scores [T,E] is saved. bias may be NULL (no bias). n_group = 1 disables grouping.
 */
void moe_router_sigmoid_topk_forward(float *scores, int32_t *indices, float *weights,
                                     const float *logits, const float *bias,
                                     int64_t t, int64_t e, int64_t k, int64_t n_group,
                                     int64_t topk_group, int normalize, float scaling);
/* d_logits[T,E] += gradient through weights (and d_scores [T,E] if non-NULL).
 * sel_indices: the forward's selection (before any capacity dropping). */
void moe_router_sigmoid_topk_backward(float *d_logits, const float *d_weights, const float *d_scores,
                                      const float *scores, const int32_t *sel_indices,
                                      int64_t t, int64_t e, int64_t k, int normalize, float scaling);

/*
 * Expert-choice selection (Zhou et al. 2022): each expert e picks the `capacity`
 * tokens with the highest scores[:, e] (ties: lower token). Output in the [T,E]
 * slot layout: indices[t,e] = e if expert e picked token t, else -1;
 * weights[t,e] = scores[t,e] if picked, else 0. capacity <= T.
 */
void moe_expert_choice_forward(int32_t *indices, float *weights, const float *scores,
                               int64_t t, int64_t e, int64_t capacity);

/*
 * Capacity limit for token-choice routing: keeps at most `capacity` assignments per
 * expert and sets the others' indices to -1 (in place). policy 0 = by position:
 * slot 0 of every token first, then slot 1, ..., tokens in order; policy 1 = by
 * probability: highest weight first (ties: lower token, then lower slot).
 * Returns the number of dropped assignments.
 * workspace: moe_capacity_workspace_size(t, k, e) bytes.
 */
int64_t moe_apply_capacity(int32_t *indices, const float *weights, int64_t t, int64_t k, int64_t e,
                           int64_t capacity, int policy, void *workspace);
int64_t moe_capacity_workspace_size(int64_t t, int64_t k, int64_t e);

/*
 * Load-balancing loss (Switch/GShard, as transformers' Mixtral load_balancing_loss_func):
 *   count_e = #(t, s) with sel_indices[t,s] == e;  f_e = count_e / T  (summed over the K slots)
 *   P_e = (1/T) Σ_t probs[t,e];   loss = E · Σ_e f_e · P_e
 * Rows are grouped into `groups` consecutive sequences of T/groups tokens; the loss is
 * computed per group and averaged (groups = 1: batch-level; groups = B: sequence-level,
 * DeepSeek-V2/V3). counts [groups, E] receives the counts. Returns the loss.
 */
float moe_load_balance_loss_forward(float *counts, const float *probs, const int32_t *sel_indices,
                                    int64_t t, int64_t e, int64_t k, int64_t groups);
/* d_probs[T,E] += d_loss · E · f_e(group) / (T_group · groups). Gradient does not flow
 * through the counts. */
void moe_load_balance_loss_backward(float *d_probs, float d_loss, const float *counts,
                                    int64_t t, int64_t e, int64_t groups);

/* Router z-loss (ST-MoE): loss = (1/T) Σ_t logsumexp(logits[t])²; lse [T] saved. */
float moe_z_loss_forward(float *lse, const float *logits, int64_t t, int64_t e);
/* d_logits[t,e] += d_loss · 2 · lse[t] · softmax(logits[t])[e] / T. */
void moe_z_loss_backward(float *d_logits, float d_loss, const float *lse, const float *logits,
                         int64_t t, int64_t e);

/*
 * Noisy gating (Shazeer et al. 2017), elementwise over n = T·E logits:
 *   out = clean + noise ⊙ softplus(raw_std),  noise ~ N(0, 1) drawn by the caller.
 */
void moe_noisy_logits_forward(float *out, const float *clean, const float *raw_std, const float *noise,
                              int64_t n);
/* d_clean += d_out;  d_raw_std += d_out ⊙ noise ⊙ sigmoid(raw_std). Either may be NULL. */
void moe_noisy_logits_backward(float *d_clean, float *d_raw_std, const float *d_out, const float *raw_std,
                               const float *noise, int64_t n);

/*
 * Sigmoid-gated shared expert combine (Qwen2-MoE):
 *   out[t] = routed[t] + σ(gate[t]) · shared[t],   routed, shared, out [T,C], gate [T].
 */
void moe_gated_shared_forward(float *out, const float *routed, const float *shared, const float *gate,
                              int64_t t, int64_t c);
/* d_routed += d_out; d_shared += σ(gate)·d_out; d_gate += σ'(gate)·<d_out[t], shared[t]>. NULL skips. */
void moe_gated_shared_backward(float *d_routed, float *d_shared, float *d_gate, const float *d_out,
                               const float *shared, const float *gate, int64_t t, int64_t c);

#ifdef __cplusplus
}
#endif
#endif
