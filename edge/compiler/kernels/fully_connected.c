/* FULLY_CONNECTED, int8 and float32, as TFLM's reference kernels (integer_ops/fully_connected.h). */
#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"

void tfc_fully_connected_s8(const int8_t *in, const int8_t *w, const int32_t *bias, int8_t *out, int batches,
                            int accum_depth, int out_depth, int32_t in_offset, int32_t out_offset,
                            const int32_t *mult, const int32_t *shift, int per_channel, int32_t act_min,
                            int32_t act_max) {
    for (int b = 0; b < batches; ++b) {
        const int8_t *row = in + b * accum_depth;
        for (int o = 0; o < out_depth; ++o) {
            const int8_t *wrow = w + o * accum_depth;
            int32_t acc;
            if (in_offset == 0) { /* the compiler folded in_offset * sum(w) into the bias */
                acc = tfc_dot_s8(row, wrow, accum_depth);
            } else {
                acc = 0;
                for (int d = 0; d < accum_depth; ++d) acc += (int32_t)wrow[d] * ((int32_t)row[d] + in_offset);
            }
            if (bias) acc += bias[o];
            const int c = per_channel ? o : 0;
            int32_t v = tfc_mbqm(acc, mult[c], (int)shift[c]) + out_offset;
            out[b * out_depth + o] = (int8_t)tfc_clamp(v, act_min, act_max);
        }
    }
}

void tfc_fully_connected_f32(const float *in, const float *w, const float *bias, float *out, int batches,
                             int accum_depth, int out_depth, float act_min, float act_max) {
    for (int b = 0; b < batches; ++b) {
        const float *row = in + b * accum_depth;
        for (int o = 0; o < out_depth; ++o) {
            const float *wrow = w + o * accum_depth;
            float total = 0.f;
            for (int d = 0; d < accum_depth; ++d) total += row[d] * wrow[d];
            float v = total + (bias ? bias[o] : 0.0f);
            v = v < act_min ? act_min : v;
            out[b * out_depth + o] = v > act_max ? act_max : v;
        }
    }
}
