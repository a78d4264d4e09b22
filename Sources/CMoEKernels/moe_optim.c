#include "moe_optim.h"
#include "internal.h"
#include <math.h>

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

/* Four interleaved accumulators (breaks the add latency chain), combined in a
 * fixed order: deterministic, slightly different rounding from a sequential sum. */
static double sum_sq4(const float *x, int64_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)x[i] * (double)x[i];
        s1 += (double)x[i + 1] * (double)x[i + 1];
        s2 += (double)x[i + 2] * (double)x[i + 2];
        s3 += (double)x[i + 3] * (double)x[i + 3];
    }
    for (; i < n; i++) s0 += (double)x[i] * (double)x[i];
    return (s0 + s1) + (s2 + s3);
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
        partial[c] = sum_sq4(x + lo, hi - lo);
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
