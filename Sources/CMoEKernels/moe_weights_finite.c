/* The first non-finite element of a float32, bfloat16 or float16 array (checkpoint checks at
 * load). See include/moe_weights.h. */
#include "moe_weights.h"
#include <stdint.h>

typedef uint16_t u16_unaligned __attribute__((aligned(1)));
typedef uint32_t u32_unaligned __attribute__((aligned(1)));

/* Per chunk a branch-free flag (vectorised; AVX2 clone chosen at run time), the index looked
 * up only in a flagged chunk. */
#define FINITE_CHUNK 2048

__attribute__((target_clones("avx2", "default")))
static int64_t first_bad16(const u16_unaligned *p, int64_t n, uint16_t mask) {
    for (int64_t i0 = 0; i0 < n; i0 += FINITE_CHUNK) {
        const int64_t len = n - i0 < FINITE_CHUNK ? n - i0 : FINITE_CHUNK;
        int bad = 0;
        for (int64_t j = 0; j < len; j++) bad |= (p[i0 + j] & mask) == mask;
        if (bad)
            for (int64_t j = 0; j < len; j++)
                if ((p[i0 + j] & mask) == mask) return i0 + j;
    }
    return -1;
}

__attribute__((target_clones("avx2", "default")))
static int64_t first_bad32(const u32_unaligned *p, int64_t n) {
    const uint32_t mask = 0x7f800000u;
    for (int64_t i0 = 0; i0 < n; i0 += FINITE_CHUNK) {
        const int64_t len = n - i0 < FINITE_CHUNK ? n - i0 : FINITE_CHUNK;
        int bad = 0;
        for (int64_t j = 0; j < len; j++) bad |= (p[i0 + j] & mask) == mask;
        if (bad)
            for (int64_t j = 0; j < len; j++)
                if ((p[i0 + j] & mask) == mask) return i0 + j;
    }
    return -1;
}

int64_t moe_weight_find_nonfinite(const void *data, int format, int64_t n) {
    switch (format) {
    case MOE_WEIGHT_F32: return first_bad32((const u32_unaligned *)data, n);
    case MOE_WEIGHT_BF16: return first_bad16((const u16_unaligned *)data, n, 0x7f80);
    case MOE_WEIGHT_F16: return first_bad16((const u16_unaligned *)data, n, 0x7c00);
    default: return -1;
    }
}
