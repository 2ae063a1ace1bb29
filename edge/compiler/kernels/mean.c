/* MEAN over any axes, int8 (int32 sums in scratch, TFLM's 1/n folded into the multiplier) and float32.
 *
 * The compiler passes the input's 6-D dims and, per input dimension, the
 * stride of the output element it accumulates into (0 on reduced axes).
 */
#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"

static int tfc_mean_next(const int32_t *dims, int32_t *idx) {
    for (int d = 5; d >= 0; --d) {
        if (++idx[d] < dims[d]) return 1;
        idx[d] = 0;
    }
    return 0;
}

static int32_t tfc_mean_out(const int32_t *idx, const int32_t *out_strides) {
    int32_t o = 0;
    for (int d = 0; d < 6; ++d) o += idx[d] * out_strides[d];
    return o;
}

void tfc_mean_s8(const int8_t *in, int8_t *out, int32_t *sums, const int32_t *dims, const int32_t *out_strides,
                 int n_out, int32_t n_reduced, int32_t in_zp, int32_t mult, int shift, int32_t out_zp) {
    int32_t idx[6] = {0, 0, 0, 0, 0, 0};
    int i = 0;
    for (int k = 0; k < n_out; ++k) sums[k] = 0;
    do {
        sums[tfc_mean_out(idx, out_strides)] += in[i++];
    } while (tfc_mean_next(dims, idx));
    for (int k = 0; k < n_out; ++k) {
        const int32_t shifted = sums[k] - in_zp * n_reduced;
        out[k] = (int8_t)tfc_clamp(tfc_mbqm(shifted, mult, shift) + out_zp, -128, 127);
    }
}

void tfc_mean_f32(const float *in, float *out, const int32_t *dims, const int32_t *out_strides, int n_out,
                  int32_t n_reduced) {
    int32_t idx[6] = {0, 0, 0, 0, 0, 0};
    int i = 0;
    for (int k = 0; k < n_out; ++k) out[k] = 0.f;
    do {
        out[tfc_mean_out(idx, out_strides)] += in[i++];
    } while (tfc_mean_next(dims, idx));
    for (int k = 0; k < n_out; ++k) out[k] = out[k] / (float)n_reduced;
}
