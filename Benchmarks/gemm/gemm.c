/* One of our GEMM kernels against OpenBLAS sgemm on the same training shapes, in one process,
 * interleaved: for each shape and transpose the median of ROUNDS timings of each, GFLOP/s
 * (2·m·n·k per call) and the ratio.
 *   gemm THREADS ROUNDS bf16   moe_sgemm_bf16 (bf16 operands, float32 sums) on its current path
 *   gemm THREADS ROUNDS f32    moe_sgemm on our AVX-512 kernel (moe_gemm_f32.h)
 * Built and run by Benchmarks/gemm/run.sh (THREADS ≥ 1, ROUNDS 1 ..< 65). */
#define _POSIX_C_SOURCE 200809L
#include "moe_kernels.h"
#include "moe_gemm_bf16.h"
#include "moe_gemm_f32.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <string.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 9;
    moe_set_num_threads(threads);
    static const int64_t shapes[][3] = {{512, 256, 128}, {512, 128, 256}, {2048, 512, 128}, {2048, 128, 512}, {2048, 2048, 512}, {1024, 1024, 1024}, {512, 4096, 256}};
    static const int trans[][2] = {{0, 1}, {0, 0}, {1, 0}}; /* x·Wᵀ (forward), dy·W (dx), dyᵀ·x (dW) */
    if (argc < 4 || (strcmp(argv[3], "f32") != 0 && strcmp(argv[3], "bf16") != 0) || threads < 1 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "usage: gemm THREADS ROUNDS(1-64) bf16|f32\n");
        return 2;
    }
    const int f32 = strcmp(argv[3], "f32") == 0;
    if (f32 && moe_gemm_f32_set_path(1) != 1) {
        fprintf(stderr, "this CPU (or SPARSEMOE_SIMD) does not run the AVX-512 float32 kernel\n");
        return 1;
    }
    static const char *const paths[] = {"portable", "AVX-512 BF16", "AMX"};
    if (f32) printf("float32 AVX-512 kernel, %d threads\n", threads);
    else printf("bf16 path %s, %d threads\n", paths[moe_gemm_bf16_path()], threads);
    printf("| m | n | k | op | OpenBLAS sgemm GFLOP/s | %s GFLOP/s | ratio |\n|---|---|---|---|---|---|---|\n",
           f32 ? "kernel" : "bf16");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t t = 0; t < sizeof trans / sizeof trans[0]; t++) {
            const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            const int ta = trans[t][0], tb = trans[t][1];
            float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
            for (int64_t i = 0; i < m * k; i++) a[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
            for (int64_t i = 0; i < k * n; i++) b[i] = (float)((i * 40503u) % 997) / 500.0f - 1.0f;
            const int64_t lda = ta ? m : k, ldb = tb ? k : n;
            double ts[2][64];
            const int reps = (int)(2e9 / (2.0 * m * n * k)) + 1;
            for (int r = 0; r < rounds + 1; r++)
                for (int which = 0; which < 2; which++) {
                    moe_threads_park();
                    const double t0 = seconds();
                    moe_gemm_f32_set_path(which && f32); /* OpenBLAS for the reference, our kernel for f32 */
                    for (int i = 0; i < reps; i++) {
                        if (which && !f32) moe_sgemm_bf16(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
                        else moe_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
                    }
                    if (r > 0) ts[which][r - 1] = (seconds() - t0) / reps; /* round 0 warms up */
                }
            qsort(ts[0], rounds, sizeof(double), cmp);
            qsort(ts[1], rounds, sizeof(double), cmp);
            const double f = 2.0 * m * n * k * 1e-9, g0 = f / ts[0][rounds / 2], g1 = f / ts[1][rounds / 2];
            printf("| %lld | %lld | %lld | %s | %.1f | %.1f | %.2f |\n", (long long)m, (long long)n, (long long)k,
                   t == 0 ? "x·Wᵀ" : t == 1 ? "dy·W" : "dyᵀ·x", g0, g1, g1 / g0);
            fflush(stdout);
            free(a); free(b); free(c);
        }
    return 0;
}
