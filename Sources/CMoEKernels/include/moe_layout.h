#ifndef MOE_LAYOUT_H
#define MOE_LAYOUT_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Strided block copy, the kernel behind concatenation and splitting along the last axis:
 *   dst[r * dst_stride + dst_offset + j]  (=, or += when accumulate)  src[r * src_stride + src_offset + j]
 * for r < rows, j < width. Forward of split/concat copies; their backward accumulates.
 */
void moe_copy_block(float *dst, const float *src, int64_t rows, int64_t width,
                    int64_t dst_stride, int64_t dst_offset, int64_t src_stride, int64_t src_offset,
                    int accumulate);

/*
 * bytes zero bytes at p (memset), split over the threads when large enough to pay for a
 * parallel region (two threads zero 1–16 MB about twice as fast as one here). Tensors and
 * gradient buffers that start at zero come through this.
 */
void moe_zero_bytes(void *p, int64_t bytes);

#ifdef __cplusplus
}
#endif
#endif
