/* CONV_2D and DEPTHWISE_CONV_2D (NHWC), int8 per-channel and float32, as TFLM's reference kernels.
 *
 * Padding is the top/left amount TFLM's ComputePaddingHeightWidth gives;
 * taps outside the image are skipped (zero padding in real terms).
 * Geometry: in[b][ih][iw][ic], conv filter[oc][fh][fw][ic/groups],
 * depthwise filter[0][fh][fw][ic*mult], out[b][oh][ow][oc].
 */
#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"

void tfc_conv_s8(const int8_t *in, const int8_t *w, const int32_t *bias, int8_t *out, const tfc_conv_geom *g,
                 int32_t in_offset, int32_t out_offset, const int32_t *mult, const int32_t *shift, int32_t act_min,
                 int32_t act_max) {
    const int filter_in_depth = g->filter_in_depth;
    const int groups = g->in_depth / filter_in_depth;
    const int filters_per_group = g->out_depth / groups;
    for (int b = 0; b < g->batches; ++b) {
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int iy0 = oy * g->stride_h - g->pad_h;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int ix0 = ox * g->stride_w - g->pad_w;
                for (int oc = 0; oc < g->out_depth; ++oc) {
                    const int group = oc / filters_per_group;
                    int32_t acc = 0;
                    for (int fy = 0; fy < g->filter_h; ++fy) {
                        const int iy = iy0 + g->dilation_h * fy;
                        if (iy < 0 || iy >= g->in_h) continue;
                        for (int fx = 0; fx < g->filter_w; ++fx) {
                            const int ix = ix0 + g->dilation_w * fx;
                            if (ix < 0 || ix >= g->in_w) continue;
                            const int8_t *px = in + ((b * g->in_h + iy) * g->in_w + ix) * g->in_depth + group * filter_in_depth;
                            const int8_t *wp = w + ((oc * g->filter_h + fy) * g->filter_w + fx) * filter_in_depth;
                            for (int ic = 0; ic < filter_in_depth; ++ic) acc += (int32_t)wp[ic] * ((int32_t)px[ic] + in_offset);
                        }
                    }
                    if (bias) acc += bias[oc];
                    int32_t v = tfc_mbqm(acc, mult[oc], (int)shift[oc]) + out_offset;
                    out[((b * g->out_h + oy) * g->out_w + ox) * g->out_depth + oc] = (int8_t)tfc_clamp(v, act_min, act_max);
                }
            }
        }
    }
}

void tfc_conv_f32(const float *in, const float *w, const float *bias, float *out, const tfc_conv_geom *g, float act_min,
                  float act_max) {
    const int filter_in_depth = g->filter_in_depth;
    const int groups = g->in_depth / filter_in_depth;
    const int filters_per_group = g->out_depth / groups;
    for (int b = 0; b < g->batches; ++b) {
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int iy0 = oy * g->stride_h - g->pad_h;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int ix0 = ox * g->stride_w - g->pad_w;
                for (int oc = 0; oc < g->out_depth; ++oc) {
                    const int group = oc / filters_per_group;
                    float total = 0.f;
                    for (int fy = 0; fy < g->filter_h; ++fy) {
                        const int iy = iy0 + g->dilation_h * fy;
                        if (iy < 0 || iy >= g->in_h) continue;
                        for (int fx = 0; fx < g->filter_w; ++fx) {
                            const int ix = ix0 + g->dilation_w * fx;
                            if (ix < 0 || ix >= g->in_w) continue;
                            const float *px = in + ((b * g->in_h + iy) * g->in_w + ix) * g->in_depth + group * filter_in_depth;
                            const float *wp = w + ((oc * g->filter_h + fy) * g->filter_w + fx) * filter_in_depth;
                            for (int ic = 0; ic < filter_in_depth; ++ic) total += px[ic] * wp[ic];
                        }
                    }
                    float v = total + (bias ? bias[oc] : 0.0f);
                    v = v < act_min ? act_min : v;
                    out[((b * g->out_h + oy) * g->out_w + ox) * g->out_depth + oc] = v > act_max ? act_max : v;
                }
            }
        }
    }
}

void tfc_depthwise_s8(const int8_t *in, const int8_t *w, const int32_t *bias, int8_t *out, const tfc_conv_geom *g,
                      int depth_multiplier, int32_t in_offset, int32_t out_offset, const int32_t *mult,
                      const int32_t *shift, int32_t act_min, int32_t act_max) {
    for (int b = 0; b < g->batches; ++b) {
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int iy0 = oy * g->stride_h - g->pad_h;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int ix0 = ox * g->stride_w - g->pad_w;
                for (int ic = 0; ic < g->in_depth; ++ic) {
                    for (int m = 0; m < depth_multiplier; ++m) {
                        const int oc = m + ic * depth_multiplier;
                        int32_t acc = 0;
                        for (int fy = 0; fy < g->filter_h; ++fy) {
                            const int iy = iy0 + g->dilation_h * fy;
                            if (iy < 0 || iy >= g->in_h) continue;
                            for (int fx = 0; fx < g->filter_w; ++fx) {
                                const int ix = ix0 + g->dilation_w * fx;
                                if (ix < 0 || ix >= g->in_w) continue;
                                int32_t x = in[((b * g->in_h + iy) * g->in_w + ix) * g->in_depth + ic];
                                int32_t f = w[(fy * g->filter_w + fx) * g->out_depth + oc];
                                acc += f * (x + in_offset);
                            }
                        }
                        if (bias) acc += bias[oc];
                        int32_t v = tfc_mbqm(acc, mult[oc], (int)shift[oc]) + out_offset;
                        out[((b * g->out_h + oy) * g->out_w + ox) * g->out_depth + oc] = (int8_t)tfc_clamp(v, act_min, act_max);
                    }
                }
            }
        }
    }
}

void tfc_depthwise_f32(const float *in, const float *w, const float *bias, float *out, const tfc_conv_geom *g,
                       int depth_multiplier, float act_min, float act_max) {
    for (int b = 0; b < g->batches; ++b) {
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int iy0 = oy * g->stride_h - g->pad_h;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int ix0 = ox * g->stride_w - g->pad_w;
                for (int ic = 0; ic < g->in_depth; ++ic) {
                    for (int m = 0; m < depth_multiplier; ++m) {
                        const int oc = m + ic * depth_multiplier;
                        float total = 0.f;
                        for (int fy = 0; fy < g->filter_h; ++fy) {
                            const int iy = iy0 + g->dilation_h * fy;
                            if (iy < 0 || iy >= g->in_h) continue;
                            for (int fx = 0; fx < g->filter_w; ++fx) {
                                const int ix = ix0 + g->dilation_w * fx;
                                if (ix < 0 || ix >= g->in_w) continue;
                                total += in[((b * g->in_h + iy) * g->in_w + ix) * g->in_depth + ic] *
                                         w[(fy * g->filter_w + fx) * g->out_depth + oc];
                            }
                        }
                        float v = total + (bias ? bias[oc] : 0.0f);
                        v = v < act_min ? act_min : v;
                        out[((b * g->out_h + oy) * g->out_w + ox) * g->out_depth + oc] = v > act_max ? act_max : v;
                    }
                }
            }
        }
    }
}

/* In-place DEPTHWISE_CONV_2D with multiplier 1 (MCUNet/TinyEngine's trick): output channel c depends only on
 * input channel c, so each channel's input plane is copied to `plane` (in_h * in_w elements) and its outputs
 * are written over the shared buffer. Positions of channel c (index = c mod depth) hold no other channel's
 * data, and a smaller output (stride > 1) only lands on positions already consumed, so the whole output
 * tensor never needs memory of its own. Same arithmetic as tfc_depthwise_*: the same bytes out. */
#define TFC_DW_INPLACE(T, ACC_T, INIT, TAP, FINISH)                                                           \
    const int plane_n = g->in_h * g->in_w, depth = g->in_depth;                                             \
    for (int b = 0; b < g->batches; ++b) {                                                                  \
        for (int c = 0; c < depth; ++c) {                                                                   \
            for (int p = 0; p < plane_n; ++p) plane[p] = buf[((size_t)b * plane_n + p) * depth + c];       \
            for (int oy = 0; oy < g->out_h; ++oy) {                                                         \
                const int iy0 = oy * g->stride_h - g->pad_h;                                                \
                for (int ox = 0; ox < g->out_w; ++ox) {                                                     \
                    const int ix0 = ox * g->stride_w - g->pad_w;                                            \
                    ACC_T acc = INIT;                                                                       \
                    for (int fy = 0; fy < g->filter_h; ++fy) {                                              \
                        const int iy = iy0 + g->dilation_h * fy;                                            \
                        if (iy < 0 || iy >= g->in_h) continue;                                              \
                        for (int fx = 0; fx < g->filter_w; ++fx) {                                          \
                            const int ix = ix0 + g->dilation_w * fx;                                        \
                            if (ix < 0 || ix >= g->in_w) continue;                                          \
                            const T x = plane[iy * g->in_w + ix];                                           \
                            const T f = w[(fy * g->filter_w + fx) * depth + c];                             \
                            TAP;                                                                            \
                        }                                                                                   \
                    }                                                                                       \
                    buf[(((size_t)b * g->out_h + oy) * g->out_w + ox) * depth + c] = FINISH;                \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }

static inline int8_t tfc_dw_finish_s8(int32_t acc, const int32_t *bias, int c, int32_t out_offset, const int32_t *mult,
                                      const int32_t *shift, int32_t act_min, int32_t act_max) {
    if (bias) acc += bias[c];
    return (int8_t)tfc_clamp(tfc_mbqm(acc, mult[c], (int)shift[c]) + out_offset, act_min, act_max);
}

static inline float tfc_dw_finish_f32(float total, const float *bias, int c, float act_min, float act_max) {
    float v = total + (bias ? bias[c] : 0.0f);
    v = v < act_min ? act_min : v;
    return v > act_max ? act_max : v;
}

void tfc_depthwise_inplace_s8(int8_t *buf, const int8_t *w, const int32_t *bias, const tfc_conv_geom *g,
                              int32_t in_offset, int32_t out_offset, const int32_t *mult, const int32_t *shift,
                              int32_t act_min, int32_t act_max, int8_t *plane) {
    TFC_DW_INPLACE(int8_t, int32_t, 0, acc += (int32_t)f * ((int32_t)x + in_offset),
                   tfc_dw_finish_s8(acc, bias, c, out_offset, mult, shift, act_min, act_max))
}

void tfc_depthwise_inplace_f32(float *buf, const float *w, const float *bias, const tfc_conv_geom *g, float act_min,
                               float act_max, float *plane) {
    TFC_DW_INPLACE(float, float, 0.f, acc += x * f, tfc_dw_finish_f32(acc, bias, c, act_min, act_max))
}
