#ifndef MOE_BENCH_REFERENCE_H
#define MOE_BENCH_REFERENCE_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Benchmark references (not ops): the roofline the routed-experts op is held against.
 *
 * Grouped GEMM roofline: the matrix products of E SwiGLU experts with perfectly balanced
 * routing, N rows per expert (N = T·K/E), as plain cblas_sgemm calls on preallocated,
 * already-gathered contiguous buffers: no plan, no gather, no activation, no combine.
 * Same shapes and transposes as moe_routed_experts_forward/backward:
 *   forward  (3 GEMMs per expert): h1 = xs·w1[e]ᵀ, h3 = xs·w3[e]ᵀ, eo = act·w2[e]ᵀ
 *   backward (6 GEMMs per expert): dw2 += dEoᵀ·act, dAct = dEo·w2[e], dw1 += dH1ᵀ·xs,
 *            dw3 += dH3ᵀ·xs, dXs = dH1·w1[e] + dH3·w3[e]
 * Useful FLOPs: forward 6·E·N·C·F, forward + backward 18·E·N·C·F.
 *
 * schedule: MOE_SCHEDULE_SEQUENTIAL (experts one after another, BLAS on all threads) or
 * MOE_SCHEDULE_PARALLEL (experts in parallel over moe_threads_current() OpenMP threads,
 * round-robin, single-threaded BLAS inside). Results are not meant to be read.
 */

/* Floats of workspace moe_bench_grouped_swiglu needs: N·E·(4F + C) (+ 2·N·E·F with backward). */
int64_t moe_bench_grouped_workspace_size(int64_t E, int64_t N, int64_t C, int64_t F, int backward);

/*
 *   workspace  [moe_bench_grouped_workspace_size(E, N, C, F, backward)] scratch (any values)
 *   dw1, dw3 [E, F, C], dw2 [E, C, F]: accumulated (+=) when backward = 1, else unused (may be NULL)
 *   xs  [E·N, C]  gathered inputs
 *   w1, w3 [E, F, C], w2 [E, C, F]
 * backward = 0: the forward GEMMs; 1: forward then backward GEMMs.
 */
void moe_bench_grouped_swiglu(float *workspace, float *dw1, float *dw3, float *dw2,
                              const float *xs, const float *w1, const float *w3, const float *w2,
                              int64_t E, int64_t N, int64_t C, int64_t F, int backward, int schedule);

/*
 * One dense sgemm on all BLAS threads: out [M, N] = a [M, K] · b [K, N]; 2·M·N·K FLOPs.
 */
void moe_bench_dense_sgemm(float *out, const float *a, const float *b, int64_t M, int64_t N, int64_t K);

/*
 * The machine control: every thread (moe_get_num_threads()) multiplies its own n×n blocks,
 * reps times, single-threaded BLAS: no shared data, no synchronisation but the end of the
 * region, the same work in every run. Its run-to-run spread is what the machine itself adds
 * to any measurement taken in the same rounds. workspace: at least
 * moe_bench_machine_control_workspace_size(n) floats of finite values.
 */
int64_t moe_bench_machine_control_workspace_size(int64_t n);
void moe_bench_machine_control(float *workspace, int64_t n, int64_t reps);
/*
 * The memory read-bandwidth probe: returns Σ x[0..n) (float accumulation in 16 lanes),
 * read once by the kernel threads in contiguous chunks, each line prefetched 2 KiB ahead as
 * the weight GEMVs do (without it the probe read ~25 % slower than a prefetched GEMV streams
 * W). Time it over an array far larger than the caches to measure the bandwidth a decode
 * step can use.
 */
float moe_bench_stream_sum(const float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
