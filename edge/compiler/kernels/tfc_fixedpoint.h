/* tfc_fixedpoint.h - the integer arithmetic of TFLM's int8 reference kernels, in C99.
 *
 * Why: bit-identity with TFLite Micro needs its exact rounding, not "close"
 * arithmetic: gemmlowp's SaturatingRoundingDoublingHighMul (VQRDMULH) and
 * RoundingDivideByPOT, TFLM's double-rounding MultiplyByQuantizedMultiplier,
 * and gemmlowp's fixed-point exp/tanh/logistic/reciprocal polynomials.
 * Written from the published algorithms; additions that may overflow in
 * gemmlowp's int32 wrap here through uint32 (C signed overflow is undefined).
 */
#ifndef TFC_FIXEDPOINT_H
#define TFC_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t tfc_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t tfc_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }
static inline int32_t tfc_neg(int32_t a) { return (int32_t)(0u - (uint32_t)a); }

/* VQRDMULH: round(a * b / 2^31), saturating the single overflow case. */
static inline int32_t tfc_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* Arithmetic right shift rounding to nearest, ties away from zero. */
static inline int32_t tfc_rdivpot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLM MultiplyByQuantizedMultiplier (double rounding): x * m * 2^(shift-31). */
static inline int32_t tfc_mbqm(int32_t x, int32_t multiplier, int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return tfc_rdivpot(tfc_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

/* Saturating x * 2^exponent for exponent > 0 (gemmlowp's positive branch). */
static inline int32_t tfc_sat_mul_pot(int32_t x, int exponent) {
    if (exponent == 0) return x;
    if (exponent < 0) return tfc_rdivpot(x, -exponent);
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

/* Fixed point with I integer bits: Rescale from src to dst integer bits. */
static inline int32_t tfc_rescale(int32_t x, int src_bits, int dst_bits) { return tfc_sat_mul_pot(x, src_bits - dst_bits); }

static inline int32_t tfc_rounding_half_sum(int32_t a, int32_t b) {
    int64_t sum = (int64_t)a + (int64_t)b;
    int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* exp(x) for x in [-1/4, 0), Q0.31 in and out. */
static inline int32_t tfc_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;  /* exp(-1/8) */
    const int32_t one_third = 715827883;
    int32_t x = tfc_add(a, 1 << 28);
    int32_t x2 = tfc_srdhm(x, x);
    int32_t x3 = tfc_srdhm(x2, x);
    int32_t x4 = tfc_srdhm(x2, x2);
    int32_t x4_over_4 = tfc_rdivpot(x4, 2);
    int32_t poly = tfc_rdivpot(tfc_add(tfc_srdhm(tfc_add(x4_over_4, x3), one_third), x2), 1);
    return tfc_add(constant_term, tfc_srdhm(constant_term, tfc_add(x, poly)));
}

/* exp(a) for a <= 0, a with `integer_bits` integer bits; result Q0.31. */
static inline int32_t tfc_exp_on_negative_values(int32_t a, int integer_bits) {
    const int frac = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (frac - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = tfc_sub(a & mask, one_quarter);
    int32_t result = tfc_exp_quarter(tfc_rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0));
    const int32_t remainder = tfc_sub(a_mod_quarter_minus_one_quarter, a);
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    for (int e = -2; e <= 4; ++e) {
        if (integer_bits > e) {
            const int shift = frac + e;
            if (remainder & ((int32_t)1 << shift)) result = tfc_srdhm(result, multipliers[e + 2]);
        }
    }
    if (integer_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits));
        if (a < clamp) result = 0;
    }
    if (a == 0) result = INT32_MAX;
    return result;
}

/* Newton-Raphson 1/(1+x) core shared by tanh and logistic: returns x in Q2.29. */
static inline int32_t tfc_nr_reciprocal_q2(int32_t half_denominator) {
    const int32_t c48_17 = 1515870810, cneg32_17 = -1010580540;
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x = tfc_add(c48_17, tfc_srdhm(half_denominator, cneg32_17));
    for (int i = 0; i < 3; ++i) {
        int32_t hdx = tfc_srdhm(half_denominator, x);
        int32_t one_minus = tfc_sub(one_q2, hdx);
        x = tfc_add(x, tfc_rescale(tfc_srdhm(x, one_minus), 4, 2));
    }
    return x;
}

/* (1 - a) / (1 + a) for a in (0, 1), Q0.31. */
static inline int32_t tfc_one_minus_x_over_one_plus_x(int32_t a) {
    int32_t half_denominator = tfc_rounding_half_sum(a, INT32_MAX);
    int32_t x = tfc_nr_reciprocal_q2(half_denominator);
    return tfc_rescale(tfc_sub(x, (int32_t)1 << 29), 2, 0);
}

/* 1 / (1 + a) for a in (0, 1), Q0.31. */
static inline int32_t tfc_one_over_one_plus_x(int32_t a) {
    int32_t half_denominator = tfc_rounding_half_sum(a, INT32_MAX);
    int32_t x = tfc_nr_reciprocal_q2(half_denominator);
    return tfc_rescale(x, 1, 0); /* ExactMulByPot<-1> turns Q2 into Q1, then Rescale<0> */
}

/* tanh(a), a with `integer_bits` integer bits, result Q0.31. */
static inline int32_t tfc_tanh_fixed(int32_t a, int integer_bits) {
    if (a == 0) return 0;
    int32_t n = a < 0 ? a : tfc_neg(a);
    /* ExactMulByPot<1>: same raw value read with one more integer bit. */
    int32_t t = tfc_one_minus_x_over_one_plus_x(tfc_exp_on_negative_values(n, integer_bits + 1));
    return a < 0 ? tfc_neg(t) : t;
}

/* logistic(a), a with `integer_bits` integer bits, result Q0.31. */
static inline int32_t tfc_logistic_fixed(int32_t a, int integer_bits) {
    if (a == 0) return 1 << 30;
    int32_t abs_a = a > 0 ? a : tfc_neg(a);
    int32_t pos = tfc_one_over_one_plus_x(tfc_exp_on_negative_values(tfc_neg(abs_a), integer_bits));
    return a > 0 ? pos : tfc_sub(INT32_MAX, pos);
}

static inline int tfc_clz32(uint32_t x) {
    int n = 0;
    if (x == 0) return 32;
    while (!(x & 0x80000000u)) { x <<= 1; ++n; }
    return n;
}

/* TFLM GetReciprocal: 1/x for x with `x_integer_digits` integer bits, as Q0.31 plus a shift. */
static inline int32_t tfc_reciprocal(int32_t x, int x_integer_digits, int *num_bits_over_unit) {
    int headroom_plus_one = tfc_clz32((uint32_t)x);
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    int32_t shifted_minus_one = (int32_t)(((uint32_t)x << headroom_plus_one) - (1u << 31));
    return tfc_one_over_one_plus_x(shifted_minus_one);
}

static inline int32_t tfc_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Sum of a[i] * b[i] over n int8 pairs, in wrapping int32 (as every TFLM accumulator, barring overflow).
 * On a core with the DSP extension (Cortex-M4/M7/M33) four products take two SXTB16 pairs and two SMLADs
 * (CMSIS-NN's trick); elsewhere a plain loop. The same integer either way. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#include <string.h>
static inline int32_t tfc_dot_s8(const int8_t *a, const int8_t *b, int n) {
    int32_t acc = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t wa, wb;
        memcpy(&wa, a + i, 4);
        memcpy(&wb, b + i, 4);
        acc = __smlad(__sxtb16(wa), __sxtb16(wb), acc);
        acc = __smlad(__sxtb16((wa >> 8) | (wa << 24)), __sxtb16((wb >> 8) | (wb << 24)), acc);
    }
    for (; i < n; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
    return acc;
}
/* Two dot products sharing the vector a: a . b0 and a . b1 (two output channels of one input patch). */
static inline void tfc_dot2_s8(const int8_t *a, const int8_t *b0, const int8_t *b1, int n, int32_t *r0, int32_t *r1) {
    int32_t acc0 = 0, acc1 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t wa, w0, w1;
        memcpy(&wa, a + i, 4);
        memcpy(&w0, b0 + i, 4);
        memcpy(&w1, b1 + i, 4);
        const uint32_t a02 = __sxtb16(wa), a13 = __sxtb16((wa >> 8) | (wa << 24));
        acc0 = __smlad(a02, __sxtb16(w0), acc0);
        acc0 = __smlad(a13, __sxtb16((w0 >> 8) | (w0 << 24)), acc0);
        acc1 = __smlad(a02, __sxtb16(w1), acc1);
        acc1 = __smlad(a13, __sxtb16((w1 >> 8) | (w1 << 24)), acc1);
    }
    for (; i < n; ++i) {
        acc0 += (int32_t)a[i] * (int32_t)b0[i];
        acc1 += (int32_t)a[i] * (int32_t)b1[i];
    }
    *r0 = acc0;
    *r1 = acc1;
}
#else
static inline void tfc_dot2_s8(const int8_t *a, const int8_t *b0, const int8_t *b1, int n, int32_t *r0, int32_t *r1) {
    int32_t acc0 = 0, acc1 = 0;
    for (int i = 0; i < n; ++i) {
        acc0 += (int32_t)a[i] * (int32_t)b0[i];
        acc1 += (int32_t)a[i] * (int32_t)b1[i];
    }
    *r0 = acc0;
    *r1 = acc1;
}
static inline int32_t tfc_dot_s8(const int8_t *a, const int8_t *b, int n) {
    int32_t acc = 0;
    for (int i = 0; i < n; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
    return acc;
}
#endif

#endif
