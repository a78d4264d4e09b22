/* Private: the SIMD weight kernels, written once for a vector of VL floats and included by
 * moe_weights_simd.c once per level (AVX2: VL = 8, AVX-512: VL = 16). The including file
 * defines LV(name) (level prefix), ATTR (target attribute), VL, and the vector type LV(v) with
 *   LV(zero) LV(loadf) LV(storef) LV(set1) LV(add) LV(mul) LV(fma)(a, b, c) = a·b + c
 *   LV(hsum)             horizontal sum in a fixed order
 *   LV(load_bf16/f16/i8) VL stored elements → VL floats (Q8: the integers, unscaled)
 *   LV(q4)(g, s, out)    one Q4 group (16 bytes) → 32 / VL vectors of q·s, elements in order
 * Tails (K not a multiple of the vector width, the last partial Q4 group) run scalar.
 * Summation order: per x row two vector accumulators (even / odd vector steps), then the
 * horizontal sum, then the scalar tail; Q8 multiplies the row scale in at the end. One x row
 * (m = 1) first runs four accumulators (vector step j mod 4, for the FMA latency) over the whole
 * multiples of 4·VL, folded as (a0 + a2), (a1 + a3) into the two. Every loop prefetches each
 * 64-byte line of W MOE_WEIGHT_PREFETCH_BYTES ahead: a decode GEMV is a read of W, and the
 * hardware prefetcher alone left one bf16 x row at ~0.6 of the read bandwidth (0.8 with). */

#define QV (32 / VL)
#define ALWAYS __attribute__((always_inline))

/* VL weights of row `row` from element k on, as floats (Q8: unscaled). */
static inline ALWAYS ATTR LV(v) LV(wload)(const int fmt, const uint8_t *row, int64_t k) {
    switch (fmt) {
    case MOE_WEIGHT_F32: return LV(loadf)((const float *)row + k);
    case MOE_WEIGHT_BF16: return LV(load_bf16)((const uint16_t *)row + k);
    case MOE_WEIGHT_F16: return LV(load_f16)((const uint16_t *)row + k);
    default: return LV(load_i8)((const int8_t *)row + k);
    }
}

/* Scalar element k of a stored row (Q8: unscaled; Q4: q·s with the group scales gs). */
static inline ALWAYS float LV(wscalar)(const int fmt, const uint8_t *row, const uint16_t *gs, int64_t k) {
    switch (fmt) {
    case MOE_WEIGHT_F32: return ((const float *)row)[k];
    case MOE_WEIGHT_BF16: return moe_bf16_to_f32(((const uint16_t *)row)[k]);
    case MOE_WEIGHT_F16: return moe_f16_to_f32(((const uint16_t *)row)[k]);
    case MOE_WEIGHT_Q8: return (float)((const int8_t *)row)[k];
    default: return (float)moe_q4_at(row, k) * moe_f16_to_f32(gs[k / 32]);
    }
}

/* out[i] = Σ_k W[row, k] · x[i·ldx + k] for i < mr (mr ≤ 4, a constant after inlining).
 * rscale: the Q8 row scale; gs: the Q4 group scales of the row. */
static inline ALWAYS ATTR void LV(dots)(const int fmt, const int mr, const uint8_t *row, float rscale,
                                        const uint16_t *gs, int64_t K, const float *x, int64_t ldx,
                                        float *out) {
    LV(v) acc[4][2];
    float tail[4] = {0, 0, 0, 0};
    const int64_t eb = fmt == MOE_WEIGHT_F32 ? 4 : fmt == MOE_WEIGHT_Q8 ? 1 : 2; /* bytes per element */
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = LV(zero)();
    LV(v) acc1[4] = {LV(zero)(), LV(zero)(), LV(zero)(), LV(zero)()};
    int64_t k = 0;
    if (fmt == MOE_WEIGHT_Q4) {
        for (; k + 32 <= K; k += 32) {
            LV(v) wv[QV];
            LV(q4)(row + (k / 32) * 16, LV(set1)(moe_f16_to_f32(gs[k / 32])), wv);
            __builtin_prefetch(row + (k / 32) * 16 + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
            for (int j = 0; j < QV; j++)
                for (int i = 0; i < mr; i++)
                    acc[i][j & 1] = LV(fma)(wv[j], LV(loadf)(x + i * ldx + k + j * VL), acc[i][j & 1]);
        }
    } else {
        if (mr == 1) /* one x row: four accumulators (FMA latency), steps j mod 4 */
            for (; k + 4 * VL <= K; k += 4 * VL) {
                for (int64_t b = 0; b < 4 * VL * eb; b += 64) __builtin_prefetch(row + k * eb + b + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
                for (int j = 0; j < 4; j++)
                    acc1[j] = LV(fma)(LV(wload)(fmt, row, k + j * VL), LV(loadf)(x + k + j * VL), acc1[j]);
            }
        for (; k + 2 * VL <= K; k += 2 * VL) {
            LV(v) w0 = LV(wload)(fmt, row, k), w1 = LV(wload)(fmt, row, k + VL);
            for (int64_t b = 0; b < 2 * VL * eb; b += 64) __builtin_prefetch(row + k * eb + b + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
            for (int i = 0; i < mr; i++) {
                acc[i][0] = LV(fma)(w0, LV(loadf)(x + i * ldx + k), acc[i][0]);
                acc[i][1] = LV(fma)(w1, LV(loadf)(x + i * ldx + k + VL), acc[i][1]);
            }
        }
        for (; k + VL <= K; k += VL) {
            LV(v) w0 = LV(wload)(fmt, row, k);
            for (int i = 0; i < mr; i++) acc[i][0] = LV(fma)(w0, LV(loadf)(x + i * ldx + k), acc[i][0]);
        }
    }
    for (; k < K; k++) {
        float wk = LV(wscalar)(fmt, row, gs, k);
        for (int i = 0; i < mr; i++) tail[i] += wk * x[i * ldx + k];
    }
    if (mr == 1) { /* fold the four into the two: (a0 + a2), (a1 + a3) */
        acc[0][0] = LV(add)(acc[0][0], LV(add)(acc1[0], acc1[2]));
        acc[0][1] = LV(add)(acc[0][1], LV(add)(acc1[1], acc1[3]));
    }
    for (int i = 0; i < mr; i++) {
        float s = LV(hsum)(LV(add)(acc[i][0], acc[i][1])) + tail[i];
        out[i] = fmt == MOE_WEIGHT_Q8 ? s * rscale : s;
    }
}

/* out[j] = LV(hsum)(v[j]) for j < 8, the eight reduced together: the same pairs added in the
 * same order (16 lanes: i + (i+8), then i + (i+4) within 8, then (0 + 2) + (1 + 3) within 4;
 * 8 lanes: the last two), two or more outputs per shuffle instead of one. */
#if VL == 16
static inline ALWAYS ATTR void LV(hsums8)(const __m512 v[8], float out[8]) {
    __m512 a[4];
    for (int j = 0; j < 4; j++) /* [v[2j]: i + (i+8) for i < 8, v[2j+1]: the same] */
        a[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* 128-bit quarter q of b0 (b1): output q (4 + q), its lanes j + (j+4) for j < 4 */
    const __m512 b0 = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 b1 = _mm512_add_ps(_mm512_shuffle_f32x4(a[2], a[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(a[2], a[3], _MM_SHUFFLE(3, 1, 3, 1)));
    /* per quarter: [b0: 0 + 2, 1 + 3, b1: 0 + 2, 1 + 3] */
    const __m512 c = _mm512_add_ps(_mm512_shuffle_ps(b0, b1, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 2, 3, 2)));
    /* per quarter q: [output q, output 4 + q, (repeated)] */
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(c, c, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(c, c, _MM_SHUFFLE(3, 1, 3, 1)));
    float t[16];
    _mm512_storeu_ps(t, r);
    for (int q = 0; q < 4; q++) {
        out[q] = t[4 * q];
        out[4 + q] = t[4 * q + 1];
    }
}
#else
static inline ALWAYS ATTR void LV(hsums8)(const __m256 v[8], float out[8]) {
    __m256 a[4];
    for (int j = 0; j < 4; j++) /* [v[2j]: i + (i+4) for i < 4, v[2j+1]: the same] */
        a[j] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x31));
    /* per 128-bit half h: [v[h]: 0 + 2, 1 + 3, v[2 + h]: the same] (b1: v[4 + h], v[6 + h]) */
    const __m256 b0 = _mm256_add_ps(_mm256_shuffle_ps(a[0], a[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm256_shuffle_ps(a[0], a[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 b1 = _mm256_add_ps(_mm256_shuffle_ps(a[2], a[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm256_shuffle_ps(a[2], a[3], _MM_SHUFFLE(3, 2, 3, 2)));
    /* per half h: [v[h], v[2 + h], v[4 + h], v[6 + h]] */
    const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)));
    float t[8];
    _mm256_storeu_ps(t, r);
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++) out[2 * j + h] = t[4 * h + j];
}
#endif

/* LV(dots) for two rows of W at once and mr ≤ 4 x rows (≤ 2 on 8 lanes: 16 registers), float
 * formats (F32, BF16, F16): each x vector is loaded once for both rows and the 2·mr horizontal
 * sums are reduced together (LV(hsums8)); every sum is the one LV(dots) forms for a group of two
 * or more x rows, bit for bit. out[r][i]: row r, x row i. */
static inline ALWAYS ATTR void LV(dots2)(const int fmt, const int mr, const uint8_t *row0, const uint8_t *row1,
                                         int64_t K, const float *x, int64_t ldx, float out[2][4]) {
    LV(v) acc[2][4][2];
    float tail[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    const int64_t eb = fmt == MOE_WEIGHT_F32 ? 4 : 2; /* bytes per element */
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < mr; i++) acc[r][i][0] = acc[r][i][1] = LV(zero)();
    int64_t k = 0;
    for (; k + 2 * VL <= K; k += 2 * VL) {
        const LV(v) w00 = LV(wload)(fmt, row0, k), w01 = LV(wload)(fmt, row0, k + VL);
        const LV(v) w10 = LV(wload)(fmt, row1, k), w11 = LV(wload)(fmt, row1, k + VL);
        for (int64_t b = 0; b < 2 * VL * eb; b += 64) {
            __builtin_prefetch(row0 + k * eb + b + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
            __builtin_prefetch(row1 + k * eb + b + MOE_WEIGHT_PREFETCH_BYTES, 0, 3);
        }
        for (int i = 0; i < mr; i++) {
            const LV(v) x0 = LV(loadf)(x + i * ldx + k), x1 = LV(loadf)(x + i * ldx + k + VL);
            acc[0][i][0] = LV(fma)(w00, x0, acc[0][i][0]);
            acc[0][i][1] = LV(fma)(w01, x1, acc[0][i][1]);
            acc[1][i][0] = LV(fma)(w10, x0, acc[1][i][0]);
            acc[1][i][1] = LV(fma)(w11, x1, acc[1][i][1]);
        }
    }
    for (; k + VL <= K; k += VL) {
        const LV(v) w0 = LV(wload)(fmt, row0, k), w1 = LV(wload)(fmt, row1, k);
        for (int i = 0; i < mr; i++) {
            const LV(v) x0 = LV(loadf)(x + i * ldx + k);
            acc[0][i][0] = LV(fma)(w0, x0, acc[0][i][0]);
            acc[1][i][0] = LV(fma)(w1, x0, acc[1][i][0]);
        }
    }
    for (; k < K; k++) {
        const float w0k = LV(wscalar)(fmt, row0, NULL, k), w1k = LV(wscalar)(fmt, row1, NULL, k);
        for (int i = 0; i < mr; i++) {
            tail[0][i] += w0k * x[i * ldx + k];
            tail[1][i] += w1k * x[i * ldx + k];
        }
    }
    LV(v) v[8];
    float s[8];
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 4; i++) v[4 * r + i] = i < mr ? LV(add)(acc[r][i][0], acc[r][i][1]) : LV(zero)();
    LV(hsums8)(v, s);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < mr; i++) out[r][i] = s[4 * r + i] + tail[r][i];
}

static inline ALWAYS ATTR void LV(gemv_fmt)(const int fmt, const moe_weight *w, int64_t n0, int64_t n1,
                                            const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy,
                                            int accumulate) {
    const int64_t K = w->cols, rb = moe_weight_row_bytes(fmt, K), G = moe_weight_scales_per_row(fmt, K);
    int64_t n = n0;
    /* Float formats, two or more x rows: rows of W in pairs (LV(dots2)), the same sums. */
    if (fmt != MOE_WEIGHT_Q8 && fmt != MOE_WEIGHT_Q4 && m >= 2)
        for (; n + 2 <= n1; n += 2) {
            const uint8_t *row0 = (const uint8_t *)w->data + n * rb, *row1 = row0 + rb;
            for (int64_t i0 = 0; i0 < m; i0 += 4) {
                float out[2][4];
                const float *xi = x + i0 * ldx;
                const int64_t mr = m - i0 < 4 ? m - i0 : 4;
                switch (mr) {
                case 1:
                    LV(dots)(fmt, 1, row0, 0.0f, NULL, K, xi, ldx, out[0]);
                    LV(dots)(fmt, 1, row1, 0.0f, NULL, K, xi, ldx, out[1]);
                    break;
#if VL == 16
                case 2: LV(dots2)(fmt, 2, row0, row1, K, xi, ldx, out); break;
                case 3: LV(dots2)(fmt, 3, row0, row1, K, xi, ldx, out); break;
                default: LV(dots2)(fmt, 4, row0, row1, K, xi, ldx, out); break;
#else /* x rows two at a time */
                case 2: LV(dots2)(fmt, 2, row0, row1, K, xi, ldx, out); break;
                default: {
                    float o2[2][4];
                    LV(dots2)(fmt, 2, row0, row1, K, xi, ldx, out);
                    if (mr == 3) LV(dots2)(fmt, 1, row0, row1, K, xi + 2 * ldx, ldx, o2);
                    else LV(dots2)(fmt, 2, row0, row1, K, xi + 2 * ldx, ldx, o2);
                    for (int r = 0; r < 2; r++)
                        for (int i = 2; i < mr; i++) out[r][i] = o2[r][i - 2];
                    break;
                }
#endif
                }
                for (int64_t r = 0; r < 2; r++)
                    for (int64_t i = 0; i < mr; i++) {
                        float *yi = y + (i0 + i) * ldy + n + r;
                        *yi = accumulate ? *yi + out[r][i] : out[r][i];
                    }
            }
        }
    for (; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)w->data + n * rb;
        const float rscale = fmt == MOE_WEIGHT_Q8 ? ((const float *)w->scales)[n] : 0.0f;
        const uint16_t *gs = fmt == MOE_WEIGHT_Q4 ? (const uint16_t *)w->scales + n * G : NULL;
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            float out[4];
            const float *xi = x + i0 * ldx;
            const int64_t mr = m - i0 < 4 ? m - i0 : 4;
            switch (mr) {
            case 1: LV(dots)(fmt, 1, row, rscale, gs, K, xi, ldx, out); break;
            case 2: LV(dots)(fmt, 2, row, rscale, gs, K, xi, ldx, out); break;
            case 3: LV(dots)(fmt, 3, row, rscale, gs, K, xi, ldx, out); break;
            default: LV(dots)(fmt, 4, row, rscale, gs, K, xi, ldx, out); break;
            }
            for (int64_t i = 0; i < mr; i++) {
                float *yi = y + (i0 + i) * ldy + n;
                *yi = accumulate ? *yi + out[i] : out[i];
            }
        }
    }
}

static ATTR void LV(gemv)(const moe_weight *w, int64_t n0, int64_t n1, const float *x, int64_t ldx, int64_t m,
                          float *y, int64_t ldy, int accumulate) {
    switch (w->format) {
    case MOE_WEIGHT_F32: LV(gemv_fmt)(MOE_WEIGHT_F32, w, n0, n1, x, ldx, m, y, ldy, accumulate); break;
    case MOE_WEIGHT_BF16: LV(gemv_fmt)(MOE_WEIGHT_BF16, w, n0, n1, x, ldx, m, y, ldy, accumulate); break;
    case MOE_WEIGHT_F16: LV(gemv_fmt)(MOE_WEIGHT_F16, w, n0, n1, x, ldx, m, y, ldy, accumulate); break;
    case MOE_WEIGHT_Q8: LV(gemv_fmt)(MOE_WEIGHT_Q8, w, n0, n1, x, ldx, m, y, ldy, accumulate); break;
    default: LV(gemv_fmt)(MOE_WEIGHT_Q4, w, n0, n1, x, ldx, m, y, ldy, accumulate); break;
    }
}

static inline ALWAYS ATTR void LV(dequant_fmt)(const int fmt, const moe_weight *w, int64_t n0, int64_t n1,
                                               float *dst, int64_t ldd) {
    const int64_t K = w->cols, rb = moe_weight_row_bytes(fmt, K), G = moe_weight_scales_per_row(fmt, K);
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)w->data + n * rb;
        const float rscale = fmt == MOE_WEIGHT_Q8 ? ((const float *)w->scales)[n] : 1.0f;
        const uint16_t *gs = fmt == MOE_WEIGHT_Q4 ? (const uint16_t *)w->scales + n * G : NULL;
        float *d = dst + (n - n0) * ldd;
        int64_t k = 0;
        if (fmt == MOE_WEIGHT_Q4) {
            for (; k + 32 <= K; k += 32) {
                LV(v) wv[QV];
                LV(q4)(row + (k / 32) * 16, LV(set1)(moe_f16_to_f32(gs[k / 32])), wv);
                for (int j = 0; j < QV; j++) LV(storef)(d + k + j * VL, wv[j]);
            }
        } else {
            const LV(v) s = LV(set1)(rscale);
            for (; k + VL <= K; k += VL) {
                LV(v) v = LV(wload)(fmt, row, k);
                LV(storef)(d + k, fmt == MOE_WEIGHT_Q8 ? LV(mul)(v, s) : v);
            }
        }
        for (; k < K; k++) {
            float v = LV(wscalar)(fmt, row, gs, k);
            d[k] = fmt == MOE_WEIGHT_Q8 ? v * rscale : v;
        }
    }
}

static ATTR void LV(dequant)(const moe_weight *w, int64_t n0, int64_t n1, float *dst, int64_t ldd) {
    switch (w->format) {
    case MOE_WEIGHT_F32: LV(dequant_fmt)(MOE_WEIGHT_F32, w, n0, n1, dst, ldd); break;
    case MOE_WEIGHT_BF16: LV(dequant_fmt)(MOE_WEIGHT_BF16, w, n0, n1, dst, ldd); break;
    case MOE_WEIGHT_F16: LV(dequant_fmt)(MOE_WEIGHT_F16, w, n0, n1, dst, ldd); break;
    case MOE_WEIGHT_Q8: LV(dequant_fmt)(MOE_WEIGHT_Q8, w, n0, n1, dst, ldd); break;
    default: LV(dequant_fmt)(MOE_WEIGHT_Q4, w, n0, n1, dst, ldd); break;
    }
}

#undef QV
#undef ALWAYS
