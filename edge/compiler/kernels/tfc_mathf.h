/* tfc_mathf.h - expf and tanhf of our own, so float kernels give the same bytes on every target.
 *
 * Why: glibc's and newlib's libm round expf/tanhf differently in the last
 * bit, so a float model built for the host and for a Cortex-M4 would differ
 * by an ulp. These use only IEEE single add/mul/div (exactly rounded
 * everywhere, with FP contraction off, as -std=c99 gives) and are ~1 ulp
 * accurate: Cephes' expf (Cody-Waite reduction, degree-6 polynomial) and
 * tanhf (odd polynomial below 0.625, 1 - 2/(e^2x + 1) above).
 */
#ifndef TFC_MATHF_H
#define TFC_MATHF_H

#include <stdint.h>

static inline float tfc_pow2i(int k) { /* 2^k for -126 <= k <= 127 */
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)(k + 127) << 23;
    return v.f;
}

static inline float tfc_expf(float x) {
    if (x != x) return x;
    if (x > 88.72283935f) return 1.0f / 0.0f;
    if (x < -103.9720840f) return 0.0f;
    float fx = x * 1.44269504088896341f;
    int k = (int)(fx >= 0.0f ? fx + 0.5f : fx - 0.5f);
    float r = x - (float)k * 0.693359375f;
    r = r - (float)k * -2.12194440e-4f;
    float z = r * r;
    float y = ((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r + 4.1665795894E-2f) * r +
               1.6666665459E-1f) * r + 5.0000001201E-1f;
    y = y * z + r + 1.0f;
    if (k > 127) return y * tfc_pow2i(127) * tfc_pow2i(k - 127);
    if (k < -126) return y * tfc_pow2i(-126) * tfc_pow2i(k + 126);
    return y * tfc_pow2i(k);
}

static inline float tfc_tanhf(float x) {
    float z = x < 0.0f ? -x : x;
    if (z > 9.01091290f) return x < 0.0f ? -1.0f : 1.0f;
    if (z >= 0.625f) {
        float t = 1.0f - 2.0f / (tfc_expf(z + z) + 1.0f);
        return x < 0.0f ? -t : t;
    }
    if (x == 0.0f) return x;
    float s = x * x;
    return ((((-5.70498872745E-3f * s + 2.06390887954E-2f) * s - 5.37397155531E-2f) * s + 1.33314422036E-1f) * s -
            3.33332819422E-1f) * s * x + x;
}

#endif
