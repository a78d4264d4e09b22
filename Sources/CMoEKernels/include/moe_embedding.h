#ifndef MOE_EMBEDDING_H
#define MOE_EMBEDDING_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Embedding lookup (moe_embedding.c).
 *   table: [V, C];  ids: [N] int32, each in [0, V) (the caller validates);  out: [N, C].
 */

/* out[n, :] = table[ids[n], :]. Rows copied in parallel above ~32k elements. */
void moe_embedding_forward(float *out, const float *table, const int32_t *ids, int64_t n, int64_t c);

/* d_table[ids[n], :] += d_out[n, :] for n in order. Repeated ids are summed in n
 * order; the threads split the C columns (no atomics), so the result is
 * bit-identical for every thread count and equal to the naive loop. */
void moe_embedding_backward(float *d_table, const float *d_out, const int32_t *ids, int64_t n, int64_t c);


#ifdef __cplusplus
}
#endif
#endif
