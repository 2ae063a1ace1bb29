/* TANH: int8 through gemmlowp's fixed-point tanh (input Q4.27, output scale 1/128), float through tfc_tanhf. */
#include "tfc_fixedpoint.h"
#include "tfc_mathf.h"
#include "tfc_kernels.h"

void tfc_tanh_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t radius, int32_t mult, int shift) {
    for (int i = 0; i < n; ++i) {
        const int32_t x = (int32_t)in[i] - in_zp;
        if (x <= -radius) {
            out[i] = -128;
        } else if (x >= radius) {
            out[i] = 127;
        } else {
            const int32_t q4 = tfc_mbqm(x, mult, shift);
            const int32_t q0 = tfc_tanh_fixed(q4, 4);
            out[i] = (int8_t)tfc_clamp(tfc_rdivpot(q0, 31 - 7), -128, 127);
        }
    }
}

void tfc_tanh_f32(const float *in, float *out, int n) {
    for (int i = 0; i < n; ++i) out[i] = tfc_tanhf(in[i]);
}
