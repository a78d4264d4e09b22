#ifndef MOE_MATMUL_H
#define MOE_MATMUL_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Batched matrix product  out[b] = op(A[b]) · op(B[b])   for b in 0..<batch
 *   op(A) is [M, K]: A is stored [M, K], or [K, M] when trans_a != 0.
 *   op(B) is [K, N]: B is stored [K, N], or [N, K] when trans_b != 0.
 *   out: [batch, M, N].  A: batch * M*K floats (stride a_stride, 0 = shared).
 *   B: batch * K*N floats with stride b_stride (0 = one B shared by all batches).
 * batch == 1 runs one sgemm on all threads; batch > 1 runs batches in parallel
 * (OpenMP) with single-threaded BLAS inside, so threads never nest.
 */
void moe_matmul_forward(float *out, const float *a, const float *b,
                        int64_t batch, int64_t m, int64_t n, int64_t k,
                        int trans_a, int trans_b, int64_t a_stride, int64_t b_stride);

/* Gradients of moe_matmul_forward; accumulates into d_a and d_b (either may be NULL), or
 * writes them where fresh_a / fresh_b (their contents are then never read: uninitialized
 * memory is fine). When b_stride == 0 (shared B) the d_b contributions of all batches are
 * summed in batch order (deterministic); likewise for a_stride == 0. d_a is complete before
 * d_b is touched, so the two may be the same buffer (a product of a tensor with itself). */
void moe_matmul_backward(float *d_a, float *d_b, const float *d_out,
                         const float *a, const float *b,
                         int64_t batch, int64_t m, int64_t n, int64_t k,
                         int trans_a, int trans_b, int64_t a_stride, int64_t b_stride, int fresh_a, int fresh_b);


#ifdef __cplusplus
}
#endif
#endif
