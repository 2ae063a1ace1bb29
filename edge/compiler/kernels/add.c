/* ADD, int8 (TFLM's rescale-to-common-scale with left shift 20) and float32, with numpy-style broadcasting.
 *
 * Broadcasting: the compiler extends both inputs to the output's 6-D shape
 * and passes per-dimension element strides (0 where an input is broadcast),
 * so one odometer loop serves every shape.
 */
#include "tfc_fixedpoint.h"
#include "tfc_kernels.h"

static int tfc_next_index(const int32_t *dims, int32_t *idx) {
    for (int d = 5; d >= 0; --d) {
        if (++idx[d] < dims[d]) return 1;
        idx[d] = 0;
    }
    return 0;
}

static int32_t tfc_offset(const int32_t *idx, const int32_t *strides) {
    int32_t o = 0;
    for (int d = 0; d < 6; ++d) o += idx[d] * strides[d];
    return o;
}

void tfc_add_s8(const int8_t *a, const int8_t *b, int8_t *out, const tfc_broadcast *bc, const tfc_add_params *p) {
    int32_t idx[6] = {0, 0, 0, 0, 0, 0};
    int i = 0;
    do {
        const int32_t x = p->in1_offset + a[tfc_offset(idx, bc->strides1)];
        const int32_t y = p->in2_offset + b[tfc_offset(idx, bc->strides2)];
        const int32_t sx = tfc_mbqm((int32_t)((uint32_t)x << p->left_shift), p->in1_mult, p->in1_shift);
        const int32_t sy = tfc_mbqm((int32_t)((uint32_t)y << p->left_shift), p->in2_mult, p->in2_shift);
        const int32_t raw = tfc_mbqm(sx + sy, p->out_mult, p->out_shift) + p->out_offset;
        out[i++] = (int8_t)tfc_clamp(raw, p->act_min, p->act_max);
    } while (tfc_next_index(bc->dims, idx));
}

void tfc_add_f32(const float *a, const float *b, float *out, const tfc_broadcast *bc, float act_min, float act_max) {
    int32_t idx[6] = {0, 0, 0, 0, 0, 0};
    int i = 0;
    do {
        float v = a[tfc_offset(idx, bc->strides1)] + b[tfc_offset(idx, bc->strides2)];
        v = v < act_min ? act_min : v;
        out[i++] = v > act_max ? act_max : v;
    } while (tfc_next_index(bc->dims, idx));
}
