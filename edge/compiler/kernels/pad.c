/* PAD / PADV2 (constant padding, any type by element size) and RESIZE_NEAREST_NEIGHBOR (a gather through
 * index tables the compiler computed with TFLM's float32 arithmetic). */
#include <string.h>

#include "tfc_kernels.h"

void tfc_pad(const void *in, void *out, const int32_t *in_dims, const int32_t *before, const int32_t *out_dims,
             int elem_size, const void *pad_value) {
    uint8_t *o = (uint8_t *)out;
    const uint8_t *x = (const uint8_t *)in;
    int32_t n_out = 1;
    for (int d = 0; d < 6; ++d) n_out *= out_dims[d];
    for (int32_t k = 0; k < n_out; ++k) memcpy(o + (size_t)k * elem_size, pad_value, (size_t)elem_size);
    int32_t idx[5] = {0, 0, 0, 0, 0};
    const size_t row = (size_t)in_dims[5] * elem_size;
    for (;;) {
        int32_t in_off = 0, out_off = 0;
        for (int d = 0; d < 5; ++d) {
            in_off = in_off * in_dims[d] + idx[d];
            out_off = out_off * out_dims[d] + idx[d] + before[d];
        }
        memcpy(o + ((size_t)out_off * out_dims[5] + before[5]) * elem_size, x + (size_t)in_off * row, row);
        int d = 4;
        while (d >= 0 && ++idx[d] >= in_dims[d]) idx[d--] = 0;
        if (d < 0) break;
    }
}

void tfc_resize_nearest(const void *in, void *out, int batches, int in_h, int in_w, int depth, int out_h, int out_w,
                        const int32_t *y_map, const int32_t *x_map, int elem_size) {
    const uint8_t *x = (const uint8_t *)in;
    uint8_t *o = (uint8_t *)out;
    const size_t px = (size_t)depth * elem_size;
    for (int b = 0; b < batches; ++b) {
        const uint8_t *img = x + (size_t)b * in_h * in_w * px;
        for (int y = 0; y < out_h; ++y)
            for (int xx = 0; xx < out_w; ++xx) {
                memcpy(o, img + ((size_t)y_map[y] * in_w + x_map[xx]) * px, px);
                o += px;
            }
    }
}
