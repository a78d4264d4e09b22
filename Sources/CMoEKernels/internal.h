/* Private helpers shared by the kernel files. Not part of the public header. */
#ifndef MOE_INTERNAL_H
#define MOE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The few OpenMP entry points we call. Declared here because the Swift
 * toolchain's clang does not see Debian's omp.h; the runtime is libomp. */
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
void omp_set_num_threads(int);
int omp_get_num_procs(void);
int omp_in_parallel(void);
int omp_get_level(void);
/* libomp extensions: how long (ms) a worker spins after a parallel region before it sleeps. */
int kmp_get_blocktime(void);
void kmp_set_blocktime(int);

/* Hot elementwise loops (activations, softmax rows) compiled twice: for x86-64-v3 (AVX2,
 * FMA: 8 lanes, fused multiply-adds) and for the portable baseline the package is built for
 * (SSE2), the CPU choosing once at load time. Results differ between the two in the last
 * bits (FMA contraction), never between runs on one machine. */
#if defined(__x86_64__) && defined(__linux__)
#define MOE_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MOE_SIMD_CLONES
#endif

/* for (int64_t i = 0; i < n; i++) { body }: split over `team` threads (OpenMP, static
 * schedule) when `cond`, else run on the calling thread without entering OpenMP. An OpenMP
 * `if (false)` region still costs ~0.6 µs in Debian's libomp (a serialised team, and debug
 * strings formatted at every loop start), and a decode step of a small model runs ~80 such
 * loops too small to split. `body` must not be a nested parallel region. */
#define MOE_PARALLEL_FOR(i, n, cond, team, ...)                                                  \
    do {                                                                                         \
        const int64_t moe_for_n_ = (n);                                                          \
        if (cond) {                                                                              \
            const int moe_for_team_ = (team);                                                    \
            _Pragma("omp parallel for schedule(static) num_threads(moe_for_team_)")              \
            for (int64_t i = 0; i < moe_for_n_; i++) { __VA_ARGS__ }                             \
        } else {                                                                                 \
            for (int64_t i = 0; i < moe_for_n_; i++) { __VA_ARGS__ }                             \
        }                                                                                        \
    } while (0)

/* OpenBLAS thread control (pthread build). */
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
/* Ends OpenBLAS's worker threads (pthread build; the next threaded call restarts them).
 * Weak: absent from other OpenBLAS builds. */
int blas_thread_shutdown_(void) __attribute__((weak));

/* The kernel thread count asked for (moe_threads.c): every split of work follows it, so
 * results do not depend on the load. Also samples the machine's load now and then. */
int moe_threads_current(void);
/* The threads a parallel region of at most n threads runs on now: n, or fewer while other
 * processes hold cores (load-aware teams, moe_threads.h). Use it in num_threads clauses
 * only, never to split work. */
int moe_team(int n);
/* Whether the caller is inside one of our parallel regions, active or not (a team of 1 on a
 * busy machine is inactive, yet must take the same paths as a team of 2). */
int moe_in_region(void);

/* Pieces 0 ..< n handed out one at a time to whichever thread asks first (a shared counter
 * starting at 0): the threads of a region loop `while ((p = moe_next_piece(&c, n)) >= 0)`.
 * OpenMP's schedule(dynamic) would do this, but the compiler's code for it needs a newer
 * OpenMP runtime than Debian's. */
static inline int64_t moe_next_piece(int64_t *counter, int64_t n) {
    const int64_t p = __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    return p < n ? p : -1;
}

/* moe_sgemm, the GEMM every float32 product of the kernels runs, is declared in moe_gemm_f32.h. */
#include "moe_gemm_f32.h"

/* A single-threaded GEMM with moe_sgemm's arguments, and the splitter moe_sgemm runs it through
 * (moe_sgemm_bf16 shares it). */
typedef void (*moe_gemm1)(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void moe_gemm_split(moe_gemm1 gemm1, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* C[m, n] (stride ldc) = beta · C, zeros for beta = 0 (C not read): a GEMM with k = 0. */
void moe_gemm_scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc);
/* moe_sgemm's AVX-512 path (moe_gemm_f32.c), a moe_gemm1; run it only where
 * moe_gemm_f32_avx512_available() is 1 (the kernels' SIMD level is AVX-512). */
void moe_gemm1_f32_avx512(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
int moe_gemm_f32_avx512_available(void);
/* moe_sgemm_bf16's AMX path (moe_gemm_bf16_amx.c), a moe_gemm1; run it only where
 * moe_gemm_bf16_amx_available() is 1 (the CPU has AMX-BF16 and AVX-512, the OS lets this
 * process use the tiles). */
void moe_gemm1_bf16_amx(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
int moe_gemm_bf16_amx_available(void);
/* op(A)[i0 ..< i0 + mc, k0 ..< k0 + kc] and op(B)[k0 ..< k0 + kc, j0 ..< j0 + nc] rounded to bf16
 * as the pair panels of moe_gemm_bf16_pack.c (kcp = kc rounded up to 32; op(A)[i, k] = trans ?
 * a[k·ld + i] : a[i·ld + k], op(B) likewise). AVX-512 BF16: x86-64 only, and only where the
 * bf16 paths that call them run. */
void moe_bf16_pack_a(uint16_t *dst, const float *a, int64_t ld, int trans, int64_t i0, int64_t mc, int64_t k0,
                     int64_t kc, int64_t kcp);
void moe_bf16_pack_b(uint32_t *dst, const float *b, int64_t ld, int trans, int64_t k0, int64_t kc, int64_t j0,
                     int64_t nc, int64_t kcp);
/* The calling thread's packing buffer for our GEMM kernels, at least `bytes`, 64-byte aligned
 * (grown, never shrunk; one per thread, used within one GEMM call); NULL when out of memory. */
void *moe_gemm_thread_buffer(size_t bytes);
/* C[0 ..< mr, 0 ..< nr] (row stride ldc, nr ≤ 32) = alpha · T + (first ? beta · C : C) for a block
 * T of float rows of 32 (64-byte aligned); beta = 0 on the first block never reads C. AVX-512F:
 * x86-64 only, and only where the bf16 paths that call it run. */
void moe_gemm_bf16_merge_block(const float *t, float *c, int64_t ldc, int mr, int nr, float alpha, float beta,
                               int first);

#endif
