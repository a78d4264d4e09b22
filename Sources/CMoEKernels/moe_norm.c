#include "moe_norm.h"
#include "internal.h"
#include <math.h>

#define PAR_MIN 32768
#define COL_BLOCK 64

void moe_rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight,
                         int64_t n, int64_t c, float eps) {
    int nt = moe_threads_current();
#pragma omp parallel for schedule(static) num_threads(nt) if (n * c > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * c;
        float *o = out + i * c;
        double ss = 0.0;
        for (int64_t j = 0; j < c; j++) ss += (double)xr[j] * (double)xr[j];
        float r = (float)(1.0 / sqrt(ss / (double)c + (double)eps));
        for (int64_t j = 0; j < c; j++) o[j] = (xr[j] * r) * weight[j];
        if (rstd) rstd[i] = r;
    }
}

/* Column-block reduction over rows (row order, double accumulators):
 *   d_w[j] += Σ_i g[i,j]·(x[i,j] − mean[i])·rstd[i]   (mean NULL → 0)
 *   d_b[j] += Σ_i g[i,j] */
static void norm_param_grads(float *d_w, float *d_b, const float *g, const float *x,
                             const float *mean, const float *rstd, int64_t n, int64_t c) {
    int64_t blocks = (c + COL_BLOCK - 1) / COL_BLOCK;
    int nt = moe_threads_current();
#pragma omp parallel for schedule(static) num_threads(nt) if (n * c > PAR_MIN && blocks > 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t c0 = blk * COL_BLOCK;
        int64_t w = c - c0 < COL_BLOCK ? c - c0 : COL_BLOCK;
        double aw[COL_BLOCK], ab[COL_BLOCK];
        for (int64_t j = 0; j < w; j++) { aw[j] = 0.0; ab[j] = 0.0; }
        for (int64_t i = 0; i < n; i++) {
            const float *gr = g + i * c + c0, *xr = x + i * c + c0;
            float m = mean ? mean[i] : 0.0f, r = rstd[i];
            for (int64_t j = 0; j < w; j++) {
                float xhat = (xr[j] - m) * r;
                aw[j] += (double)gr[j] * (double)xhat;
                ab[j] += (double)gr[j];
            }
        }
        if (d_w) for (int64_t j = 0; j < w; j++) d_w[c0 + j] += (float)aw[j];
        if (d_b) for (int64_t j = 0; j < w; j++) d_b[c0 + j] += (float)ab[j];
    }
}

void moe_rmsnorm_backward(float *d_x, float *d_weight, const float *d_out,
                          const float *x, const float *weight, const float *rstd,
                          int64_t n, int64_t c) {
    int nt = moe_threads_current();
    if (d_x) {
#pragma omp parallel for schedule(static) num_threads(nt) if (n * c > PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            const float *xr = x + i * c, *gr = d_out + i * c;
            float *dx = d_x + i * c;
            float r = rstd[i];
            double dot = 0.0; /* Σ ĝ·x̂ */
            for (int64_t j = 0; j < c; j++) dot += (double)(gr[j] * weight[j]) * (double)(xr[j] * r);
            float m = (float)(dot / (double)c);
            for (int64_t j = 0; j < c; j++) {
                float xhat = xr[j] * r;
                dx[j] += r * (gr[j] * weight[j] - xhat * m);
            }
        }
    }
    if (d_weight) norm_param_grads(d_weight, NULL, d_out, x, NULL, rstd, n, c);
}

void moe_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias,
                           int64_t n, int64_t c, float eps) {
    int nt = moe_threads_current();
#pragma omp parallel for schedule(static) num_threads(nt) if (n * c > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * c;
        float *o = out + i * c;
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) s += (double)xr[j];
        double mu = s / (double)c;
        double v = 0.0;
        for (int64_t j = 0; j < c; j++) { double d = (double)xr[j] - mu; v += d * d; }
        float m = (float)mu;
        float r = (float)(1.0 / sqrt(v / (double)c + (double)eps));
        if (bias) {
            for (int64_t j = 0; j < c; j++) o[j] = (xr[j] - m) * r * weight[j] + bias[j];
        } else {
            for (int64_t j = 0; j < c; j++) o[j] = (xr[j] - m) * r * weight[j];
        }
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = r;
    }
}

void moe_layernorm_backward(float *d_x, float *d_weight, float *d_bias, const float *d_out,
                            const float *x, const float *weight, const float *mean, const float *rstd,
                            int64_t n, int64_t c) {
    int nt = moe_threads_current();
    if (d_x) {
#pragma omp parallel for schedule(static) num_threads(nt) if (n * c > PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            const float *xr = x + i * c, *gr = d_out + i * c;
            float *dx = d_x + i * c;
            float m = mean[i], r = rstd[i];
            double sg = 0.0, sgx = 0.0; /* Σ ĝ, Σ ĝ·x̂ */
            for (int64_t j = 0; j < c; j++) {
                float gh = gr[j] * weight[j];
                sg += (double)gh;
                sgx += (double)gh * (double)((xr[j] - m) * r);
            }
            float mg = (float)(sg / (double)c), mgx = (float)(sgx / (double)c);
            for (int64_t j = 0; j < c; j++) {
                float xhat = (xr[j] - m) * r;
                dx[j] += r * (gr[j] * weight[j] - mg - xhat * mgx);
            }
        }
    }
    if (d_weight || d_bias) norm_param_grads(d_weight, d_bias, d_out, x, mean, rstd, n, c);
}
