/* The attention kernels of the working tree (moe_attention_forward + moe_attention_backward) against
 * those of an earlier revision compiled beside them under other names (run.sh), in one process:
 * each repeat runs both, in alternating order, and the paired ratio new ÷ old is reported with the
 * medians, and whether the outputs and gradients have the same bits.
 *
 *   bench B T H D REPEATS       (causal self-attention, S = T, H heads of D, as many kv heads) */
#include "moe_attention.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double omp_get_wtime(void);
void old_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v, int64_t B, int64_t T,
                           int64_t S, int64_t H, int64_t Hkv, int64_t D, int64_t Dv, int causal, float scale);
void old_attention_backward(float *d_q, float *d_k, float *d_v, float *workspace, const float *d_out, const float *probs,
                            const float *q, const float *k, const float *v, int64_t B, int64_t T, int64_t S, int64_t H,
                            int64_t Hkv, int64_t D, int64_t Dv, int causal, float scale);

static float *uniform(int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX - 0.5f;
    return p;
}
static float *zeros(int64_t n) { return calloc((size_t)n, sizeof(float)); }
static int ascending(const void *a, const void *b) { const double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: bench B T H D REPEATS\n"); return 2; }
    const int64_t B = atoll(argv[1]), T = atoll(argv[2]), H = atoll(argv[3]), D = atoll(argv[4]), S = T;
    const int reps = atoi(argv[5]);
    const float scale = 0.125f;
    float *q = uniform(B * T * H * D), *k = uniform(B * S * H * D), *v = uniform(B * S * H * D), *d_out = uniform(B * T * H * D);
    float *out[2] = {zeros(B * T * H * D), zeros(B * T * H * D)}, *probs[2] = {zeros(B * H * T * S), zeros(B * H * T * S)};
    float *dq[2] = {zeros(B * T * H * D), zeros(B * T * H * D)}, *dk[2] = {zeros(B * S * H * D), zeros(B * S * H * D)};
    float *dv[2] = {zeros(B * S * H * D), zeros(B * S * H * D)};
    float *work = zeros(moe_attention_backward_workspace_size(B, T, S, H));
    double *ms[2] = {malloc(reps * sizeof(double)), malloc(reps * sizeof(double))}, *ratio = malloc(reps * sizeof(double));
    for (int r = 0; r < reps; r++) {
        for (int turn = 0; turn < 2; turn++) {
            const int which = (r + turn) % 2; /* 0 old, 1 new; the first of each repeat alternates */
            const double t0 = omp_get_wtime();
            if (which) {
                moe_attention_forward(out[1], probs[1], q, k, v, B, T, S, H, H, D, D, 1, scale);
                moe_attention_backward(dq[1], dk[1], dv[1], work, d_out, probs[1], q, k, v, B, T, S, H, H, D, D, 1, scale, 0, 0, 0);
            } else {
                old_attention_forward(out[0], probs[0], q, k, v, B, T, S, H, H, D, D, 1, scale);
                old_attention_backward(dq[0], dk[0], dv[0], work, d_out, probs[0], q, k, v, B, T, S, H, H, D, D, 1, scale);
            }
            ms[which][r] = 1e3 * (omp_get_wtime() - t0);
        }
        ratio[r] = ms[1][r] / ms[0][r];
    }
    const size_t o = (size_t)(B * T * H * D) * sizeof(float), kv = (size_t)(B * S * H * D) * sizeof(float);
    const int same = !memcmp(out[0], out[1], o) && !memcmp(dq[0], dq[1], o) && !memcmp(dk[0], dk[1], kv) && !memcmp(dv[0], dv[1], kv);
    qsort(ms[0], reps, sizeof(double), ascending);
    qsort(ms[1], reps, sizeof(double), ascending);
    qsort(ratio, reps, sizeof(double), ascending);
    printf("B %lld T %lld H %lld D %lld: old %.3f ms, new %.3f ms (medians); new / old paired %.3f (quartiles %.3f–%.3f); same bits: %s\n",
           (long long)B, (long long)T, (long long)H, (long long)D, ms[0][reps / 2], ms[1][reps / 2], ratio[reps / 2],
           ratio[reps / 4], ratio[3 * reps / 4], same ? "yes" : "NO");
    return same ? 0 : 1;
}
