/* SOFTMAX over the last dimension: int8 as TFLM's reference (exp in Q5.26, sum in Q12.19), float with tfc_expf. */
#include <math.h>

#include "tfc_fixedpoint.h"
#include "tfc_mathf.h"
#include "tfc_kernels.h"

void tfc_softmax_s8(const int8_t *in, int8_t *out, int outer, int depth, int32_t mult, int left_shift,
                    int32_t diff_min) {
    for (int i = 0; i < outer; ++i) {
        const int8_t *row = in + i * depth;
        int8_t *orow = out + i * depth;
        int8_t max_in_row = -128;
        for (int c = 0; c < depth; ++c) max_in_row = row[c] > max_in_row ? row[c] : max_in_row;
        int32_t sum_of_exps = 0; /* Q12.19 */
        for (int c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)row[c] - max_in_row;
            if (diff >= diff_min) {
                const int32_t scaled = tfc_srdhm((int32_t)((uint32_t)diff << left_shift), mult);
                sum_of_exps = tfc_add(sum_of_exps, tfc_rescale(tfc_exp_on_negative_values(scaled, 5), 0, 12));
            }
        }
        int num_bits_over_unit;
        const int32_t shifted_scale = tfc_reciprocal(sum_of_exps, 12, &num_bits_over_unit);
        const int exponent = num_bits_over_unit + 31 - 8;
        for (int c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)row[c] - max_in_row;
            if (diff >= diff_min) {
                const int32_t scaled = tfc_srdhm((int32_t)((uint32_t)diff << left_shift), mult);
                const int32_t e = tfc_exp_on_negative_values(scaled, 5);
                const int32_t unsat = tfc_rdivpot(tfc_srdhm(shifted_scale, e), exponent);
                orow[c] = (int8_t)tfc_clamp(unsat - 128, -128, 127);
            } else {
                orow[c] = -128;
            }
        }
    }
}

void tfc_softmax_f32(const float *in, float *out, int outer, int depth, float beta) {
    for (int i = 0; i < outer; ++i) {
        const float *row = in + i * depth;
        float *orow = out + i * depth;
        float max = -INFINITY;
        for (int c = 0; c < depth; ++c) max = row[c] > max ? row[c] : max;
        float sum = 0.f;
        for (int c = 0; c < depth; ++c) {
            const float e = tfc_expf((row[c] - max) * beta);
            orow[c] = e;
            sum += e;
        }
        for (int c = 0; c < depth; ++c) orow[c] = orow[c] / sum;
    }
}
