"""Lowering of the dense and elementwise ops: FULLY_CONNECTED, TANH, SOFTMAX, QUANTIZE, DEQUANTIZE, RESHAPE.

Why compile-time constants: each op's TFLM Prepare() computes multipliers,
shifts and clamps from float32 scales; :mod:`edge.compiler.quant` does the
same arithmetic here, so the C only holds literals and int32 arrays.
"""

from __future__ import annotations

import numpy as np

from edge.compiler import quant
from edge.compiler.graph import Graph, Operator
from edge.compiler.step import ConstArray, Step, c_double, c_float, folded_bias, refuse, require_constant, require_types, tensors

INT8_FLOAT = ("int8", "float32")


def lower_fully_connected(graph: Graph, op: Operator) -> Step:
    ins, (out,) = tensors(graph, op)
    x = require_types(op, ins[0], INT8_FLOAT, "input")
    w = require_constant(op, ins[1] if len(ins) > 1 else None, "filter")
    bias = ins[2] if len(ins) > 2 else None
    if x.type_name == "float32" and w.type_name != "float32":
        raise refuse(op, f"hybrid quantisation (float32 input, {w.type_name} weights) is not supported, as in TFLM")
    if w.type_name != x.type_name or out.type_name != x.type_name:
        raise refuse(op, f"input {x.type_name}, filter {w.type_name}, output {out.type_name}: mixed types are not supported")
    if op.options.get("weightsFormat", 0) != 0:
        raise refuse(op, "shuffled weights format is not supported")
    if bias is not None and bias.data is None:
        raise refuse(op, "the bias must be a constant tensor")
    out_depth, accum = int(w.shape[0]), int(w.shape[-1])
    batches = out.elements // max(out_depth, 1)
    activation = int(op.options.get("fusedActivationFunction", 0))
    if activation not in (0, 1, 2, 3):
        raise refuse(op, f"fused activation {activation} is not supported")
    consts = [ConstArray("w", "int8_t" if x.type_name == "int8" else "float", w.data.reshape(-1))]
    bias_expr = "NULL"
    if bias is not None:
        consts.append(ConstArray("b", "int32_t" if x.type_name == "int8" else "float", bias.data.reshape(-1)))
        bias_expr = "{const:b}"
    macs = batches * out_depth * accum
    if x.type_name == "float32":
        lo, hi = quant.float_activation_range(activation)
        code = (f"tfc_fully_connected_f32({{in0}}, {{const:w}}, {bias_expr}, {{out0}}, {batches}, {accum}, {out_depth}, "
                f"{c_float(lo)}, {c_float(hi)});")
        return Step(op, ("fully_connected.c",), code, consts, macs=macs)
    if bias is not None and bias.type_name != "int32":
        raise refuse(op, f"int8 FULLY_CONNECTED needs an int32 bias, not {bias.type_name}")
    per_channel = len(w.scales) > 1
    if per_channel:
        mults, shifts = quant.per_channel_multipliers(x.scale, w.scales, out.scale)
    else:
        m, s = quant.per_tensor_conv_multiplier(x.scale, w.scale, out.scale)
        mults, shifts = [m], [s]
    consts += [ConstArray("mult", "int32_t", np.asarray(mults, np.int64)), ConstArray("shift", "int32_t", np.asarray(shifts, np.int64))]
    lo, hi = quant.activation_range(activation, out.scale, out.zero_point)
    # the input offset's share of every sum is a constant: fold it into the bias, so the kernel is a plain dot product
    consts = [c for c in consts if c.suffix != "b"] + [ConstArray("b", "int32_t", folded_bias(None if bias is None else bias.data, w.data, -x.zero_point))]
    code = (f"tfc_fully_connected_s8({{in0}}, {{const:w}}, {{const:b}}, {{out0}}, {batches}, {accum}, {out_depth}, "
            f"0, {out.zero_point}, {{const:mult}}, {{const:shift}}, {int(per_channel)}, {lo}, {hi});")
    return Step(op, ("fully_connected.c",), code, consts, macs=macs)


def lower_tanh(graph: Graph, op: Operator) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    x = require_types(op, x, INT8_FLOAT, "input")
    if out.type_name != x.type_name:
        raise refuse(op, "input and output types differ")
    if x.type_name == "float32":
        return Step(op, ("tanh.c",), f"tfc_tanh_f32({{in0}}, {{out0}}, {x.elements});", inplace=True)
    if abs(out.scale - 1.0 / 128) > 1e-9 or out.zero_point != 0:
        raise refuse(op, f"int8 TANH needs output scale 1/128 and zero point 0, got {out.scale} and {out.zero_point}")
    mult, shift, radius = quant.tanh_params(x.scale)
    code = f"tfc_tanh_s8({{in0}}, {{out0}}, {x.elements}, {x.zero_point}, {radius}, {mult}, {shift});"
    return Step(op, ("tanh.c",), code, inplace=True)


def lower_softmax(graph: Graph, op: Operator) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    x = require_types(op, x, INT8_FLOAT, "input")
    if out.type_name != x.type_name:
        raise refuse(op, f"input {x.type_name} and output {out.type_name} differ")
    depth = int(x.shape[-1]) if x.shape else 1
    outer = x.elements // max(depth, 1)
    beta = float(np.float32(op.options.get("beta", 1.0)))
    if x.type_name == "float32":
        return Step(op, ("softmax.c",), f"tfc_softmax_f32({{in0}}, {{out0}}, {outer}, {depth}, {c_float(beta)});", inplace=True)
    if out.zero_point != -128 or out.scale != float(np.float32(1.0 / 256)):
        raise refuse(op, f"int8 SOFTMAX needs output scale 1/256 and zero point -128, got {out.scale} and {out.zero_point}")
    mult, shift, diff_min = quant.softmax_params(beta, x.scale)
    code = f"tfc_softmax_s8({{in0}}, {{out0}}, {outer}, {depth}, {mult}, {shift}, {diff_min});"
    return Step(op, ("softmax.c",), code, inplace=True)


_INT_CODES = {"int8": 0, "uint8": 1, "int16": 2}


def lower_quantize(graph: Graph, op: Operator) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    x = require_types(op, x, ("float32", *_INT_CODES), "input")
    require_types(op, out, tuple(_INT_CODES), "output")
    if len(out.scales) != 1:
        raise refuse(op, "per-channel QUANTIZE output is not supported (TFLM neither)")
    if x.type_name == "float32":
        if out.type_name != "int8":
            raise refuse(op, f"float32 -> {out.type_name} QUANTIZE is not supported")
        code = f"tfc_quantize_f32_s8({{in0}}, {{out0}}, {x.elements}, {c_float(out.scale)}, {out.zero_point});"
        return Step(op, ("quantize.c",), code)
    mult, shift = quant.quantize_multiplier(float(x.scale) / float(out.scale))
    if x.type_name == out.type_name == "int8":
        code = f"tfc_requantize_s8({{in0}}, {{out0}}, {x.elements}, {x.zero_point}, {mult}, {shift}, {out.zero_point});"
    else:
        code = (f"tfc_requantize({{in0}}, {_INT_CODES[x.type_name]}, {{out0}}, {_INT_CODES[out.type_name]}, {x.elements}, "
                f"{x.zero_point}, {mult}, {shift}, {out.zero_point});")
    return Step(op, ("quantize.c",), code, inplace=x.dtype.itemsize == out.dtype.itemsize)


def lower_dequantize(graph: Graph, op: Operator) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    x = require_types(op, x, tuple(_INT_CODES), "input")
    require_types(op, out, ("float32",), "output")
    if len(x.scales) != 1:
        raise refuse(op, "per-channel DEQUANTIZE is not supported")
    if x.type_name == "int8":
        code = f"tfc_dequantize_s8_f32({{in0}}, {{out0}}, {x.elements}, {c_double(x.scale)}, {x.zero_point});"
    else:
        code = f"tfc_dequantize_f32({{in0}}, {_INT_CODES[x.type_name]}, {{out0}}, {x.elements}, {c_double(x.scale)}, {x.zero_point});"
    return Step(op, ("quantize.c",), code)


def lower_reshape(graph: Graph, op: Operator) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    if x is None or x.nbytes != out.nbytes:
        raise refuse(op, "input and output sizes differ")
    return Step(op, ("quantize.c",), f"tfc_copy({{in0}}, {{out0}}, {out.nbytes});", alias=True)


LOWERINGS = {
    "FULLY_CONNECTED": lower_fully_connected,
    "TANH": lower_tanh,
    "SOFTMAX": lower_softmax,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
    "RESHAPE": lower_reshape,
    "SQUEEZE": lower_reshape,
    "EXPAND_DIMS": lower_reshape,
}
