/* CONV_2D and DEPTHWISE_CONV_2D (NHWC), int8 per-channel and float32, as TFLM's reference kernels.
 *
 * Padding is the top/left amount TFLM's ComputePaddingHeightWidth gives;
 * taps outside the image are skipped (zero padding in real terms).
 * Geometry: in[b][ih][iw][ic], conv filter[oc][fh][fw][ic/groups],
 * depthwise filter[0][fh][fw][ic*mult], out[b][oh][ow][oc].
 */
#include <string.h>

#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"

/* Sum over a window that lies wholly inside the image, without the input offset (folded into bias_full). */
static int32_t tfc_conv_window_s8(const int8_t *in, const int8_t *w, const tfc_conv_geom *g, int b, int iy0, int ix0,
                                  int oc, int group) {
    const int fid = g->filter_in_depth;
    int32_t acc = 0;
    for (int fy = 0; fy < g->filter_h; ++fy) {
        const int8_t *row = in + ((b * g->in_h + iy0 + g->dilation_h * fy) * g->in_w + ix0) * g->in_depth + group * fid;
        const int8_t *wrow = w + (oc * g->filter_h + fy) * g->filter_w * fid;
        if (g->dilation_w == 1 && fid == g->in_depth) {
            acc += tfc_dot_s8(row, wrow, g->filter_w * fid); /* the filter row is one contiguous span */
        } else {
            for (int fx = 0; fx < g->filter_w; ++fx) acc += tfc_dot_s8(row + g->dilation_w * fx * g->in_depth, wrow + fx * fid, fid);
        }
    }
    return acc;
}

static inline int8_t tfc_requant_s8(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset, int32_t act_min,
                                    int32_t act_max) {
    return (int8_t)tfc_clamp(tfc_mbqm(acc, mult, (int)shift) + out_offset, act_min, act_max);
}

/* An all-inside window of an ungrouped conv: the patch (the pixel itself for 1x1 filters, else gathered into
 * `patch_buf`, fh * fw * in_depth bytes) against every output channel's contiguous filter, two at a time. */
static void tfc_conv_patch_s8(const int8_t *in, const int8_t *w, const int32_t *bias_full, int8_t *out_px,
                              const tfc_conv_geom *g, int b, int iy0, int ix0, int8_t *patch_buf, const int32_t *mult,
                              const int32_t *shift, int32_t out_offset, int32_t act_min, int32_t act_max) {
    const int k = g->filter_h * g->filter_w * g->in_depth;
    const int8_t *patch = in + ((b * g->in_h + iy0) * g->in_w + ix0) * g->in_depth;
    if (g->filter_h != 1 || g->filter_w != 1) {
        int8_t *dst = patch_buf;
        for (int fy = 0; fy < g->filter_h; ++fy) {
            const int8_t *row = in + ((b * g->in_h + iy0 + g->dilation_h * fy) * g->in_w + ix0) * g->in_depth;
            if (g->dilation_w == 1) {
                memcpy(dst, row, (size_t)g->filter_w * g->in_depth);
                dst += g->filter_w * g->in_depth;
            } else {
                for (int fx = 0; fx < g->filter_w; ++fx, dst += g->in_depth) memcpy(dst, row + g->dilation_w * fx * g->in_depth, (size_t)g->in_depth);
            }
        }
        patch = patch_buf;
    }
    int oc = 0;
    for (; oc + 2 <= g->out_depth; oc += 2) {
        int32_t a0, a1;
        tfc_dot2_s8(patch, w + oc * k, w + (oc + 1) * k, k, &a0, &a1);
        out_px[oc] = tfc_requant_s8(bias_full[oc] + a0, mult[oc], shift[oc], out_offset, act_min, act_max);
        out_px[oc + 1] = tfc_requant_s8(bias_full[oc + 1] + a1, mult[oc + 1], shift[oc + 1], out_offset, act_min, act_max);
    }
    for (; oc < g->out_depth; ++oc)
        out_px[oc] = tfc_requant_s8(bias_full[oc] + tfc_dot_s8(patch, w + oc * k, k), mult[oc], shift[oc], out_offset, act_min, act_max);
}

/* bias_full[oc] = bias[oc] + in_offset * sum(filter[oc]): the accumulator start of an all-inside window
 * (NULL: no fast path). Border windows skip the taps outside, as TFLM, and add the offset per tap.
 * patch_buf: fh * fw * in_depth bytes of scratch for ungrouped filters larger than 1x1 (else unused). */
void tfc_conv_s8(const int8_t *in, const int8_t *w, const int32_t *bias, const int32_t *bias_full, int8_t *out,
                 const tfc_conv_geom *geom, int32_t in_offset, int32_t out_offset, const int32_t *mult,
                 const int32_t *shift, int32_t act_min, int32_t act_max, int8_t *patch_buf) {
    const tfc_conv_geom local = *geom; /* int8/float stores may alias *geom; a local copy stays in registers */
    const tfc_conv_geom *g = &local;
    const int filter_in_depth = g->filter_in_depth;
    const int groups = g->in_depth / filter_in_depth;
    const int filters_per_group = g->out_depth / groups;
    for (int b = 0; b < g->batches; ++b) {
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int iy0 = oy * g->stride_h - g->pad_h;
            const int rows_inside = iy0 >= 0 && iy0 + g->dilation_h * (g->filter_h - 1) < g->in_h;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int ix0 = ox * g->stride_w - g->pad_w;
                const int inside = rows_inside && ix0 >= 0 && ix0 + g->dilation_w * (g->filter_w - 1) < g->in_w;
                if (inside && bias_full && groups == 1 && (patch_buf || (g->filter_h == 1 && g->filter_w == 1))) {
                    tfc_conv_patch_s8(in, w, bias_full, out + ((b * g->out_h + oy) * g->out_w + ox) * g->out_depth, g, b,
                                      iy0, ix0, patch_buf, mult, shift, out_offset, act_min, act_max);
                    continue;
                }
                for (int oc = 0; oc < g->out_depth; ++oc) {
                    const int group = oc / filters_per_group;
                    if (inside && bias_full) {
                        int32_t acc = bias_full[oc] + tfc_conv_window_s8(in, w, g, b, iy0, ix0, oc, group);
                        int32_t v = tfc_mbqm(acc, mult[oc], (int)shift[oc]) + out_offset;
                        out[((b * g->out_h + oy) * g->out_w + ox) * g->out_depth + oc] = (int8_t)tfc_clamp(v, act_min, act_max);
                        continue;
                    }
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

void tfc_conv_f32(const float *in, const float *w, const float *bias, float *out, const tfc_conv_geom *geom, float act_min,
                  float act_max) {
    const tfc_conv_geom local = *geom; /* int8/float stores may alias *geom; a local copy stays in registers */
    const tfc_conv_geom *g = &local;
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

/* A depthwise window wholly inside the image: taps at fixed strides from the window's first tap (`x`, step
 * `x_col` per column and `x_row` per row) against the filter column of one output channel (step `w_col`). */
static inline int32_t tfc_dw_window_s8(const int8_t *x, int x_col, int x_row, const int8_t *w, int w_col, int fh, int fw) {
    int32_t acc = 0;
    for (int fy = 0; fy < fh; ++fy, x += x_row, w += fw * w_col) {
        const int8_t *xp = x;
        const int8_t *wp = w;
        for (int fx = 0; fx < fw; ++fx, xp += x_col, wp += w_col) acc += (int32_t)*wp * (int32_t)*xp;
    }
    return acc;
}

/* bias_full[oc] = bias[oc] + in_offset * sum(filter[..][oc]), the start of an all-inside window (NULL: none). */
void tfc_depthwise_s8(const int8_t *in, const int8_t *w, const int32_t *bias, const int32_t *bias_full, int8_t *out,
                      const tfc_conv_geom *geom, int depth_multiplier, int32_t in_offset, int32_t out_offset,
                      const int32_t *mult, const int32_t *shift, int32_t act_min, int32_t act_max) {
    const tfc_conv_geom local = *geom; /* int8/float stores may alias *geom; a local copy stays in registers */
    const tfc_conv_geom *g = &local;
    for (int b = 0; b < g->batches; ++b) {
        for (int oy = 0; oy < g->out_h; ++oy) {
            const int iy0 = oy * g->stride_h - g->pad_h;
            const int rows_inside = iy0 >= 0 && iy0 + g->dilation_h * (g->filter_h - 1) < g->in_h;
            for (int ox = 0; ox < g->out_w; ++ox) {
                const int ix0 = ox * g->stride_w - g->pad_w;
                const int inside = bias_full && rows_inside && ix0 >= 0 && ix0 + g->dilation_w * (g->filter_w - 1) < g->in_w;
                int fy0 = 0, fy1 = g->filter_h, fx0 = 0, fx1 = g->filter_w; /* the taps that land inside */
                while (fy0 < fy1 && iy0 + g->dilation_h * fy0 < 0) ++fy0;
                while (fy1 > fy0 && iy0 + g->dilation_h * (fy1 - 1) >= g->in_h) --fy1;
                while (fx0 < fx1 && ix0 + g->dilation_w * fx0 < 0) ++fx0;
                while (fx1 > fx0 && ix0 + g->dilation_w * (fx1 - 1) >= g->in_w) --fx1;
                for (int ic = 0; ic < g->in_depth; ++ic) {
                    for (int m = 0; m < depth_multiplier; ++m) {
                        const int oc = m + ic * depth_multiplier;
                        int32_t acc;
                        if (inside) {
                            const int8_t *x = in + ((b * g->in_h + iy0) * g->in_w + ix0) * g->in_depth + ic;
                            acc = bias_full[oc] + tfc_dw_window_s8(x, g->dilation_w * g->in_depth, g->dilation_h * g->in_w * g->in_depth,
                                                                   w + oc, g->out_depth, g->filter_h, g->filter_w);
                        } else { /* border: only the taps inside the image, each with the input offset */
                            acc = 0;
                            for (int fy = fy0; fy < fy1; ++fy) {
                                const int iy = iy0 + g->dilation_h * fy;
                                const int8_t *xrow = in + ((b * g->in_h + iy) * g->in_w) * g->in_depth + ic;
                                const int8_t *wrow = w + fy * g->filter_w * g->out_depth + oc;
                                for (int fx = fx0; fx < fx1; ++fx) {
                                    const int32_t xv = xrow[(ix0 + g->dilation_w * fx) * g->in_depth];
                                    acc += (int32_t)wrow[fx * g->out_depth] * (xv + in_offset);
                                }
                            }
                            if (bias) acc += bias[oc];
                        }
                        int32_t v = tfc_mbqm(acc, mult[oc], (int)shift[oc]) + out_offset;
                        out[((b * g->out_h + oy) * g->out_w + ox) * g->out_depth + oc] = (int8_t)tfc_clamp(v, act_min, act_max);
                    }
                }
            }
        }
    }
}

void tfc_depthwise_f32(const float *in, const float *w, const float *bias, float *out, const tfc_conv_geom *geom,
                       int depth_multiplier, float act_min, float act_max) {
    const tfc_conv_geom local = *geom; /* int8/float stores may alias *geom; a local copy stays in registers */
    const tfc_conv_geom *g = &local;
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

static inline float tfc_dw_finish_f32(float total, const float *bias, int c, float act_min, float act_max) {
    float v = total + (bias ? bias[c] : 0.0f);
    v = v < act_min ? act_min : v;
    return v > act_max ? act_max : v;
}

void tfc_depthwise_inplace_s8(int8_t *buf, const int8_t *w, const int32_t *bias, const int32_t *bias_full,
                              const tfc_conv_geom *geom, int32_t in_offset, int32_t out_offset, const int32_t *mult,
                              const int32_t *shift, int32_t act_min, int32_t act_max, int8_t *plane) {
    const tfc_conv_geom local = *geom; /* int8/float stores may alias *geom; a local copy stays in registers */
    const tfc_conv_geom *g = &local;
    const int plane_n = g->in_h * g->in_w, depth = g->in_depth;
    for (int b = 0; b < g->batches; ++b) {
        for (int c = 0; c < depth; ++c) {
            for (int p = 0; p < plane_n; ++p) plane[p] = buf[((size_t)b * plane_n + p) * depth + c];
            const int k3x3 = g->filter_h == 3 && g->filter_w == 3 && g->dilation_h == 1 && g->dilation_w == 1;
            int32_t w0 = 0, w1 = 0, w2 = 0, w3 = 0, w4 = 0, w5 = 0, w6 = 0, w7 = 0, w8 = 0;
            if (k3x3) {
                w0 = w[c], w1 = w[depth + c], w2 = w[2 * depth + c], w3 = w[3 * depth + c], w4 = w[4 * depth + c];
                w5 = w[5 * depth + c], w6 = w[6 * depth + c], w7 = w[7 * depth + c], w8 = w[8 * depth + c];
            }
            for (int oy = 0; oy < g->out_h; ++oy) {
                const int iy0 = oy * g->stride_h - g->pad_h;
                const int rows_inside = iy0 >= 0 && iy0 + g->dilation_h * (g->filter_h - 1) < g->in_h;
                for (int ox = 0; ox < g->out_w; ++ox) {
                    const int ix0 = ox * g->stride_w - g->pad_w;
                    int32_t acc;
                    const int inside = bias_full && rows_inside && ix0 >= 0 && ix0 + g->dilation_w * (g->filter_w - 1) < g->in_w;
                    if (inside && k3x3) { /* the common 3x3 filter: its nine taps of this channel held in registers */
                        const int8_t *p0 = plane + iy0 * g->in_w + ix0, *p1 = p0 + g->in_w, *p2 = p1 + g->in_w;
                        acc = bias_full[c] + w0 * p0[0] + w1 * p0[1] + w2 * p0[2] + w3 * p1[0] + w4 * p1[1] + w5 * p1[2] +
                              w6 * p2[0] + w7 * p2[1] + w8 * p2[2];
                    } else if (inside) {
                        acc = bias_full[c] + tfc_dw_window_s8(plane + iy0 * g->in_w + ix0, g->dilation_w, g->dilation_h * g->in_w,
                                                              w + c, depth, g->filter_h, g->filter_w);
                    } else {
                        acc = 0;
                        for (int fy = 0; fy < g->filter_h; ++fy) {
                            const int iy = iy0 + g->dilation_h * fy;
                            if (iy < 0 || iy >= g->in_h) continue;
                            for (int fx = 0; fx < g->filter_w; ++fx) {
                                const int ix = ix0 + g->dilation_w * fx;
                                if (ix < 0 || ix >= g->in_w) continue;
                                acc += (int32_t)w[(fy * g->filter_w + fx) * depth + c] * ((int32_t)plane[iy * g->in_w + ix] + in_offset);
                            }
                        }
                        if (bias) acc += bias[c];
                    }
                    buf[(((size_t)b * g->out_h + oy) * g->out_w + ox) * depth + c] =
                        (int8_t)tfc_clamp(tfc_mbqm(acc, mult[c], (int)shift[c]) + out_offset, act_min, act_max);
                }
            }
        }
    }
}

void tfc_depthwise_inplace_f32(float *buf, const float *w, const float *bias, const tfc_conv_geom *geom, float act_min,
                               float act_max, float *plane) {
    const tfc_conv_geom local = *geom; /* int8/float stores may alias *geom; a local copy stays in registers */
    const tfc_conv_geom *g = &local;
    TFC_DW_INPLACE(float, float, 0.f, acc += x * f, tfc_dw_finish_f32(acc, bias, c, act_min, act_max))
}
