#include "moe_embedding.h"
#include "internal.h"
#include "moe_math.h"
#include <string.h>

#define PAR_MIN 32768

void moe_embedding_forward(float *out, const float *table, const int32_t *ids, int64_t n, int64_t c) {
    int nt = moe_threads_current();
    MOE_PARALLEL_FOR(i, n, n * c > PAR_MIN, moe_team(nt),
        memcpy(out + i * c, table + (int64_t)ids[i] * c, (size_t)c * sizeof(float));
    );
}

/* Accumulate columns [c0, c1) of every row, rows in order. */
static void scatter_cols(float *d_table, const float *d_out, const int32_t *ids, int64_t n, int64_t c,
                         int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < n; i++) {
        float *dst = d_table + (int64_t)ids[i] * c;
        const float *src = d_out + i * c;
        for (int64_t j = c0; j < c1; j++) dst[j] += src[j];
    }
}

void moe_embedding_backward(float *d_table, const float *d_out, const int32_t *ids, int64_t n, int64_t c) {
    int nt = moe_column_threads(moe_threads_current(), n, c);
    if (nt <= 1) {
        scatter_cols(d_table, d_out, ids, n, c, 0, c);
        return;
    }
#pragma omp parallel num_threads(moe_team(nt))
    {
        int64_t c0, c1; /* column ranges on 16-float boundaries */
        moe_column_range(c, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        scatter_cols(d_table, d_out, ids, n, c, c0, c1);
    }
}

