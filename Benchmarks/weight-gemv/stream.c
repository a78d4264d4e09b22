// One weight GEMV out of cache against a plain read of the same bytes: how close a decode
// GEMV (one x row) comes to the memory bandwidth. W is MATS matrices of ROWS × 2048 in FORMAT
// (1 bf16, 3 int8, 4 int4; see moe_weights.h), far larger than the caches together; each round
// reads all of them once with an AVX-512 sum (both threads, contiguous halves) and then runs
// moe_weight_matmul on each with one x row. Prints per round both rates and their ratio:
//   fmt F read R GB/s gemv G GB/s ratio G/R
// Build (from the repository root; needs an AVX-512 CPU for the read loop):
//   mkdir -p /tmp/stream && cd /tmp/stream && clang -fopenmp -O3 -std=c11 -mavx512f -mavx512dq \
//     -I$OLDPWD/Sources/CMoEKernels/include -I$OLDPWD/Sources/CMoEKernels \
//     -c $OLDPWD/Sources/CMoEKernels/*.c $OLDPWD/Benchmarks/weight-gemv/stream.c && clang *.o -o stream -lopenblas -liomp5 -lm
//   OMP_NUM_THREADS=2 ./stream 1 4096 64      # FORMAT ROWS MATS: 1 GiB of bf16
#define _POSIX_C_SOURCE 200809L
#include "moe_weights.h"
#include <immintrin.h>
#include "internal.h" /* the OpenMP functions, declared without omp.h */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float read_all(const uint8_t *p, int64_t bytes) {
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
        const int64_t chunk = bytes / omp_get_num_threads() / 256 * 256;
        const float *x = (const float *)(p + omp_get_thread_num() * chunk);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i + 64 <= chunk / 4; i += 64) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
            a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
            a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
        }
        total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
    return total;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: stream FORMAT ROWS MATS\n");
        return 2;
    }
    const int format = atoi(argv[1]);
    const int64_t K = 2048, N = atoll(argv[2]), mats = atoll(argv[3]);
    if (N < 1 || mats < 1) {
        fprintf(stderr, "stream: ROWS and MATS must be ≥ 1\n");
        return 2;
    }
    const int64_t bytes = moe_weight_row_bytes(format, K) * N, sbytes = 4 * N * moe_weight_scales_per_row(format, K);
    uint8_t *data = malloc((size_t)(bytes * mats)), *scales = malloc((size_t)(sbytes * mats + 4));
    float *w = malloc(sizeof(float) * (size_t)(N * K)), *x = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * N);
    if (!data || !scales || !w || !x || !y) {
        fprintf(stderr, "stream: cannot allocate %.2f GB\n", (double)(bytes * mats) / 1e9);
        return 1;
    }
    for (int64_t i = 0; i < N * K; i++) w[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (int64_t i = 0; i < K; i++) x[i] = (float)((i * 40503u) % 997) / 500.0f - 1.0f;
    for (int64_t j = 0; j < mats; j++) moe_weight_quantize(data + j * bytes, scales + j * sbytes, w, N, K, format);
    const moe_weight first = {format, data, scales, N, K};
    float *ws = malloc(sizeof(float) * (size_t)(moe_weight_matmul_workspace_size(first, 1) + 16));
    for (int round = 0; round < 5; round++) {
        double t0 = seconds();
        volatile float sink = read_all(data, bytes * mats);
        (void)sink;
        const double tr = seconds() - t0;
        t0 = seconds();
        for (int64_t j = 0; j < mats; j++) {
            const moe_weight mw = {format, data + j * bytes, scales + j * sbytes, N, K};
            moe_weight_matmul(y, N, x, K, mw, 1, 0, ws);
        }
        const double tg = seconds() - t0;
        printf("fmt %d read %.1f GB/s gemv %.1f GB/s ratio %.3f\n", format, (double)(bytes * mats) / tr / 1e9,
               (double)(bytes * mats) / tg / 1e9, tr / tg);
    }
    return 0;
}
