/* Private: the integer decode kernels (Q4 and Q8 weights against Q8 activation blocks, see
 * moe_weights_internal.h), written once on 256-bit integer vectors and included by
 * moe_weights_simd.c per instruction set. The including file defines ATTR (target attribute),
 * IV(name) (prefix) and DOT_U8S8(u, x): 8 int32 lanes, lane l = Σ_{j<4} u[4l+j]·x[4l+j] for 32
 * unsigned bytes u and 32 signed bytes x (AVX2: maddubs then madd with ones, exact while every
 * pair sum fits int16, as it does here; AVX-512 VNNI: one vpdpbusd). Both give the same
 * integers, so every level's results are bit-identical.
 * With DOT_U8S8_512(acc, u, x) (AVX-512 VNNI: acc plus the 16 lanes of 64 bytes) Q8 runs a
 * pair of groups (even, odd) in one 512-bit vector: lanes 0..7 hold what the even-group
 * accumulator holds, lanes 8..15 the odd one's, each lane summed in the same order as on
 * 256-bit vectors, so the results stay bit-identical with fewer instructions per weight byte
 * (one x row: 13 → 19 G weights/s in cache). */

static inline ATTR float IV(hsum8)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* lanes i + (i+4) */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                        /* + (i+2) */
    s = _mm_add_ss(s, _mm_movehdup_ps(s));                                         /* + (i+1) */
    return _mm_cvtss_f32(s);
}

/* Q4 × Q8 activation blocks (in the Q4 order, moe_q8_blocks_q4_order), integer dot products
 * per group of 32. The nibbles u = q_w + 8 ∈ [0, 15] go into DOT_U8S8 unsigned against the
 * signed q_x (pair sums |·| ≤ 2·15·127). Four whole groups a, b, c, d (64 bytes of W) at a time:
 * lo = the low nibbles [a b c d], hi = the high ones, each meeting its 64 x bytes of the Q4 order
 * as loaded; int32 lane l (of 16) = Σ over the 4 bytes l of lo and of hi, so lanes 4q..4q+3 hold
 * group q. 256-bit levels do a, b then c, d; the 512-bit VNNI level all four at once, with
 * lanes 0..7 / 8..15 summed as the 256-bit accumulators ab / cd are, so every level gives the
 * same bits. Lanes are converted and FMA'd with s_w · d_x of their group: s_w converted from
 * the row's f16 scales as the loop reaches them (four at a time, each spread over its four
 * lanes), d_x read from a copy with every group's value four times (dx4, once per call). The G mod 4 groups after the last whole four
 * (x as they are) run one at a time: the nibbles broadcast, 8 lanes, into their own accumulator.
 * The −8 of every nibble is taken off once per (W row, x row) in floats:
 *   Σ_g s_w·d_x · Σ_j q_w·q_x = Σ_g s_w·d_x · Σ_j u·q_x − Σ_g s_w · (d_x · 8·Σ_j q_x),
 * with d_x · 8·Σ_j q_x per group (dxs8) computed once per call. The same code for every
 * x-row count, so a row's result does not depend on how many rows share the call:
 *   out = hsum8((ab + cd) + rest) − (hsum8(cor) + cor_tail), summed over windows into y. */

/* Groups per window: the x-side copies of one window (dx4, dxs8: m × 5 × this many floats)
 * live on the stack; longer rows run window after window, the later windows accumulating into
 * y. A multiple of 4. */
#ifndef Q4Q8_WINDOW_GROUPS
#define Q4Q8_WINDOW_GROUPS 64
#endif

/* The 32 nibbles of one group, unsigned: low nibbles (elements 0..15) in the low lane, high
 * nibbles (16..31) in the high lane (the high lane shifted right by 4 as whole 64-bit words:
 * bits that cross into a byte's high nibble are masked off). */
static inline ATTR __m256i IV(q4_nibbles)(const uint8_t *g) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)g));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0f));
}

/* 8 int32 lanes of Σ u·q_x over one group, as floats. */
static inline ATTR __m256 IV(q4q8_group)(__m256i u, const int8_t *xq) {
    return _mm256_cvtepi32_ps(DOT_U8S8(u, _mm256_loadu_si256((const __m256i *)xq)));
}

/* Two whole groups (32 bytes of W at w) against their x bytes of the Q4 order (lo at xlo, hi at
 * xlo + 64), as floats: lanes 0..3 the first group, 4..7 the second. */
static inline ATTR __m256 IV(q4q8_pair)(const uint8_t *w, const int8_t *xlo) {
    const __m256i b = _mm256_loadu_si256((const __m256i *)w), m4 = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
    return _mm256_cvtepi32_ps(_mm256_add_epi32(DOT_U8S8(lo, _mm256_loadu_si256((const __m256i *)xlo)),
                                               DOT_U8S8(hi, _mm256_loadu_si256((const __m256i *)(xlo + 64)))));
}

/* out[i] = Σ_{g<G} s_w[g]·xd[i·ldd + g]·Σ_j q_w·xq[i·ldq + 32g + j] for i < mr (mr ≤ 4), the
 * groups g of one window, the first `fours` of them whole fours in the Q4 order. gs: the row's
 * f16 scales s_w; dx4 [i·4·ldw + 4g + r] = xd[i·ldd + g]; dxs8[i·ldw + g] =
 * xd[i·ldd + g] · 8·Σ_j xq[…]. */
static inline __attribute__((always_inline)) ATTR void IV(q4q8_rows)(const int mr, const uint8_t *row,
                                                                     const uint16_t *gs,
                                                                     int64_t G, int64_t fours,
                                                                     const int8_t *xq, int64_t ldq,
                                                                     const float *xd, int64_t ldd,
                                                                     const float *dx4, const float *dxs8,
                                                                     int64_t ldw, float *out) {
    __m256 ab[4], cd[4], rest[4], cor[4];
    float cor_tail[4] = {0, 0, 0, 0};
    for (int i = 0; i < mr; i++) ab[i] = cd[i] = rest[i] = cor[i] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= G; j += 8) {
        const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gs + j)));
        for (int i = 0; i < mr; i++) cor[i] = _mm256_fmadd_ps(s, _mm256_loadu_ps(dxs8 + i * ldw + j), cor[i]);
    }
    for (; j < G; j++)
        for (int i = 0; i < mr; i++) cor_tail[i] += _cvtsh_ss(gs[j]) * dxs8[i * ldw + j];
#ifdef DOT_U8S8_512
    __m512 abcd[4]; /* lanes 0..7: ab, 8..15: cd */
    for (int i = 0; i < mr; i++) abcd[i] = _mm512_setzero_ps();
#endif
    int64_t g = 0;
    for (; g < fours; g += 4) {
        __builtin_prefetch(row + 16 * g + MOE_WEIGHT_PREFETCH_BYTES_Q4, 0, 3);
#ifdef DOT_U8S8_512
        const __m512i b = _mm512_loadu_si512(row + 16 * g), m4 = _mm512_set1_epi8(0x0f);
        const __m512i lo = _mm512_and_si512(b, m4), hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
        const __m512 s = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                               _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(gs + g)))));
        for (int i = 0; i < mr; i++) {
            const int8_t *xi = xq + i * ldq + 32 * g;
            const __m512i d = DOT_U8S8_512(DOT_U8S8_512(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xi)),
                                           hi, _mm512_loadu_si512(xi + 64));
            abcd[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(s, _mm512_loadu_ps(dx4 + i * 4 * ldw + 4 * g)), abcd[i]);
        }
#else
        const __m256 s4 = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(gs + g))));
        const __m256 s0 = _mm256_permutevar8x32_ps(s4, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
        const __m256 s1 = _mm256_permutevar8x32_ps(s4, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3));
        for (int i = 0; i < mr; i++) {
            const int8_t *xi = xq + i * ldq + 32 * g;
            const float *di = dx4 + i * 4 * ldw + 4 * g;
            ab[i] = _mm256_fmadd_ps(IV(q4q8_pair)(row + 16 * g, xi), _mm256_mul_ps(s0, _mm256_loadu_ps(di)), ab[i]);
            cd[i] = _mm256_fmadd_ps(IV(q4q8_pair)(row + 16 * g + 32, xi + 32), _mm256_mul_ps(s1, _mm256_loadu_ps(di + 8)), cd[i]);
        }
#endif
    }
    for (; g < G; g++) { /* the row's last G mod 4 groups */
        const __m256i u = IV(q4_nibbles)(row + 16 * g);
        for (int i = 0; i < mr; i++)
            rest[i] = _mm256_fmadd_ps(IV(q4q8_group)(u, xq + i * ldq + 32 * g), _mm256_set1_ps(_cvtsh_ss(gs[g]) * xd[i * ldd + g]), rest[i]);
    }
#ifdef DOT_U8S8_512
    for (int i = 0; i < mr; i++) {
        ab[i] = _mm512_castps512_ps256(abcd[i]);
        cd[i] = _mm512_extractf32x8_ps(abcd[i], 1);
    }
#endif
    for (int i = 0; i < mr; i++)
        out[i] = IV(hsum8)(_mm256_add_ps(_mm256_add_ps(ab[i], cd[i]), rest[i])) - (IV(hsum8)(cor[i]) + cor_tail[i]);
}

static ATTR void IV(gemv_q4q8)(const moe_weight *w, int64_t n0, int64_t n1, const int8_t *xq, const float *xd,
                                int64_t m, float *y, int64_t ldy, int accumulate) {
    const int64_t G = moe_weight_scales_per_row(MOE_WEIGHT_Q4, w->cols);
    const __m256i ones8 = _mm256_set1_epi8(1);
    for (int64_t i0 = 0; i0 < m; i0 += MOE_WEIGHT_DECODE_MAX_M) { /* x rows: at most the GEMV limit at a time */
        const int64_t mb = m - i0 < MOE_WEIGHT_DECODE_MAX_M ? m - i0 : MOE_WEIGHT_DECODE_MAX_M;
        for (int64_t w0 = 0; w0 < G; w0 += Q4Q8_WINDOW_GROUPS) {
            const int64_t gw = G - w0 < Q4Q8_WINDOW_GROUPS ? G - w0 : Q4Q8_WINDOW_GROUPS;
            const int add = accumulate || w0 > 0;
            float dx4[MOE_WEIGHT_DECODE_MAX_M * 4 * Q4Q8_WINDOW_GROUPS], dxs8[MOE_WEIGHT_DECODE_MAX_M * Q4Q8_WINDOW_GROUPS];
            const int64_t fours = G - G % 4 - w0 < gw ? G - G % 4 - w0 : gw; /* window groups in whole fours */
            for (int64_t i = 0; i < mb; i++) {
                const int8_t *xb = xq + (i0 + i) * 32 * G + 32 * w0;
                const float *d = xd + (i0 + i) * G + w0;
                float *sums = dxs8 + i * Q4Q8_WINDOW_GROUPS;
                int64_t g = 0;
                for (; g < fours; g += 4) { /* lanes 0..3 / 4..7 of ab: groups a / b (both halves) */
                    const __m256i ab = _mm256_add_epi32(DOT_U8S8(ones8, _mm256_loadu_si256((const __m256i *)(xb + 32 * g))),
                                                        DOT_U8S8(ones8, _mm256_loadu_si256((const __m256i *)(xb + 32 * g + 64))));
                    const __m256i cd = _mm256_add_epi32(DOT_U8S8(ones8, _mm256_loadu_si256((const __m256i *)(xb + 32 * g + 32))),
                                                        DOT_U8S8(ones8, _mm256_loadu_si256((const __m256i *)(xb + 32 * g + 96))));
                    __m256i h = _mm256_hadd_epi32(ab, cd);
                    h = _mm256_hadd_epi32(h, h); /* [a c a c | b d b d] */
                    sums[g] = (float)(8 * _mm256_extract_epi32(h, 0));
                    sums[g + 1] = (float)(8 * _mm256_extract_epi32(h, 4));
                    sums[g + 2] = (float)(8 * _mm256_extract_epi32(h, 1));
                    sums[g + 3] = (float)(8 * _mm256_extract_epi32(h, 5));
                }
                for (; g < gw; g++) { /* the row's last G mod 4 groups, 32 bytes each */
                    const __m256i s = DOT_U8S8(ones8, _mm256_loadu_si256((const __m256i *)(xb + 32 * g)));
                    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
                    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
                    sums[g] = (float)(8 * _mm_cvtsi128_si32(h));
                }
                for (g = 0; g < gw; g++) {
                    sums[g] *= d[g];
                    for (int r = 0; r < 4; r++) dx4[i * 4 * Q4Q8_WINDOW_GROUPS + 4 * g + r] = d[g];
                }
            }
            for (int64_t n = n0; n < n1; n++) {
                const uint8_t *row = (const uint8_t *)w->data + n * 16 * G + 16 * w0;
                const uint16_t *gs = (const uint16_t *)w->scales + n * G + w0;
                for (int64_t i1 = 0; i1 < mb; i1 += 4) {
                    float out[4];
                    const int64_t i = i0 + i1, mr = mb - i1 < 4 ? mb - i1 : 4;
                    const int8_t *xi = xq + i * 32 * G + 32 * w0;
                    const float *di = xd + i * G + w0, *d4 = dx4 + i1 * 4 * Q4Q8_WINDOW_GROUPS, *s8 = dxs8 + i1 * Q4Q8_WINDOW_GROUPS;
                    switch (mr) {
                    case 1: IV(q4q8_rows)(1, row, gs, gw, fours, xi, 32 * G, di, G, d4, s8, Q4Q8_WINDOW_GROUPS, out); break;
                    case 2: IV(q4q8_rows)(2, row, gs, gw, fours, xi, 32 * G, di, G, d4, s8, Q4Q8_WINDOW_GROUPS, out); break;
                    case 3: IV(q4q8_rows)(3, row, gs, gw, fours, xi, 32 * G, di, G, d4, s8, Q4Q8_WINDOW_GROUPS, out); break;
                    default: IV(q4q8_rows)(4, row, gs, gw, fours, xi, 32 * G, di, G, d4, s8, Q4Q8_WINDOW_GROUPS, out); break;
                    }
                    for (int64_t r = 0; r < mr; r++) {
                        float *yi = y + (i + r) * ldy + n;
                        *yi = add ? *yi + out[r] : out[r];
                    }
                }
            }
        }
    }
}

/* Q8 × Q8 activation blocks, integer dot products per group of 32 (as llama.cpp's AVX2 Q8_0 ×
 * Q8_0, with one weight scale per row): DOT_U8S8(|q_w|, sign(q_x, q_w)) gives 8 int32
 * lanes (pair sums |·| ≤ 2·127·127), converted and FMA'd with d_x;
 * the row scale multiplies the sum. A last partial group is read through a zero-padded copy
 * (the row ends there). Per x row two accumulators (even / odd groups), the same code for
 * every x-row count. */
static inline __attribute__((always_inline)) ATTR void IV(q8q8_rows)(const int mr, const int8_t *row, int64_t K,
                                                                     const int8_t *xq, int64_t ldq,
                                                                     const float *xd, int64_t ldd, float *out) {
    __m256 acc[4][2];
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const int64_t full = K / 32, G = (K + 31) / 32;
    int64_t g = 0;
#ifdef DOT_U8S8_512
    __m512 accw[4]; /* lanes 0..7: acc[i][0], 8..15: acc[i][1] */
    for (int i = 0; i < mr; i++) accw[i] = _mm512_setzero_ps();
    for (; g + 2 <= full; g += 2) {
        const __m512i w = _mm512_loadu_si512(row + 32 * g);
        __builtin_prefetch(row + 32 * g + MOE_WEIGHT_PREFETCH_BYTES_Q8, 0, 3);
        const __m512i aw = _mm512_abs_epi8(w);
        const __mmask64 neg = _mm512_movepi8_mask(w);
        for (int i = 0; i < mr; i++) {
            const __m512i x = _mm512_loadu_si512(xq + i * ldq + 32 * g);
            /* x negated where w < 0 (where w = 0, |w| = 0 zeroes the product as sign() would) */
            const __m512i sx = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
            const __m512 d = _mm512_cvtepi32_ps(DOT_U8S8_512(_mm512_setzero_si512(), aw, sx));
            const __m512 sv = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_broadcast_ss(xd + i * ldd + g)),
                                                 _mm256_broadcast_ss(xd + i * ldd + g + 1), 1);
            accw[i] = _mm512_fmadd_ps(d, sv, accw[i]);
        }
    }
    for (int i = 0; i < mr; i++) { /* the rest (g even from here) continues each half in order */
        acc[i][0] = _mm512_castps512_ps256(accw[i]);
        acc[i][1] = _mm512_extractf32x8_ps(accw[i], 1);
    }
#endif
    for (; g < G; g++) {
        __m256i w;
        if (g < full) {
            w = _mm256_loadu_si256((const __m256i *)(row + 32 * g));
            __builtin_prefetch(row + 32 * g + MOE_WEIGHT_PREFETCH_BYTES_Q8, 0, 3);
        } else {
            int8_t pad[32] = {0};
            memcpy(pad, row + 32 * g, (size_t)(K - 32 * g));
            w = _mm256_loadu_si256((const __m256i *)pad);
        }
        const __m256i aw = _mm256_sign_epi8(w, w);
        for (int i = 0; i < mr; i++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + i * ldq + 32 * g));
            const __m256i p = DOT_U8S8(aw, _mm256_sign_epi8(x, w));
            acc[i][g & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(xd + i * ldd + g), acc[i][g & 1]);
        }
    }
    for (int i = 0; i < mr; i++) out[i] = IV(hsum8)(_mm256_add_ps(acc[i][0], acc[i][1]));
}

static ATTR void IV(gemv_q8q8)(const moe_weight *w, int64_t n0, int64_t n1, const int8_t *xq, const float *xd,
                                int64_t m, float *y, int64_t ldy, int accumulate) {
    const int64_t K = w->cols, G = (K + 31) / 32;
    for (int64_t n = n0; n < n1; n++) {
        const int8_t *row = (const int8_t *)w->data + n * K;
        const float rs = ((const float *)w->scales)[n];
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            float out[4];
            const int64_t mr = m - i0 < 4 ? m - i0 : 4;
            const int8_t *xi = xq + i0 * 32 * G;
            const float *di = xd + i0 * G;
            switch (mr) {
            case 1: IV(q8q8_rows)(1, row, K, xi, 32 * G, di, G, out); break;
            case 2: IV(q8q8_rows)(2, row, K, xi, 32 * G, di, G, out); break;
            case 3: IV(q8q8_rows)(3, row, K, xi, 32 * G, di, G, out); break;
            default: IV(q8q8_rows)(4, row, K, xi, 32 * G, di, G, out); break;
            }
            for (int64_t r = 0; r < mr; r++) {
                float *yi = y + (i0 + r) * ldy + n;
                *yi = accumulate ? *yi + out[r] * rs : out[r] * rs;
            }
        }
    }
}
