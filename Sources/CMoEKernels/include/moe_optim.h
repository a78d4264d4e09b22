#ifndef MOE_OPTIM_H
#define MOE_OPTIM_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Optimiser kernels. N = number of elements of one parameter tensor.
 * Element-wise loops run with OpenMP (static schedule) when N is large; each
 * element's arithmetic is independent of the thread count, so results are
 * bit-identical for any thread count.
 */

/*
 * One AdamW step in place over N elements, in the order of PyTorch's
 * torch.optim.AdamW (single-tensor path), step = 1, 2, ... (this step's number),
 * on the gradient grad·grad_scale (the clipping factor, applied here instead of in a
 * pass of its own: the same float product, so the same bits; 1 leaves grad as it is):
 *   param  *= 1 - lr·weight_decay                       (decoupled weight decay)
 *   m      += (1 - beta1)·(grad - m)                     (lerp form of β1·m + (1-β1)·g)
 *   v       = beta2·v + (1 - beta2)·grad²
 *   param  -= lr/(1 - beta1^step) · m / (sqrt(v)/sqrt(1 - beta2^step) + eps)
 * i.e. param -= lr·(m̂/(√v̂ + eps) + wd·param) with the bias-corrected m̂, v̂.
 * param, m, v: [N] (updated); grad: [N]. Scalars are taken in double and the
 * per-step constants computed in double, then rounded to float once.
 */
void moe_adamw_step(float *param, float *m, float *v, const float *grad, float grad_scale, int64_t n,
                    double lr, double beta1, double beta2, double eps, double weight_decay,
                    int64_t step);

/*
 * Σ x[i]² over N elements, accumulated in double. Deterministic and independent
 * of the thread count: the elements are cut into at most 256 chunks whose size
 * depends only on N, each chunk is summed in 32 interleaved lanes (four streams
 * of eight) combined in a fixed order — the same bits at every SIMD level — and the
 * chunk sums are added in chunk order. A NaN or ±Inf element makes the result
 * non-finite (a float squared cannot overflow a double), so the result doubles as a
 * NaN/Inf check.
 */
double moe_grad_norm_sq(const float *x, int64_t n);


/* x[i] *= scale over N elements (gradient clipping). */
void moe_grad_scale(float *x, int64_t n, float scale);

#ifdef __cplusplus
}
#endif
#endif
