"""TFLM's quantisation arithmetic done at compile time, in the same precision and rounding as its Prepare().

Why here and not in C: every multiplier, shift and clamp is a constant of the
model, so the generated code holds them as literals and the device computes
none. They must equal TFLM's bit for bit: float32 scales widened to double,
``frexp``, rounding half away from zero (``TfLiteRound``), the
``q == 2^31`` fix-up and the shift < -31 flush (quantization_util.cc).
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> float:
    """``std::round``: halves go away from zero (Python's ``round`` goes to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(significand in Q31, shift) with real ≈ significand · 2^(shift − 31), as ``QuantizeMultiplier``."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def f32(x: float) -> float:
    """Round a Python float to float32, the precision TFLM's scales live in."""
    return float(np.float32(x))


def per_tensor_conv_multiplier(in_scale: float, filter_scale: float, out_scale: float) -> tuple[int, int]:
    """FULLY_CONNECTED per-tensor: TFLM multiplies the two scales in *float* before widening (kernel_util.cc)."""
    product = f32(np.float32(in_scale) * np.float32(filter_scale))
    return quantize_multiplier(product / out_scale)


def per_channel_multipliers(in_scale: float, filter_scales: np.ndarray, out_scale: float) -> tuple[list[int], list[int]]:
    """Per output channel: double(in) · double(filter) / double(out), as PopulateConvolutionQuantizationParams."""
    mults, shifts = [], []
    for s in np.asarray(filter_scales, np.float32):
        m, sh = quantize_multiplier(float(in_scale) * float(s) / float(out_scale))
        mults.append(m)
        shifts.append(sh)
    return mults, shifts


def _quantize(scale: float, zero_point: int, value: float) -> int:
    """TFLM's ``Quantize``: ``TfLiteRound(f / scale)`` evaluated in float32."""
    return zero_point + int(round_half_away(f32(np.float32(value) / np.float32(scale))))


def activation_range(activation: int, scale: float, zero_point: int, qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> tuple[int, int]:
    """Clamp bounds of a fused activation (0 none, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6) on the quantised output."""
    if activation == 0:
        return qmin, qmax
    if activation == 1:
        return max(qmin, _quantize(scale, zero_point, 0.0)), qmax
    if activation == 3:
        return max(qmin, _quantize(scale, zero_point, 0.0)), min(qmax, _quantize(scale, zero_point, 6.0))
    if activation == 2:
        return max(qmin, _quantize(scale, zero_point, -1.0)), min(qmax, _quantize(scale, zero_point, 1.0))
    raise ValueError(f"fused activation {activation} is not a clamp")


def float_activation_range(activation: int) -> tuple[float, float]:
    """Float clamp bounds of a fused activation; ±FLT_MAX when none."""
    big = float(np.finfo(np.float32).max)
    return {0: (-big, big), 1: (0.0, big), 2: (-1.0, 1.0), 3: (0.0, 6.0)}[activation]


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """``CalculateInputRadius``: the largest |input| whose rescaled value stays representable."""
    max_input_rescaled = 1.0 * ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits)) / (1 << input_left_shift)
    return int(math.floor(max_input_rescaled))


def tanh_params(input_scale: float) -> tuple[int, int, int]:
    """(multiplier, left shift, range radius) of int8 TANH, as TFLM's tanh.cc (4 integer bits)."""
    real = float(np.float32(input_scale)) * float(1 << (31 - 4))
    q, shift = math.frexp(real)
    mult = int(round_half_away(q * (1 << 31)))
    return mult, shift, calculate_input_radius(4, shift, 31)


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(multiplier, left shift, diff_min) of int8 SOFTMAX: ``PreprocessSoftmaxScaling`` with 5 integer bits."""
    real = min(float(beta) * float(input_scale) * (1 << (31 - 5)), float((1 << 31) - 1))
    mult, shift = quantize_multiplier(real)
    return mult, shift, -calculate_input_radius(5, shift, 31)
