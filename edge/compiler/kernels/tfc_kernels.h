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

void tfc_copy(const void *in, void *out, size_t nbytes);

#endif
