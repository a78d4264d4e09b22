#include "moe_optim.h"
#include "internal.h"
#include "moe_weights.h"
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Below this many elements the loops stay on the calling thread. */
#define MOE_OPTIM_PARALLEL_MIN 32768
/* Chunking of the deterministic norm reduction. */
#define MOE_NORM_MAX_CHUNKS 256
#define MOE_NORM_MIN_CHUNK 4096

typedef struct {
    float grad_scale, decay, step_size, bc2_sqrt, one_minus_b1, b2, one_minus_b2, eps;
} adamw_consts;

/* Elements [i0, i1) of the update. Every element goes through the same float operations in
 * the same order, with no contraction into FMAs and a correctly rounded square root (no libm
 * call, so the loop vectorises): the vector clones give the bits of the plain scalar loop. */
MOE_SIMD_CLONES static void adamw_range(float *restrict param, float *restrict m, float *restrict v,
                                        const float *restrict grad, int64_t i0, int64_t i1,
                                        const adamw_consts *k) {
#pragma clang fp contract(off)
    const adamw_consts c = *k;
    for (int64_t i = i0; i < i1; i++) {
        const float g = grad[i] * c.grad_scale;
        const float p = param[i] * c.decay;
        const float mi = m[i] + c.one_minus_b1 * (g - m[i]);
        const float vi = v[i] * c.b2 + c.one_minus_b2 * g * g;
        const float denom = __builtin_elementwise_sqrt(vi) / c.bc2_sqrt + c.eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - c.step_size * (mi / denom);
    }
}

/* Blocks of the update handed out to the threads (any split gives the same bits). */
#define MOE_ADAMW_BLOCK 8192

void moe_adamw_step(float *param, float *m, float *v, const float *grad, float grad_scale, int64_t n,
                    double lr, double beta1, double beta2, double eps, double weight_decay,
                    int64_t step) {
    const double bc1 = 1.0 - pow(beta1, (double)step);
    const double bc2 = 1.0 - pow(beta2, (double)step);
    const adamw_consts c = {
        .grad_scale = grad_scale, .decay = (float)(1.0 - lr * weight_decay), .step_size = (float)(lr / bc1),
        .bc2_sqrt = (float)sqrt(bc2), .one_minus_b1 = (float)(1.0 - beta1), .b2 = (float)beta2,
        .one_minus_b2 = (float)(1.0 - beta2), .eps = (float)eps,
    };
    const int nt = moe_threads_current();
    const int64_t blocks = (n + MOE_ADAMW_BLOCK - 1) / MOE_ADAMW_BLOCK;
    MOE_PARALLEL_FOR(b, blocks, n >= MOE_OPTIM_PARALLEL_MIN && nt > 1, moe_team(nt),
        const int64_t i1 = (b + 1) * MOE_ADAMW_BLOCK < n ? (b + 1) * MOE_ADAMW_BLOCK : n;
        adamw_range(param, m, v, grad, b * MOE_ADAMW_BLOCK, i1, &c);
    );
}

/* Σ x² of one chunk in 32 double lanes, the same bits at every SIMD level. The chunk's first
 * 4q elements (q = 8·⌊n/32⌋) are read as four streams, quarters of q elements each, so that four
 * memory streams are in flight (one stream was read 15–30 % slower here); lane j (0…7) of stream s
 * sums x[s·q + 8t + j]² over t in order, and the last n − 4q elements go to the lanes of stream 0
 * in turn. A float's square is exact in double, so a fused and an unfused multiply-add give the
 * same lane sums; the lanes are then combined by sum_sq_lanes in one fixed order. */
#define SUM_SQ_LANES 32

static double sum_sq_lanes(double *acc, const float *x, int64_t from, int64_t n) {
    for (int64_t i = from; i < n; i++) acc[(i - from) % 8] += (double)x[i] * (double)x[i];
    for (int j = 0; j < 8; j++) acc[j] = (acc[j] + acc[8 + j]) + (acc[16 + j] + acc[24 + j]);
    for (int w = 4; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

static double sum_sq_scalar(const float *x, int64_t n) {
    double acc[SUM_SQ_LANES] = {0};
    const int64_t q = n / 32 * 8;
    for (int64_t t = 0; t < q; t += 8)
        for (int s = 0; s < 4; s++)
            for (int j = 0; j < 8; j++) {
                const double v = x[s * q + t + j];
                acc[8 * s + j] += v * v;
            }
    return sum_sq_lanes(acc, x, 4 * q, n);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double sum_sq_avx512(const float *x, int64_t n) {
    const int64_t q = n / 32 * 8;
    const float *x1 = x + q, *x2 = x + 2 * q, *x3 = x + 3 * q;
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < q; t += 8) {
        const __m512d d0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + t)), d1 = _mm512_cvtps_pd(_mm256_loadu_ps(x1 + t));
        const __m512d d2 = _mm512_cvtps_pd(_mm256_loadu_ps(x2 + t)), d3 = _mm512_cvtps_pd(_mm256_loadu_ps(x3 + t));
        a0 = _mm512_fmadd_pd(d0, d0, a0);
        a1 = _mm512_fmadd_pd(d1, d1, a1);
        a2 = _mm512_fmadd_pd(d2, d2, a2);
        a3 = _mm512_fmadd_pd(d3, d3, a3);
    }
    double acc[SUM_SQ_LANES];
    _mm512_storeu_pd(acc, a0);
    _mm512_storeu_pd(acc + 8, a1);
    _mm512_storeu_pd(acc + 16, a2);
    _mm512_storeu_pd(acc + 24, a3);
    return sum_sq_lanes(acc, x, 4 * q, n);
}

__attribute__((target("avx2,fma"))) static double sum_sq_avx2(const float *x, int64_t n) {
    const int64_t q = n / 32 * 8;
    __m256d a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_pd();
    for (int64_t t = 0; t < q; t += 8)
        for (int s = 0; s < 4; s++) {
            const float *p = x + s * q + t;
            const __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(p)), hi = _mm256_cvtps_pd(_mm_loadu_ps(p + 4));
            a[2 * s] = _mm256_fmadd_pd(lo, lo, a[2 * s]);
            a[2 * s + 1] = _mm256_fmadd_pd(hi, hi, a[2 * s + 1]);
        }
    double acc[SUM_SQ_LANES];
    for (int j = 0; j < 8; j++) _mm256_storeu_pd(acc + 4 * j, a[j]);
    return sum_sq_lanes(acc, x, 4 * q, n);
}
#endif

static double sum_sq(const float *x, int64_t n) {
#if defined(__x86_64__)
    switch (moe_weight_simd_level()) {
    case 3: return sum_sq_avx512(x, n);
    case 2: return sum_sq_avx2(x, n);
    default: break;
    }
#endif
    return sum_sq_scalar(x, n);
}

double moe_grad_norm_sq(const float *x, int64_t n) {
    if (n <= 0) return 0.0;
    int64_t chunk = (n + MOE_NORM_MAX_CHUNKS - 1) / MOE_NORM_MAX_CHUNKS;
    if (chunk < MOE_NORM_MIN_CHUNK) chunk = MOE_NORM_MIN_CHUNK;
    const int64_t chunks = (n + chunk - 1) / chunk;
    double partial[MOE_NORM_MAX_CHUNKS];
    const int parallel = chunks > 1 && moe_threads_current() > 1;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t lo = c * chunk;
        const int64_t hi = lo + chunk < n ? lo + chunk : n;
        partial[c] = sum_sq(x + lo, hi - lo);
    }
    double s = 0.0;
    for (int64_t c = 0; c < chunks; c++) s += partial[c];
    return s;
}

void moe_grad_scale(float *x, int64_t n, float scale) {
    const int parallel = n >= MOE_OPTIM_PARALLEL_MIN && moe_threads_current() > 1;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < n; i++) x[i] *= scale;
}
