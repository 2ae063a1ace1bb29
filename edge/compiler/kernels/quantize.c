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

/* Element reader/writer for the integer types QUANTIZE converts between (0 int8, 1 uint8, 2 int16). */
static int32_t tfc_load(const void *p, int type, int i) {
    if (type == 0) return ((const int8_t *)p)[i];
    if (type == 1) return ((const uint8_t *)p)[i];
    return ((const int16_t *)p)[i];
}

static void tfc_store(void *p, int type, int i, int32_t v) {
    if (type == 0) ((int8_t *)p)[i] = (int8_t)tfc_clamp(v, -128, 127);
    else if (type == 1) ((uint8_t *)p)[i] = (uint8_t)tfc_clamp(v, 0, 255);
    else ((int16_t *)p)[i] = (int16_t)tfc_clamp(v, -32768, 32767);
}

void tfc_requantize(const void *in, int in_type, void *out, int out_type, int n, int32_t in_zp, int32_t mult, int shift,
                    int32_t out_zp) {
    for (int i = 0; i < n; ++i) tfc_store(out, out_type, i, tfc_mbqm(tfc_load(in, in_type, i) - in_zp, mult, shift) + out_zp);
}

void tfc_dequantize_f32(const void *in, int in_type, float *out, int n, double scale, int32_t zp) {
    for (int i = 0; i < n; ++i) out[i] = (float)(scale * (double)(tfc_load(in, in_type, i) - zp));
}

void tfc_dequantize_s8_f32(const int8_t *in, float *out, int n, double scale, int32_t zp) {
    for (int i = 0; i < n; ++i) out[i] = (float)(scale * (double)((int32_t)in[i] - zp));
}

void tfc_copy(const void *in, void *out, size_t nbytes) {
    if (in != out) memmove(out, in, nbytes);
}
