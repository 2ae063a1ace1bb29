/* QUANTIZE (float32 -> int8, int8 -> int8 requantize) and DEQUANTIZE, as TFLM's reference kernels. */
#include <math.h>
#include <string.h>

#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"

void tfc_quantize_f32_s8(const float *in, int8_t *out, int n, float scale, int32_t zp) {
    for (int i = 0; i < n; ++i) {
        float r = roundf(in[i] / scale); /* TfLiteRound in float, like AffineQuantize */
        int32_t q;
        if (r >= 2147483648.0f) q = INT32_MAX; /* TFLM's cast would be undefined out here; saturate */
        else if (r <= -2147483648.0f) q = INT32_MIN;
        else q = (int32_t)r;
        int64_t v = (int64_t)q + zp;
        out[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
}

void tfc_requantize_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t mult, int shift, int32_t out_zp) {
    for (int i = 0; i < n; ++i) {
        int32_t v = tfc_mbqm((int32_t)in[i] - in_zp, mult, shift) + out_zp;
        out[i] = (int8_t)tfc_clamp(v, -128, 127);
    }
}

void tfc_dequantize_s8_f32(const int8_t *in, float *out, int n, double scale, int32_t zp) {
    for (int i = 0; i < n; ++i) out[i] = (float)(scale * (double)((int32_t)in[i] - zp));
}

void tfc_copy(const void *in, void *out, size_t nbytes) {
    if (in != out) memmove(out, in, nbytes);
}
