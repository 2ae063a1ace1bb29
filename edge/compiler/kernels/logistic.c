/* LOGISTIC: int8 through gemmlowp's fixed-point logistic (input Q4.27, output scale 1/256, zero point -128),
 * float with TFLM's reference cut-offs and our own expf. */
#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"
#include "tfc_mathf.h"

void tfc_logistic_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t radius, int32_t mult, int shift) {
    for (int i = 0; i < n; ++i) {
        const int32_t x = (int32_t)in[i] - in_zp;
        if (x <= -radius) {
            out[i] = -128;
        } else if (x >= radius) {
            out[i] = 127;
        } else {
            const int32_t q4 = tfc_mbqm(x, mult, shift);
            const int32_t q0 = tfc_logistic_fixed(q4, 4);
            out[i] = (int8_t)tfc_clamp(tfc_rdivpot(q0, 31 - 8) - 128, -128, 127);
        }
    }
}

void tfc_logistic_f32(const float *in, float *out, int n) {
    for (int i = 0; i < n; ++i) {
        const float v = in[i];
        if (v > 16.619047164916992188f) out[i] = 1.0f;
        else if (v < -9.f) out[i] = tfc_expf(v);
        else out[i] = 1.f / (1.f + tfc_expf(-v));
    }
}
