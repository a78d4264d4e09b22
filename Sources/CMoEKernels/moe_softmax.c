#include "moe_softmax.h"
#include "internal.h"
#include "moe_math.h"
#include <math.h>

#define PAR_MIN 32768

/* log Σ exp(x) of a row, max-subtracted, sum in double. */
static inline float row_lse(const float *x, int64_t v) {
    float m = moe_max_f(x, v);
    if (m == -INFINITY) return m; /* empty row or all -inf */
    return m + (float)log(moe_exp_shift_sum(NULL, x, m, v));
}

void moe_softmax_forward(float *out, const float *x, int64_t n, int64_t v) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * v > PAR_MIN, moe_team(nt),
        const float *xr = x + i * v;
        float *o = out + i * v;
        float m = moe_max_f(xr, v);
        if (m == -INFINITY) { /* fully masked row: all zeros rather than NaN */
            for (int64_t j = 0; j < v; j++) o[j] = 0.0f;
            continue;
        }
        double s = moe_exp_shift_sum(o, xr, m, v);
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < v; j++) o[j] *= inv;
    );
}

void moe_softmax_backward(float *d_x, const float *d_out, const float *out, int64_t n, int64_t v) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * v > PAR_MIN, moe_team(nt),
        const float *g = d_out + i * v, *y = out + i * v;
        float *dx = d_x + i * v;
        float d = (float)moe_dot_d(g, y, v);
        for (int64_t j = 0; j < v; j++) dx[j] += y[j] * (g[j] - d);
    );
}

void moe_log_softmax_forward(float *out, const float *x, int64_t n, int64_t v) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * v > PAR_MIN, moe_team(nt),
        const float *xr = x + i * v;
        float *o = out + i * v;
        float lse = row_lse(xr, v);
        for (int64_t j = 0; j < v; j++) o[j] = xr[j] - lse;
    );
}

void moe_log_softmax_backward(float *d_x, const float *d_out, const float *out, int64_t n, int64_t v) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * v > PAR_MIN, moe_team(nt),
        const float *g = d_out + i * v, *y = out + i * v;
        float *dx = d_x + i * v;
        float sf = (float)moe_sum_d(g, v);
        for (int64_t j = 0; j < v; j++) dx[j] += g[j] - moe_expf(y[j]) * sf;
    );
}

int64_t moe_cross_entropy_forward(float *loss, float *lse, const float *logits, const int32_t *targets,
                                  int64_t n, int64_t v, int32_t ignore_index) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * v > PAR_MIN, moe_team(nt),
        lse[i] = targets[i] == ignore_index ? 0.0f : row_lse(logits + i * v, v);
    );
    double total = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t t = targets[i];
        if (t == ignore_index) continue;
        total += (double)lse[i] - (double)logits[i * v + t];
        count++;
    }
    loss[0] = count > 0 ? (float)(total / (double)count) : 0.0f;
    return count;
}

void moe_cross_entropy_backward(float *d_logits, const float *d_loss, const float *lse,
                                const float *logits, const int32_t *targets,
                                int64_t n, int64_t v, int32_t ignore_index, int64_t count) {
    if (count <= 0) return;
    float scale = d_loss[0] / (float)count;
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * v > PAR_MIN, moe_team(nt),
        int32_t t = targets[i];
        if (t == ignore_index) continue;
        const float *xr = logits + i * v;
        float *dx = d_logits + i * v;
        float l = lse[i];
        for (int64_t j = 0; j < v; j++) dx[j] += scale * moe_expf(xr[j] - l);
        dx[t] -= scale;
    );
}
