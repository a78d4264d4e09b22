/* Naive references (see moe_naive.h). Each was written beside its kernel and moved here
 * so that the library's public headers hold only what the library runs. */
#include "moe_naive.h"
#include <string.h>
#include "moe_kernels.h"
#include <math.h>
#include <stdlib.h>

/* from moe_attention.c */
void moe_attention_forward_naive(float *out,
                                 const float *q, const float *k, const float *v,
                                 int64_t B, int64_t T, int64_t S, int64_t H, int64_t Hkv,
                                 int64_t D, int64_t Dv, int causal, float scale) {
    int64_t group = H / Hkv;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / group;
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + ((b * T + i) * H + h) * D;
                int64_t lim = causal ? i + (S - T) + 1 : S;
                if (lim > S) lim = S;
                double mx = -INFINITY;
                for (int64_t j = 0; j < lim; j++) {
                    const float *kj = k + ((b * S + j) * Hkv + g) * D;
                    double s = 0;
                    for (int64_t d = 0; d < D; d++) s += (double)qi[d] * kj[d];
                    s *= scale;
                    if (s > mx) mx = s;
                }
                double sum = 0;
                for (int64_t j = 0; j < lim; j++) {
                    const float *kj = k + ((b * S + j) * Hkv + g) * D;
                    double s = 0;
                    for (int64_t d = 0; d < D; d++) s += (double)qi[d] * kj[d];
                    sum += exp(s * scale - mx);
                }
                float *o = out + ((b * T + i) * H + h) * Dv;
                for (int64_t e = 0; e < Dv; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < lim; j++) {
                        const float *kj = k + ((b * S + j) * Hkv + g) * D;
                        double s = 0;
                        for (int64_t d = 0; d < D; d++) s += (double)qi[d] * kj[d];
                        acc += exp(s * scale - mx) / sum * v[((b * S + j) * Hkv + g) * Dv + e];
                    }
                    o[e] = (float)acc;
                }
            }
        }
}

/* from moe_dispatch.c */
void moe_routed_experts_forward_naive(float *y, const float *x, const int32_t *experts,
                                      const float *gates, const float *w1, const float *w3,
                                      const float *w2, const float *b1, const float *b2,
                                      int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                                      int activation) {
    (void)E;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * C;
        double acc[C > 0 ? C : 1];
        for (int64_t c = 0; c < C; c++) acc[c] = 0;
        for (int64_t s = 0; s < K; s++) {
            int32_t e = experts[t * K + s];
            if (e < 0) continue;
            double g = gates[t * K + s];
            double hid[F > 0 ? F : 1];
            for (int64_t f = 0; f < F; f++) {
                double h = b1 ? b1[e * F + f] : 0.0, u = 0.0;
                for (int64_t c = 0; c < C; c++) {
                    h += (double)w1[(e * F + f) * C + c] * xt[c];
                    if (activation == MOE_EXPERT_SWIGLU) u += (double)w3[(e * F + f) * C + c] * xt[c];
                }
                switch (activation) {
                case MOE_EXPERT_SWIGLU: hid[f] = h / (1.0 + exp(-h)) * u; break;
                case MOE_EXPERT_GELU: hid[f] = 0.5 * h * (1.0 + erf(h / sqrt(2.0))); break;
                case MOE_EXPERT_GELU_TANH:
                    hid[f] = 0.5 * h * (1.0 + tanh(0.7978845608028654 * (h + 0.044715 * h * h * h)));
                    break;
                default: hid[f] = h > 0 ? h : 0; break;
                }
            }
            for (int64_t c = 0; c < C; c++) {
                double o = b2 ? b2[e * C + c] : 0.0;
                for (int64_t f = 0; f < F; f++) o += (double)w2[(e * C + c) * F + f] * hid[f];
                acc[c] += g * o;
            }
        }
        for (int64_t c = 0; c < C; c++) y[t * C + c] = (float)acc[c];
    }
}

/* from moe_dispatch.c: the activation of h (SwiGLU: silu(h)·u) and its derivatives in
 * double; d_h = ∂act/∂h, d_u = ∂act/∂u (SwiGLU only). */
static double expert_act(double h, double u, int activation, double *d_h, double *d_u) {
    switch (activation) {
    case MOE_EXPERT_SWIGLU: {
        double s = 1.0 / (1.0 + exp(-h));
        *d_h = u * s * (1.0 + h * (1.0 - s));
        *d_u = h * s;
        return h * s * u;
    }
    case MOE_EXPERT_GELU: {
        double cdf = 0.5 * (1.0 + erf(h / sqrt(2.0)));
        *d_h = cdf + h * exp(-0.5 * h * h) / sqrt(2.0 * 3.141592653589793);
        return h * cdf;
    }
    case MOE_EXPERT_GELU_TANH: {
        const double k = sqrt(2.0 / 3.141592653589793), c = 0.044715;
        double t = tanh(k * (h + c * h * h * h));
        *d_h = 0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * k * (1.0 + 3.0 * c * h * h);
        return 0.5 * h * (1.0 + t);
    }
    default:
        *d_h = h > 0 ? 1.0 : 0.0;
        return h > 0 ? h : 0.0;
    }
}

/* from moe_dispatch.c */
void moe_routed_experts_backward_naive(float *dx, float *dgates, float *dw1, float *dw3, float *dw2,
                                       float *db1, float *db2, float *workspace,
                                       const float *dy, const float *xs, const float *h1, const float *h3,
                                       const float *act, const float *eo, const float *gates,
                                       const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                                       const float *w1, const float *w3, const float *w2,
                                       int64_t T, int64_t C, int64_t F, int64_t E, int64_t K,
                                       int activation, int schedule) {
    (void)workspace; (void)sorted; (void)act; (void)schedule;
    const int swiglu = activation == MOE_EXPERT_SWIGLU;
    const int64_t A = offsets[E];
    /* Per sorted row r: dEo = gate·dy[token], a = act(h1, h3), dH1, dH3 (all double). */
    double *deo = calloc((size_t)(A * C + 1), sizeof(double));
    double *a = calloc((size_t)(A * F + 1), sizeof(double));
    double *dh1 = calloc((size_t)(A * F + 1), sizeof(double));
    double *dh3 = calloc((size_t)(A * F + 1), sizeof(double));
    int64_t *expert = calloc((size_t)(A + 1), sizeof(int64_t));
    for (int64_t e = 0; e < E; e++)
        for (int64_t r = offsets[e]; r < offsets[e + 1]; r++) expert[r] = e;
    for (int64_t t = 0; t < T; t++)
        for (int64_t s = 0; s < K; s++) {
            const int64_t r = position[t * K + s];
            if (r < 0) continue;
            const int64_t e = expert[r];
            const double g = gates[t * K + s];
            double dot = 0;
            for (int64_t c = 0; c < C; c++) {
                deo[r * C + c] = g * dy[t * C + c];
                dot += (double)dy[t * C + c] * eo[r * C + c];
            }
            if (dgates) dgates[t * K + s] += (float)dot;
            for (int64_t f = 0; f < F; f++) {
                double dact = 0, d_h = 0, d_u = 0;
                for (int64_t c = 0; c < C; c++) dact += deo[r * C + c] * w2[(e * C + c) * F + f];
                a[r * F + f] = expert_act(h1[r * F + f], swiglu ? h3[r * F + f] : 0.0, activation, &d_h, &d_u);
                dh1[r * F + f] = dact * d_h;
                dh3[r * F + f] = dact * d_u;
            }
        }
    /* Weight and bias gradients: per expert, sums over its rows. */
    for (int64_t e = 0; e < E; e++) {
        const int64_t r0 = offsets[e], r1 = offsets[e + 1];
        for (int64_t c = 0; c < C; c++) {
            if (db2) {
                double s = 0;
                for (int64_t r = r0; r < r1; r++) s += deo[r * C + c];
                db2[e * C + c] += (float)s;
            }
            if (dw2)
                for (int64_t f = 0; f < F; f++) {
                    double s = 0;
                    for (int64_t r = r0; r < r1; r++) s += deo[r * C + c] * a[r * F + f];
                    dw2[(e * C + c) * F + f] += (float)s;
                }
        }
        for (int64_t f = 0; f < F; f++) {
            if (db1) {
                double s = 0;
                for (int64_t r = r0; r < r1; r++) s += dh1[r * F + f];
                db1[e * F + f] += (float)s;
            }
            for (int64_t c = 0; c < C; c++) {
                double s1 = 0, s3 = 0;
                for (int64_t r = r0; r < r1; r++) {
                    s1 += dh1[r * F + f] * xs[r * C + c];
                    s3 += dh3[r * F + f] * xs[r * C + c];
                }
                if (dw1) dw1[(e * F + f) * C + c] += (float)s1;
                if (swiglu && dw3) dw3[(e * F + f) * C + c] += (float)s3;
            }
        }
    }
    /* dx[t] = Σ_s dH1·w1[e] (+ dH3·w3[e]). */
    if (dx)
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < C; c++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) {
                    const int64_t r = position[t * K + k];
                    if (r < 0) continue;
                    const int64_t e = expert[r];
                    for (int64_t f = 0; f < F; f++) {
                        s += dh1[r * F + f] * w1[(e * F + f) * C + c];
                        if (swiglu) s += dh3[r * F + f] * w3[(e * F + f) * C + c];
                    }
                }
                dx[t * C + c] += (float)s;
            }
    free(deo); free(a); free(dh1); free(dh3); free(expert);
}

/* from moe_embedding.c */
void moe_embedding_backward_naive(float *d_table, const float *d_out, const int32_t *ids, int64_t n, int64_t c) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) d_table[(int64_t)ids[i] * c + j] += d_out[i * c + j];
}

/* from moe_matmul.c */
void moe_matmul_forward_naive(float *out, const float *a, const float *b,
                              int64_t batch, int64_t m, int64_t n, int64_t k,
                              int trans_a, int trans_b, int64_t a_stride, int64_t b_stride) {
    for (int64_t bi = 0; bi < batch; bi++) {
        const float *A = a + bi * a_stride, *B = b + bi * b_stride;
        float *O = out + bi * m * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++) {
                    float av = trans_a ? A[p * m + i] : A[i * k + p];
                    float bv = trans_b ? B[j * k + p] : B[p * n + j];
                    s += (double)av * bv;
                }
                O[i * n + j] = (float)s;
            }
    }
}

static double bf16_naive(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t lower = u & 0xffffu, keep = u >> 16;
    uint32_t r = keep;
    if (lower > 0x8000u || (lower == 0x8000u && (keep & 1u))) r = keep + 1; /* nearest, ties to even */
    r <<= 16;
    float f;
    memcpy(&f, &r, 4);
    return f;
}

/* op(A)·op(B) summed in double, each operand rounded to bf16 first when `round`. */
static void sgemm_naive(int round, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *abs_c) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0, sa = 0;
            for (int64_t p = 0; p < k; p++) {
                const float x = ta ? a[p * lda + i] : a[i * lda + p], y = tb ? b[j * ldb + p] : b[p * ldb + j];
                const double v = round ? bf16_naive(x) * bf16_naive(y) : (double)x * (double)y;
                s += v;
                sa += fabs(v);
            }
            const double old = beta != 0.0f ? (double)beta * c[i * ldc + j] : 0.0;
            c[i * ldc + j] = (float)((double)alpha * s + old);
            if (abs_c) abs_c[i * ldc + j] = (float)(fabs((double)alpha) * sa);
        }
}

void moe_sgemm_naive(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *abs_c) {
    sgemm_naive(0, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, abs_c);
}

void moe_sgemm_bf16_naive(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *abs_c) {
    sgemm_naive(1, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, abs_c);
}

/* from moe_optim.c */
double moe_grad_norm_sq_naive(const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

/* from moe_pointwise.c */
void moe_reduce_rows_naive(float *d_b, const float *d_out, const float *a, float scale,
                           int64_t n, int64_t d) {
    for (int64_t j = 0; j < d; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += (double)d_out[i * d + j] * (a ? (double)a[i * d + j] : 1.0);
        d_b[j] += (float)((double)scale * s);
    }
}

/* from moe_pointwise.c */
void moe_sum_forward_naive(float *out, const float *x, float scale, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i];
    out[0] = (float)((double)scale * s);
}

/* from moe_position.c */
void moe_rope_forward_naive(float *out, const float *x, int64_t start, float theta,
                            int64_t B, int64_t T, int64_t H, int64_t D, int64_t R, int style) {
    int64_t half = R / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++) {
                const float *xi = x + ((b * T + t) * H + h) * D;
                float *o = out + ((b * T + t) * H + h) * D;
                for (int64_t d = 0; d < D; d++) o[d] = xi[d];
                for (int64_t i = 0; i < half; i++) {
                    float inv = 1.0f / powf(theta, (float)(2 * i) / (float)R);
                    float angle = (float)(start + t) * inv;
                    float c = cosf(angle), s = sinf(angle);
                    const int64_t ia = style == MOE_ROPE_INTERLEAVED ? 2 * i : i;
                    const int64_t ib = style == MOE_ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
                    o[ia] = xi[ia] * c - xi[ib] * s;
                    o[ib] = xi[ib] * c + xi[ia] * s;
                }
            }
}
