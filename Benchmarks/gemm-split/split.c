/* Does OpenBLAS give the same bits for C = αAB + βC computed whole and computed as two
 * pieces (rows of C, or columns, split at a multiple of 16)? moe_sgemm splits a GEMM into one
 * piece per thread at a point that depends only on the shape and the thread count; a split that
 * moved with the threads' measured speeds would be bit-identical only where the answer is yes.
 *
 *   split TRIALS MIN_PIECE ROUND_OTHER
 *
 * TRIALS random shapes (M, N up to 1,532, K up to 2,100, some at the models' widths), random
 * transposes, α ∈ {1, 0.125}, β ∈ {0, 1}; every fourth split point with both pieces ≥ MIN_PIECE
 * and ≥ 2^20 FLOPs; ROUND_OTHER = 1 rounds the dimension not split up to a multiple of 16.
 * Prints the differing cases (up to 5) and the count. Fixed seed: the same cases every run. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float uniform(void) { return (float)rand() / RAND_MAX * 2 - 1; }

static void gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
                b, ldb, beta, c, ldc);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: split TRIALS MIN_PIECE ROUND_OTHER\n"); return 2; }
    const int trials = atoi(argv[1]), min_piece = atoi(argv[2]), round_other = atoi(argv[3]);
    if (trials < 1 || min_piece < 16 || (round_other != 0 && round_other != 1)) {
        fprintf(stderr, "split: TRIALS ≥ 1, MIN_PIECE ≥ 16 and ROUND_OTHER 0 or 1 expected, got '%s' '%s' '%s'\n", argv[1], argv[2], argv[3]);
        return 2;
    }
    const int widths[] = {128, 256, 512, 1024, 32, 48};
    long differ = 0, total = 0;
    srand(7);
    for (int t = 0; t < trials; t++) {
        int m = 32 + rand() % 1500, n = 32 + rand() % 1500, k = 8 + rand() % 2100;
        if (rand() % 3 == 0) n = widths[rand() % 6];
        if (rand() % 3 == 0) k = widths[rand() % 4] * (rand() % 2 ? 1 : 2);
        if (round_other) { if (m >= n) n = (n + 15) / 16 * 16; else m = (m + 15) / 16 * 16; }
        const int ta = rand() % 2, tb = rand() % 2;
        const float beta = rand() % 2 ? 1.0f : 0.0f, alpha = rand() % 3 == 0 ? 0.125f : 1.0f;
        const int lda = ta ? m : k, ldb = tb ? k : n, rows = m >= n, dim = rows ? m : n;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
        float *c0 = malloc(sizeof(float) * m * n), *c1 = malloc(sizeof(float) * m * n), *init = malloc(sizeof(float) * m * n);
        for (long i = 0; i < (long)m * k; i++) a[i] = uniform();
        for (long i = 0; i < (long)k * n; i++) b[i] = uniform();
        for (long i = 0; i < (long)m * n; i++) init[i] = uniform();
        memcpy(c0, init, sizeof(float) * m * n);
        gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, n);
        for (int lo = 16; lo < dim; lo += 16) {
            const double other = rows ? (double)n : (double)m;
            if (lo < min_piece || dim - lo < min_piece || 2.0 * lo * other * k < 1048576.0 ||
                2.0 * (dim - lo) * other * k < 1048576.0 || rand() % 4)
                continue;
            memcpy(c1, init, sizeof(float) * m * n);
            if (rows) {
                gemm(ta, tb, lo, n, k, alpha, a, lda, b, ldb, beta, c1, n);
                gemm(ta, tb, m - lo, n, k, alpha, ta ? a + lo : a + (long)lo * lda, lda, b, ldb, beta, c1 + (long)lo * n, n);
            } else {
                gemm(ta, tb, m, lo, k, alpha, a, lda, b, ldb, beta, c1, n);
                gemm(ta, tb, m, n - lo, k, alpha, a, lda, tb ? b + (long)lo * ldb : b + lo, ldb, beta, c1 + lo, n);
            }
            total++;
            if (memcmp(c0, c1, sizeof(float) * m * n) != 0 && ++differ <= 5)
                printf("  differs: M %d N %d K %d, transA %d transB %d, alpha %g beta %g, %s split at %d\n", m, n, k, ta, tb,
                       alpha, beta, rows ? "row" : "column", lo);
        }
        free(a); free(b); free(c0); free(c1); free(init);
    }
    printf("%ld of %ld splits differ from the whole product\n", differ, total);
    return 0;
}
