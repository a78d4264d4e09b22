#include "moe_position.h"
#include "internal.h"
#include <math.h>

void moe_rope_inv_freq(float *inv_freq, int64_t R, float theta) {
    for (int64_t i = 0; i < R / 2; i++) {
        float exponent = (float)(2 * i) / (float)R;
        inv_freq[i] = 1.0f / powf(theta, exponent);
    }
}

void moe_rope_tables(float *cos_t, float *sin_t, const float *inv_freq,
                     int64_t start, int64_t T, int64_t R) {
    int64_t half = R / 2;
    MOE_PARALLEL_FOR(t, T, T * half > 4096, omp_get_max_threads(),
        float pos = (float)(start + t);
        for (int64_t i = 0; i < half; i++) {
            float angle = pos * inv_freq[i];
            cos_t[t * half + i] = cosf(angle);
            sin_t[t * half + i] = sinf(angle);
        }
    );
}

/* Offsets of the two members of pair i in a head. */
static inline void pair_index(int style, int64_t i, int64_t half, int64_t *a, int64_t *b) {
    if (style == MOE_ROPE_INTERLEAVED) { *a = 2 * i; *b = 2 * i + 1; }
    else { *a = i; *b = i + half; }
}

void moe_rope_forward(float *out, const float *x, const float *cos_t, const float *sin_t,
                      int64_t B, int64_t T, int64_t H, int64_t D, int64_t R, int style) {
    int64_t half = R / 2;
    MOE_PARALLEL_FOR(row, B * T, B * T * H * D > 16384, omp_get_max_threads(),
        int64_t t = row % T;
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int64_t h = 0; h < H; h++) {
            const float *xi = x + (row * H + h) * D;
            float *o = out + (row * H + h) * D;
            if (style == MOE_ROPE_INTERLEAVED) {
                for (int64_t i = 0; i < half; i++) {
                    float a = xi[2 * i], b = xi[2 * i + 1];
                    o[2 * i] = a * c[i] - b * s[i];
                    o[2 * i + 1] = b * c[i] + a * s[i];
                }
            } else {
                for (int64_t i = 0; i < half; i++) {
                    float a = xi[i], b = xi[i + half];
                    o[i] = a * c[i] - b * s[i];
                    o[i + half] = b * c[i] + a * s[i];
                }
            }
            if (o != xi)
                for (int64_t d = R; d < D; d++) o[d] = xi[d];
        }
    );
}

void moe_rope_backward(float *dx, const float *d_out, const float *cos_t, const float *sin_t,
                       int64_t B, int64_t T, int64_t H, int64_t D, int64_t R, int style, int fresh) {
    if (!dx) return;
    int64_t half = R / 2;
    MOE_PARALLEL_FOR(row, B * T, B * T * H * D > 16384, omp_get_max_threads(),
        int64_t t = row % T;
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int64_t h = 0; h < H; h++) {
            const float *g = d_out + (row * H + h) * D;
            float *d = dx + (row * H + h) * D;
            for (int64_t i = 0; i < half; i++) {
                int64_t ia, ib;
                pair_index(style, i, half, &ia, &ib);
                float ga = g[ia], gb = g[ib];
                /* transpose of [[c, -s], [s, c]] is [[c, s], [-s, c]] */
                d[ia] = (fresh ? 0.0f : d[ia]) + (ga * c[i] + gb * s[i]);
                d[ib] = (fresh ? 0.0f : d[ib]) + (gb * c[i] - ga * s[i]);
            }
            for (int64_t j = R; j < D; j++) d[j] = (fresh ? 0.0f : d[j]) + g[j];
        }
    );
}

void moe_sinusoidal_table(float *pe, int64_t start, int64_t T, int64_t C, double base) {
    MOE_PARALLEL_FOR(t, T, T * C > 16384, omp_get_max_threads(),
        double pos = (double)(start + t);
        for (int64_t j = 0; j < C; j += 2) {
            double angle = pos / pow(base, (double)j / (double)C);
            pe[t * C + j] = (float)sin(angle);
            if (j + 1 < C) pe[t * C + j + 1] = (float)cos(angle);
        }
    );
}

void moe_sinusoidal_forward(float *out, const float *x, const float *pe,
                            int64_t B, int64_t T, int64_t C) {
    MOE_PARALLEL_FOR(row, B * T, B * T * C > 65536, omp_get_max_threads(),
        const float *p = pe + (row % T) * C;
        const float *xi = x + row * C;
        float *o = out + row * C;
        for (int64_t c = 0; c < C; c++) o[c] = xi[c] + p[c];
    );
}

void moe_sinusoidal_backward(float *dx, const float *d_out, int64_t B, int64_t T, int64_t C) {
    if (!dx) return;
    int64_t n = B * T * C;
    MOE_PARALLEL_FOR(i, n, n > 65536, omp_get_max_threads(),
        dx[i] += d_out[i];
    );
}
