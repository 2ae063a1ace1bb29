/* tfc_kernels.h - the C99 kernels generated models call (TinyFleet model compiler).
 *
 * Why one header: every exported model includes it, and the emitter copies
 * only the kernel sources a model uses next to it, so flash holds no kernel
 * the model does not run. Kernels are stateless: all memory is passed in
 * (the model's one static arena and its const weights), all constants
 * (multipliers, shifts, clamps) were computed by the compiler exactly as
 * TFLM's Prepare() computes them. Shapes are plain ints.
 */
#ifndef TFC_KERNELS_H
#define TFC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out[b][o] = clamp(mbqm(sum_d w[o][d] * (in[b][d] + in_offset) + bias[o], mult[o|0], shift[o|0]) + out_offset). */
void tfc_fully_connected_s8(const int8_t *in, const int8_t *w, const int32_t *bias, int8_t *out, int batches,
                            int accum_depth, int out_depth, int32_t in_offset, int32_t out_offset,
                            const int32_t *mult, const int32_t *shift, int per_channel, int32_t act_min,
                            int32_t act_max);
void tfc_fully_connected_f32(const float *in, const float *w, const float *bias, float *out, int batches,
                             int accum_depth, int out_depth, float act_min, float act_max);

/* Elementwise int8 activations with TFLM's fixed-point (gemmlowp) tanh and logistic. */
void tfc_tanh_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t radius, int32_t mult, int shift);
void tfc_tanh_f32(const float *in, float *out, int n);

/* Softmax over the last dimension (depth) of outer rows. */
void tfc_softmax_s8(const int8_t *in, int8_t *out, int outer, int depth, int32_t mult, int left_shift,
                    int32_t diff_min);
void tfc_softmax_f32(const float *in, float *out, int outer, int depth, float beta);

/* QUANTIZE / DEQUANTIZE / int8 requantize. */
void tfc_quantize_f32_s8(const float *in, int8_t *out, int n, float scale, int32_t zp);
void tfc_requantize_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t mult, int shift, int32_t out_zp);
void tfc_dequantize_s8_f32(const int8_t *in, float *out, int n, double scale, int32_t zp);
/* Integer type codes: 0 int8, 1 uint8, 2 int16 (TFLM's QUANTIZE converts among them, DEQUANTIZE reads them). */
void tfc_requantize(const void *in, int in_type, void *out, int out_type, int n, int32_t in_zp, int32_t mult, int shift,
                    int32_t out_zp);
void tfc_dequantize_f32(const void *in, int in_type, float *out, int n, double scale, int32_t zp);

/* Window geometry of CONV_2D, DEPTHWISE_CONV_2D and the pools (NHWC), filled in by the compiler. */
typedef struct {
    int batches, in_h, in_w, in_depth, out_h, out_w, out_depth;
    int filter_h, filter_w, filter_in_depth, stride_h, stride_w, dilation_h, dilation_w, pad_h, pad_w;
} tfc_conv_geom;

void tfc_conv_s8(const int8_t *in, const int8_t *w, const int32_t *bias, const int32_t *bias_full, int8_t *out,
                 const tfc_conv_geom *g, int32_t in_offset, int32_t out_offset, const int32_t *mult,
                 const int32_t *shift, int32_t act_min, int32_t act_max, int8_t *patch_buf);
void tfc_conv_f32(const float *in, const float *w, const float *bias, float *out, const tfc_conv_geom *g, float act_min,
                  float act_max);
void tfc_depthwise_s8(const int8_t *in, const int8_t *w, const int32_t *bias, const int32_t *bias_full, int8_t *out,
                      const tfc_conv_geom *g, int depth_multiplier, int32_t in_offset, int32_t out_offset,
                      const int32_t *mult, const int32_t *shift, int32_t act_min, int32_t act_max);
void tfc_depthwise_f32(const float *in, const float *w, const float *bias, float *out, const tfc_conv_geom *g,
                       int depth_multiplier, float act_min, float act_max);
/* Depth multiplier 1, output written over the input (buf); plane: scratch of in_h * in_w elements. */
void tfc_depthwise_inplace_s8(int8_t *buf, const int8_t *w, const int32_t *bias, const int32_t *bias_full,
                              const tfc_conv_geom *g, int32_t in_offset, int32_t out_offset, const int32_t *mult,
                              const int32_t *shift, int32_t act_min, int32_t act_max, int8_t *plane);
void tfc_depthwise_inplace_f32(float *buf, const float *w, const float *bias, const tfc_conv_geom *g, float act_min,
                               float act_max, float *plane);

void tfc_avg_pool_s8(const int8_t *in, int8_t *out, const tfc_conv_geom *g, int32_t act_min, int32_t act_max);
void tfc_avg_pool_f32(const float *in, float *out, const tfc_conv_geom *g, float act_min, float act_max);
void tfc_max_pool_s8(const int8_t *in, int8_t *out, const tfc_conv_geom *g, int32_t act_min, int32_t act_max);
void tfc_max_pool_f32(const float *in, float *out, const tfc_conv_geom *g, float act_min, float act_max);

/* ADD with broadcasting: both inputs indexed over the output's 6-D dims with their own strides. */
typedef struct { int32_t dims[6], strides1[6], strides2[6]; } tfc_broadcast;
typedef struct {
    int32_t in1_offset, in2_offset, out_offset, left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift, act_min, act_max;
} tfc_add_params;
void tfc_add_s8(const int8_t *a, const int8_t *b, int8_t *out, const tfc_broadcast *bc, const tfc_add_params *p);
void tfc_add_f32(const float *a, const float *b, float *out, const tfc_broadcast *bc, float act_min, float act_max);

/* MEAN: dims of the input (6-D) and, per dimension, the output stride it sums into (0 = reduced). */
void tfc_mean_s8(const int8_t *in, int8_t *out, int32_t *sums, const int32_t *dims, const int32_t *out_strides,
                 int n_out, int32_t n_reduced, int32_t in_zp, int32_t mult, int shift, int32_t out_zp);
void tfc_mean_f32(const float *in, float *out, const int32_t *dims, const int32_t *out_strides, int n_out,
                  int32_t n_reduced);

void tfc_logistic_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t radius, int32_t mult, int shift);
void tfc_logistic_f32(const float *in, float *out, int n);

/* PAD (6-D, constant value of elem_size bytes) and RESIZE_NEAREST_NEIGHBOR (NHWC gather). */
void tfc_pad(const void *in, void *out, const int32_t *in_dims, const int32_t *before, const int32_t *out_dims,
             int elem_size, const void *pad_value);
void tfc_resize_nearest(const void *in, void *out, int batches, int in_h, int in_w, int depth, int out_h, int out_w,
                        const int32_t *y_map, const int32_t *x_map, int elem_size);

void tfc_copy(const void *in, void *out, size_t nbytes);

#endif
