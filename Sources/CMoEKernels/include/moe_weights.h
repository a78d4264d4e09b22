#ifndef MOE_WEIGHTS_H
#define MOE_WEIGHTS_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Weight matrices in reduced-precision and quantized storage, for inference.
 *
 * A weight matrix W is [N, K] (N rows = output features, K = input features, PyTorch
 * Linear layout), stored row by row in one of these formats. Activations, scales and
 * accumulation are float32; the kernels dequantize on the fly and never write a float32
 * copy of W.
 *
 *   F32   float [N, K]
 *   BF16  uint16 [N, K], bfloat16 bits (w = bits << 16 as float32)
 *   F16   uint16 [N, K], IEEE half bits
 *   Q8    int8 [N, K], symmetric, one float32 scale per row: w[n,k] = q[n,k] · s[n]
 *         (quantize: s = max|w[n,:]| / 127, q = round(w / s) clamped to [-127, 127]; s = 0 rows hold 0)
 *   Q4    groups of 32 along K, G = ceil(K / 32) groups per row, each group 16 bytes:
 *         byte j (0..<16) of group g holds element 32g + j in its low nibble and element
 *         32g + 16 + j in its high nibble; q = nibble − 8 ∈ [−8, 7]; one float16 scale per
 *         group, scales [N, G]: w[n,k] = q · s[n, k/32]. Elements past K in the last group
 *         are stored as nibble 8 (zero). (quantize: s = max|w| / 7 over the group,
 *         q = round(w / s) clamped to [−8, 7], s rounded to f16 before q is computed)
 *         Row bytes = 16·G.
 *
 * Stacked experts [E, N, K] are E·N rows of the same format: expert e's matrix is rows
 * e·N ..< (e+1)·N (`moe_weight_rows`).
 */

typedef enum moe_weight_format {
    MOE_WEIGHT_F32 = 0,
    MOE_WEIGHT_BF16 = 1,
    MOE_WEIGHT_F16 = 2,
    MOE_WEIGHT_Q8 = 3,
    MOE_WEIGHT_Q4 = 4,
} moe_weight_format;

#define MOE_Q4_GROUP 32

/* A read-only view of a weight matrix W [rows, cols] in `format`.
 * data: rows · moe_weight_row_bytes(format, cols) bytes.
 * scales: Q8 float [rows]; Q4 uint16 (f16 bits) [rows, ceil(cols/32)]; NULL otherwise. */
typedef struct moe_weight {
    int32_t format;
    const void *data;
    const void *scales;
    int64_t rows;
    int64_t cols;
} moe_weight;

/* Bytes of one stored row of `cols` elements. */
int64_t moe_weight_row_bytes(int format, int64_t cols);

/* Scale elements per row (Q8: 1, Q4: ceil(cols/32), others 0). */
int64_t moe_weight_scales_per_row(int format, int64_t cols);

/* Rows first ..< first + count of w, as a weight of its own (no copy). */
moe_weight moe_weight_rows(moe_weight w, int64_t first, int64_t count);

/* Converts float32 src [rows, cols] into `format`: writes rows · row_bytes bytes to data and
 * rows · scales_per_row scales to scales (NULL for F32/BF16/F16). BF16 and F16 round to
 * nearest even. OpenMP over rows. */
void moe_weight_quantize(void *data, void *scales, const float *src, int64_t rows, int64_t cols, int format);

/* Index of the first element of data [n] in `format` (F32, BF16 or F16; any alignment) that
 * is ±inf or NaN, or −1 when all are finite (and for other formats). Vectorised. */
int64_t moe_weight_find_nonfinite(const void *data, int format, int64_t n);

/* dst [count, cols] = float32 values of rows first ..< first + count of w. OpenMP over rows. */
void moe_weight_dequantize(float *dst, moe_weight w, int64_t first, int64_t count);

/* Rows of x up to which moe_weight_matmul takes the decode path for W in `format` at the current
 * SIMD level (2⁴⁰, no limit, where the level has an integer kernel for the format). */
int64_t moe_weight_decode_max_m(int format);

/* Float32 scratch (in floats) that moe_weight_matmul needs for m rows of x on the current
 * kernel thread count (0 when none). */
int64_t moe_weight_matmul_workspace_size(moe_weight w, int64_t m);

/*
 * y[m, N] = x[m, K] · Wᵀ  (+ y when accumulate != 0), W = w [N, K].
 *   x row stride ldx ≥ K, y row stride ldy ≥ N; workspace as sized above (may be NULL when 0).
 * Small m (decode): OpenMP over blocks of rows of W, each row's dot products dequantized on
 * the fly in SIMD (AVX-512 / AVX2+FMA+F16C chosen at run time, scalar otherwise); every W
 * byte is read once per call. Q4 and Q8 W at SIMD level ≥ 2 (moe_weight_decode_rounds_x)
 * take this path at every m: x is first rounded to Q8 activation blocks, and the products
 * are integer dot products per group of 32 (as llama.cpp's Q4_0 × Q8_0 and Q8_0 × Q8_0):
 *   per row of x and block b of 32 columns (zero past K): d = max|x_b| / 127 (float32),
 *   q = round-half-even(x · (1/d)) ∈ [−127, 127] (0 where d = 0);
 *   Q4: y[i, n] = Σ_b s[n, b] · d[i, b] · Σ_j q_w · q_x;  Q8: y[i, n] = s[n] · Σ_b d[i, b] · Σ_j q_w · q_x;
 *   so |x − q·d| ≤ d/2 per element (up to float32 rounding of x · (1/d)) is the added error.
 *   Other formats and the scalar level keep x in float32.
 * Large m (prefill): W dequantized panel by panel into the
 * workspace and multiplied with single-threaded sgemm per thread. Inside an OpenMP
 * parallel region it runs on the calling thread. Deterministic for a fixed thread count.
 */
void moe_weight_matmul(float *y, int64_t ldy, const float *x, int64_t ldx, moe_weight w, int64_t m,
                       int accumulate, float *workspace);

/* Float32 scratch (in floats) for moe_routed_experts_infer with A assignments. */
int64_t moe_routed_experts_infer_workspace_size(int64_t A, int64_t C, int64_t F, int64_t E, int activation,
                                                moe_weight w1, moe_weight w2);

/*
 * Inference forward of routed experts (see moe_dispatch.h for the math and the plan) with
 * weights in any format and nothing saved for backward:
 *   y [T, C] out (overwritten; tokens whose slots are all dropped get 0)
 *   x [T, C], gates [T, K]; offsets/sorted/position from moe_dispatch_plan
 *   w1 [E·F, C], w3 [E·F, C] (SwiGLU; format may differ from w1; ignored otherwise),
 *   w2 [E·C, F]; b1 [E, F] / b2 [E, C] float32 or NULL.
 * Only the weights of experts with rows are read. Few rows per expert (decode): one
 * parallel region splits every (expert, block of weight rows) pair over the threads.
 * Many rows: per expert the moe_weight_matmul prefill path. Deterministic for a fixed
 * thread count.
 */
void moe_routed_experts_infer(float *y, float *workspace,
                              const float *x, const float *gates,
                              const int64_t *offsets, const int32_t *sorted, const int32_t *position,
                              moe_weight w1, moe_weight w3, moe_weight w2,
                              const float *b1, const float *b2,
                              int64_t T, int64_t C, int64_t F, int64_t E, int64_t K, int activation);

/* Which SIMD path the weight kernels (and the one-row decode attention) use on this CPU:
 * 0 scalar, 2 AVX2+FMA+F16C, 3 AVX-512 (F, BW, VL). */
int moe_weight_simd_level(void);

/* 1 when the integer decode kernels (weights × Q8 activation blocks) use AVX-512 VNNI's
 * vpdpbusd: at level 3 on a CPU with VNNI. Their results are bit-identical to AVX2's. */
int moe_weight_simd_vnni(void);

/* 1 when moe_weight_matmul's decode path (m ≤ moe_weight_decode_max_m) at the current SIMD
 * level rounds x to Q8 activation blocks for W in `format`: Q4 and Q8 at levels 2 and 3. */
int moe_weight_decode_rounds_x(int format);

/* Sets the SIMD path of the weight kernels to the highest level ≤ `level` this CPU supports
 * and returns it (0 scalar, 2 AVX2+FMA+F16C, 3 AVX-512; 1 counts as 0). The first use starts
 * at the CPU's best level, lowered by the environment variable SPARSEMOE_SIMD=scalar|avx2|avx512.
 * Process-wide; for tests and measurements (do not call while weight kernels run). */
int moe_weight_set_simd_level(int level);

#ifdef __cplusplus
}
#endif
#endif
