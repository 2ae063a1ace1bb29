/* AVERAGE_POOL_2D and MAX_POOL_2D (NHWC), int8 and float32, as TFLM's reference kernels:
 * the window is clipped to the image (padding cells are not counted in the average). */
#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"

#define TFC_POOL_LOOP(...)                                                                                    \
    for (int b = 0; b < g->batches; ++b)                                                                      \
        for (int oy = 0; oy < g->out_h; ++oy)                                                                 \
            for (int ox = 0; ox < g->out_w; ++ox)                                                             \
                for (int c = 0; c < g->out_depth; ++c) {                                                      \
                    const int ix0 = ox * g->stride_w - g->pad_w, iy0 = oy * g->stride_h - g->pad_h;           \
                    const int fx0 = ix0 < 0 ? -ix0 : 0, fy0 = iy0 < 0 ? -iy0 : 0;                             \
                    const int fx1 = g->filter_w < g->in_w - ix0 ? g->filter_w : g->in_w - ix0;                \
                    const int fy1 = g->filter_h < g->in_h - iy0 ? g->filter_h : g->in_h - iy0;                \
                    const int o = ((b * g->out_h + oy) * g->out_w + ox) * g->out_depth + c;                   \
                    __VA_ARGS__                                                                                \
                }
#define TFC_AT(fy, fx) in[((b * g->in_h + iy0 + (fy)) * g->in_w + ix0 + (fx)) * g->in_depth + c]

void tfc_avg_pool_s8(const int8_t *in, int8_t *out, const tfc_conv_geom *geom, int32_t act_min, int32_t act_max) {
    const tfc_conv_geom local = *geom;
    const tfc_conv_geom *g = &local;
    TFC_POOL_LOOP({
        int32_t acc = 0;
        int count = 0;
        for (int fy = fy0; fy < fy1; ++fy)
            for (int fx = fx0; fx < fx1; ++fx) { acc += TFC_AT(fy, fx); ++count; }
        if (count == 0) { out[o] = (int8_t)act_min; continue; }
        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        out[o] = (int8_t)tfc_clamp(acc, act_min, act_max);
    })
}

void tfc_avg_pool_f32(const float *in, float *out, const tfc_conv_geom *geom, float act_min, float act_max) {
    const tfc_conv_geom local = *geom;
    const tfc_conv_geom *g = &local;
    TFC_POOL_LOOP({
        float total = 0.f, count = 0.f;
        for (int fy = fy0; fy < fy1; ++fy)
            for (int fx = fx0; fx < fx1; ++fx) { total += TFC_AT(fy, fx); count += 1.f; }
        float v = count > 0.f ? total / count : 0.f;
        v = v < act_min ? act_min : v;
        out[o] = v > act_max ? act_max : v;
    })
}

void tfc_max_pool_s8(const int8_t *in, int8_t *out, const tfc_conv_geom *geom, int32_t act_min, int32_t act_max) {
    const tfc_conv_geom local = *geom;
    const tfc_conv_geom *g = &local;
    TFC_POOL_LOOP({
        int32_t m = -128;
        for (int fy = fy0; fy < fy1; ++fy)
            for (int fx = fx0; fx < fx1; ++fx) { int32_t v = TFC_AT(fy, fx); m = v > m ? v : m; }
        out[o] = (int8_t)tfc_clamp(m, act_min, act_max);
    })
}

void tfc_max_pool_f32(const float *in, float *out, const tfc_conv_geom *geom, float act_min, float act_max) {
    const tfc_conv_geom local = *geom;
    const tfc_conv_geom *g = &local;
    TFC_POOL_LOOP({
        float m = -3.402823466e38f;
        for (int fy = fy0; fy < fy1; ++fy)
            for (int fx = fx0; fx < fx1; ++fx) { float v = TFC_AT(fy, fx); m = v > m ? v : m; }
        m = m < act_min ? act_min : m;
        out[o] = m > act_max ? act_max : m;
    })
}
