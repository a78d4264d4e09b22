/* Private: the expert activations of the routed experts (moe_dispatch.h), forward and
 * backward, shared by the training forward/backward (moe_dispatch.c) and the inference
 * forward (moe_dispatch_infer.c). Not part of the public header. */
#ifndef MOE_ACTIVATION_H
#define MOE_ACTIVATION_H

#include "moe_dispatch.h"
#include "moe_math.h"
#include <stdint.h>

/* Pointwise math: the vectorisable exp family of moe_math.h (no libm calls in the loops). */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

/* act[0..n) from h[0..n) (SwiGLU: h = gate branch, u = up branch). */
static inline __attribute__((always_inline)) void activation_forward(float *restrict act, float *restrict h, const float *restrict u,
                               const float *restrict bias, int64_t n, int kind) {
    switch (kind) {
    case MOE_EXPERT_SWIGLU:
        for (int64_t i = 0; i < n; i++) act[i] = h[i] * moe_sigmoidf(h[i]) * u[i];
        break;
    case MOE_EXPERT_GELU:
        if (bias) for (int64_t i = 0; i < n; i++) h[i] += bias[i];
        for (int64_t i = 0; i < n; i++) act[i] = 0.5f * h[i] * moe_erfcf(-h[i] * INV_SQRT2);
        break;
    case MOE_EXPERT_GELU_TANH:
        if (bias) for (int64_t i = 0; i < n; i++) h[i] += bias[i];
        for (int64_t i = 0; i < n; i++) {
            float v = h[i];
            act[i] = 0.5f * v * (1.0f + moe_tanhf(GELU_K * (v + GELU_C * v * v * v)));
        }
        break;
    default: /* ReLU */
        if (bias) for (int64_t i = 0; i < n; i++) h[i] += bias[i];
        for (int64_t i = 0; i < n; i++) act[i] = h[i] > 0.0f ? h[i] : 0.0f;
        break;
    }
}

/* In place: d1 holds dAct on entry and dH1 on exit; SwiGLU also writes d3 = dH3. */
static inline __attribute__((always_inline)) void activation_backward(float *restrict d1, float *restrict d3, const float *restrict h,
                                const float *restrict u, int64_t n, int kind) {
    switch (kind) {
    case MOE_EXPERT_SWIGLU:
        for (int64_t i = 0; i < n; i++) {
            float s = moe_sigmoidf(h[i]);
            float silu = h[i] * s;
            float g = d1[i];
            if (d3) d3[i] = g * silu;
            d1[i] = g * u[i] * s * (1.0f + h[i] * (1.0f - s));
        }
        break;
    case MOE_EXPERT_GELU:
        for (int64_t i = 0; i < n; i++) {
            float v = h[i];
            float cdf = 0.5f * moe_erfcf(-v * INV_SQRT2);
            d1[i] *= cdf + v * INV_SQRT_2PI * moe_expf(-0.5f * v * v);
        }
        break;
    case MOE_EXPERT_GELU_TANH:
        for (int64_t i = 0; i < n; i++) {
            float v = h[i];
            float t = moe_tanhf(GELU_K * (v + GELU_C * v * v * v));
            float dt = GELU_K * (1.0f + 3.0f * GELU_C * v * v);
            d1[i] *= 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * dt;
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++) d1[i] = h[i] > 0.0f ? d1[i] : 0.0f;
        break;
    }
}

#endif
