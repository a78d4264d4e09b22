#include "moe_norm.h"
#include "internal.h"
#include "moe_math.h"
#include <math.h>

#define PAR_MIN 32768
#define COL_TILE 1024

void moe_rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight,
                         int64_t n, int64_t c, float eps) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * c > PAR_MIN, moe_team(nt),
        const float *xr = x + i * c;
        float *o = out + i * c;
        double ss = moe_dot_d(xr, xr, c);
        float r = (float)(1.0 / sqrt(ss / (double)c + (double)eps));
        for (int64_t j = 0; j < c; j++) o[j] = (xr[j] * r) * weight[j];
        if (rstd) rstd[i] = r;
    );
}

/* Columns [c0, c1) of norm_param_grads, in tiles of COL_TILE columns. */
static void norm_param_grads_range(float *d_w, float *d_b, const float *g, const float *x,
                                   const float *mean, const float *rstd, int64_t n, int64_t c,
                                   int64_t c0, int64_t c1) {
    double aw[COL_TILE], ab[COL_TILE];
    for (int64_t t0 = c0; t0 < c1; t0 += COL_TILE) {
        int64_t w = c1 - t0 < COL_TILE ? c1 - t0 : COL_TILE;
        for (int64_t j = 0; j < w; j++) { aw[j] = 0.0; ab[j] = 0.0; }
        for (int64_t i = 0; i < n; i++) {
            const float *gr = g + i * c + t0, *xr = x + i * c + t0;
            float m = mean ? mean[i] : 0.0f, r = rstd[i];
            if (d_w)
                for (int64_t j = 0; j < w; j++) aw[j] += (double)gr[j] * (double)((xr[j] - m) * r);
            if (d_b)
                for (int64_t j = 0; j < w; j++) ab[j] += (double)gr[j];
        }
        if (d_w) for (int64_t j = 0; j < w; j++) d_w[t0 + j] += (float)aw[j];
        if (d_b) for (int64_t j = 0; j < w; j++) d_b[t0 + j] += (float)ab[j];
    }
}

/* Reduction over rows (row order, double accumulators), threads split the columns:
 *   d_w[j] += Σ_i g[i,j]·(x[i,j] − mean[i])·rstd[i]   (mean NULL → 0)
 *   d_b[j] += Σ_i g[i,j]
 * Independent of the thread count. */
static void norm_param_grads(float *d_w, float *d_b, const float *g, const float *x,
                             const float *mean, const float *rstd, int64_t n, int64_t c) {
    int nt = moe_column_threads(moe_threads_current(), n, c);
    if (nt <= 1) { norm_param_grads_range(d_w, d_b, g, x, mean, rstd, n, c, 0, c); return; }
#pragma omp parallel num_threads(moe_team(nt))
    {
        int64_t c0, c1;
        moe_column_range(c, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        norm_param_grads_range(d_w, d_b, g, x, mean, rstd, n, c, c0, c1);
    }
}

void moe_rmsnorm_backward(float *d_x, float *d_weight, const float *d_out,
                          const float *x, const float *weight, const float *rstd,
                          int64_t n, int64_t c, int fresh_x) {
    int nt = moe_threads_current();
    if (d_x) {
        MOE_PARALLEL_FOR(i, n, n * c > PAR_MIN, moe_team(nt),
            const float *xr = x + i * c, *gr = d_out + i * c;
            float *dx = d_x + i * c;
            float r = rstd[i];
            double acc[MOE_LANES] = {0}, tail = 0.0; /* Σ ĝ·x̂ */
            int64_t j0 = 0;
            for (; j0 + MOE_LANES <= c; j0 += MOE_LANES)
                for (int l = 0; l < MOE_LANES; l++)
                    acc[l] += (double)(gr[j0 + l] * weight[j0 + l]) * (double)(xr[j0 + l] * r);
            for (; j0 < c; j0++) tail += (double)(gr[j0] * weight[j0]) * (double)(xr[j0] * r);
            float m = (float)((moe_lanes_total(acc) + tail) / (double)c);
            for (int64_t j = 0; j < c; j++) {
                float xhat = xr[j] * r;
                dx[j] = (fresh_x ? 0.0f : dx[j]) + r * (gr[j] * weight[j] - xhat * m);
            }
        );
    }
    if (d_weight) norm_param_grads(d_weight, NULL, d_out, x, NULL, rstd, n, c);
}

void moe_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias,
                           int64_t n, int64_t c, float eps) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * c > PAR_MIN, moe_team(nt),
        const float *xr = x + i * c;
        float *o = out + i * c;
        double mu = moe_sum_d(xr, c) / (double)c;
        double acc[MOE_LANES] = {0}, tail = 0.0;
        int64_t j0 = 0;
        for (; j0 + MOE_LANES <= c; j0 += MOE_LANES)
            for (int l = 0; l < MOE_LANES; l++) { double d = (double)xr[j0 + l] - mu; acc[l] += d * d; }
        for (; j0 < c; j0++) { double d = (double)xr[j0] - mu; tail += d * d; }
        double v = moe_lanes_total(acc) + tail;
        float m = (float)mu;
        float r = (float)(1.0 / sqrt(v / (double)c + (double)eps));
        if (bias) {
            for (int64_t j = 0; j < c; j++) o[j] = (xr[j] - m) * r * weight[j] + bias[j];
        } else {
            for (int64_t j = 0; j < c; j++) o[j] = (xr[j] - m) * r * weight[j];
        }
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = r;
    );
}

void moe_layernorm_backward(float *d_x, float *d_weight, float *d_bias, const float *d_out,
                            const float *x, const float *weight, const float *mean, const float *rstd,
                            int64_t n, int64_t c) {
    int nt = moe_threads_current();
    if (d_x) {
        MOE_PARALLEL_FOR(i, n, n * c > PAR_MIN, moe_team(nt),
            const float *xr = x + i * c, *gr = d_out + i * c;
            float *dx = d_x + i * c;
            float m = mean[i], r = rstd[i];
            double ag[MOE_LANES] = {0}, agx[MOE_LANES] = {0}, tg = 0.0, tgx = 0.0; /* Σ ĝ, Σ ĝ·x̂ */
            int64_t j0 = 0;
            for (; j0 + MOE_LANES <= c; j0 += MOE_LANES)
                for (int l = 0; l < MOE_LANES; l++) {
                    float gh = gr[j0 + l] * weight[j0 + l];
                    ag[l] += (double)gh;
                    agx[l] += (double)gh * (double)((xr[j0 + l] - m) * r);
                }
            for (; j0 < c; j0++) {
                float gh = gr[j0] * weight[j0];
                tg += (double)gh;
                tgx += (double)gh * (double)((xr[j0] - m) * r);
            }
            float mg = (float)((moe_lanes_total(ag) + tg) / (double)c);
            float mgx = (float)((moe_lanes_total(agx) + tgx) / (double)c);
            for (int64_t j = 0; j < c; j++) {
                float xhat = (xr[j] - m) * r;
                dx[j] += r * (gr[j] * weight[j] - mg - xhat * mgx);
            }
        );
    }
    if (d_weight || d_bias) norm_param_grads(d_weight, d_bias, d_out, x, mean, rstd, n, c);
}
