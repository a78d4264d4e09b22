#include "moe_layout.h"
#include "internal.h"
#include <string.h>

void moe_copy_block(float *dst, const float *src, int64_t rows, int64_t width,
                    int64_t dst_stride, int64_t dst_offset, int64_t src_stride, int64_t src_offset,
                    int accumulate) {
#pragma omp parallel for schedule(static) if (rows * width >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        float *d = dst + r * dst_stride + dst_offset;
        const float *s = src + r * src_stride + src_offset;
        if (accumulate) {
            for (int64_t j = 0; j < width; j++) d[j] += s[j];
        } else {
            memcpy(d, s, sizeof(float) * (size_t)width);
        }
    }
}

/* From this many bytes zeroing is split over the threads; pieces of MOE_ZERO_PIECE bytes. */
#define MOE_ZERO_PARALLEL_MIN (1 << 19)
#define MOE_ZERO_PIECE (1 << 17)

void moe_zero_bytes(void *p, int64_t bytes) {
    if (bytes <= 0) return;
    const int nt = moe_threads_current();
    const int64_t pieces = (bytes + MOE_ZERO_PIECE - 1) / MOE_ZERO_PIECE;
    char *base = p;
    MOE_PARALLEL_FOR(i, pieces, bytes >= MOE_ZERO_PARALLEL_MIN && nt > 1 && !moe_in_region(), moe_team(nt),
        const int64_t lo = i * MOE_ZERO_PIECE, hi = lo + MOE_ZERO_PIECE < bytes ? lo + MOE_ZERO_PIECE : bytes;
        memset(base + lo, 0, (size_t)(hi - lo));
    );
}
