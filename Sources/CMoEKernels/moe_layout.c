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
