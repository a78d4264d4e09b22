/* One weight GEMV / small GEMM, W in cache: y[m, N] = x[m, K] · Wᵀ through moe_weight_matmul,
 * one thread, the best of 7 timings of `reps` calls. Prints one line per case:
 *   format m level us_per_call gweight_rows_per_second
 * (format: 3 int8, 4 int4, 1 bf16, ...; level: 0 scalar, 2 AVX2, 3 AVX-512 — lowered to what
 * the CPU has). W is 512 × 2048 (1 MiB as int8): the kernel's own speed, not memory's.
 * Built and run by ab.sh; see there. */
#define _POSIX_C_SOURCE 200809L
#include "moe_weights.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: gemv FORMAT M LEVEL\n");
        return 2;
    }
    const int format = atoi(argv[1]), m = atoi(argv[2]);
    const int level = moe_weight_set_simd_level(atoi(argv[3]));
    const int64_t N = 512, K = 2048;
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * m * K), *y = malloc(sizeof(float) * m * N);
    for (int64_t i = 0; i < N * K; i++) w[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (int64_t i = 0; i < m * K; i++) x[i] = (float)((i * 40503u) % 997) / 500.0f - 1.0f;
    void *data = malloc((size_t)(moe_weight_row_bytes(format, K) * N));
    void *scales = malloc((size_t)(4 * N * moe_weight_scales_per_row(format, K) + 4));
    moe_weight_quantize(data, scales, w, N, K, format);
    const moe_weight mw = {format, data, scales, N, K};
    float *ws = malloc(sizeof(float) * (size_t)(moe_weight_matmul_workspace_size(mw, m) + 1));
    const int reps = 2000 / m + 10;
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        const double t0 = seconds();
        for (int i = 0; i < reps; i++) moe_weight_matmul(y, N, x, K, mw, m, 0, ws);
        const double t = (seconds() - t0) / reps;
        if (t < best) best = t;
    }
    printf("%d %d %d %.2f %.3f\n", format, m, level, 1e6 * best, (double)N * K * m / best / 1e9);
    return 0;
}
