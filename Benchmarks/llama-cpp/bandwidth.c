// Read bandwidth of main memory: sums a 2 GiB array of uint64 with OpenMP threads and
// prints the best of several passes as one JSON line, so decode speed can be stated as a
// fraction of the memory-bandwidth limit (bytes of weights read per token / bandwidth).
//
//   cc -O3 -march=native -fopenmp bandwidth.c -o bandwidth && OMP_NUM_THREADS=2 ./bandwidth [GiB] [passes]
//
// The array is written first by the same threads (first touch), so it is resident and
// each thread reads the pages it wrote. The sum is printed so the reads are not removed.
// Every line is prefetched 2 KiB ahead: without it the read ran ~25 % below what a
// prefetched stream (and a prefetching decode kernel) reaches, and fractions above 1 followed.
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    double gib = argc > 1 ? atof(argv[1]) : 2.0;
    int passes = argc > 2 ? atoi(argv[2]) : 10;
    size_t n = (size_t)(gib * 1024.0 * 1024.0 * 1024.0) / sizeof(uint64_t);
    n -= n % 4;
    uint64_t *a = NULL;
    if (posix_memalign((void **)&a, 4096, n * sizeof(uint64_t)) != 0) {
        fprintf(stderr, "bandwidth: cannot allocate %.2f GiB\n", gib);
        return 1;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = i;

    double best = 0.0;
    uint64_t check = 0;
    for (int p = 0; p < passes; p++) {
        uint64_t total = 0;
        double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (size_t i = 0; i < n; i += 4) {
            __builtin_prefetch(a + i + 256, 0, 3); // 2 KiB ahead, as the weight GEMVs prefetch
            total += a[i] + a[i + 1] + a[i + 2] + a[i + 3];
        }
        double dt = omp_get_wtime() - t0;
        double gbps = (double)(n * sizeof(uint64_t)) / dt / 1e9;
        if (gbps > best) best = gbps;
        check += total;
    }
    printf("{\"bench\":\"read_bandwidth\",\"threads\":%d,\"bytes\":%zu,\"passes\":%d,"
           "\"gigabytes_per_second\":%.2f,\"checksum\":%llu}\n",
           omp_get_max_threads(), n * sizeof(uint64_t), passes, best, (unsigned long long)check);
    free(a);
    return 0;
}
