"""Lowering of ADD, LOGISTIC, MEAN, PAD/PADV2 and RESIZE_NEAREST_NEIGHBOR.

Why index work happens here: broadcast strides, reduction strides, padding
offsets and the nearest-neighbour index tables are all functions of static
shapes, so they are computed once (the tables with TFLM's float32
arithmetic) and the kernels only walk memory.
"""

from __future__ import annotations

import math

import numpy as np

from edge.compiler import quant
from edge.compiler.graph import Graph, Operator
from edge.compiler.step import (ConstArray, ConstStruct, Step, c_float, c_ints, extend_dims, refuse, require_constant,
                                require_types, tensors)

INT8_FLOAT = ("int8", "float32")
_ELEM_TYPES = {"int8": "int8_t", "float32": "float", "int32": "int32_t", "int16": "int16_t"}


def _strides(shape: list[int]) -> list[int]:
    strides, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc
        acc *= shape[d]
    return strides


def lower_add(graph: Graph, op: Operator) -> Step:
    ins, (out,) = tensors(graph, op)
    a = require_types(op, ins[0], INT8_FLOAT, "input 1")
    b = require_types(op, ins[1] if len(ins) > 1 else None, INT8_FLOAT, "input 2")
    if not a.type_name == b.type_name == out.type_name:
        raise refuse(op, "ADD needs one type for both inputs and the output")
    out_dims = extend_dims(out.shape)
    bc = [out_dims]
    for t in (a, b):
        dims = extend_dims(t.shape)
        if any(d != o and d != 1 for d, o in zip(dims, out_dims)):
            raise refuse(op, f"shape {t.shape} does not broadcast to {out.shape}")
        bc.append([0 if d == 1 and o != 1 else s for d, o, s in zip(dims, out_dims, _strides(dims))])
    consts: list = [ConstStruct("bc", "tfc_broadcast", ", ".join(c_ints(v) for v in bc))]
    activation = int(op.options.get("fusedActivationFunction", 0))
    inplace = a.shape == out.shape and not a.is_constant
    if out.type_name == "float32":
        lo, hi = quant.float_activation_range(activation)
        code = f"tfc_add_f32({{in0}}, {{in1}}, {{out0}}, {{const:bc}}, {c_float(lo)}, {c_float(hi)});"
        return Step(op, ("add.c",), code, consts, inplace=inplace)
    left_shift = 20
    twice_max = 2 * float(max(np.float32(a.scale), np.float32(b.scale)))
    m1, s1 = quant.quantize_multiplier(float(a.scale) / twice_max)
    m2, s2 = quant.quantize_multiplier(float(b.scale) / twice_max)
    mo, so = quant.quantize_multiplier(twice_max / ((1 << left_shift) * float(out.scale)))
    lo, hi = quant.activation_range(activation, out.scale, out.zero_point)
    params = [-a.zero_point, -b.zero_point, out.zero_point, left_shift, m1, s1, m2, s2, mo, so, lo, hi]
    consts.append(ConstStruct("p", "tfc_add_params", c_ints(params)[1:-1]))
    return Step(op, ("add.c",), "tfc_add_s8({in0}, {in1}, {out0}, {const:bc}, {const:p});", consts, inplace=inplace)


def lower_logistic(graph: Graph, op: Operator) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    x = require_types(op, x, INT8_FLOAT, "input")
    if out.type_name != x.type_name:
        raise refuse(op, "input and output types differ")
    if x.type_name == "float32":
        return Step(op, ("logistic.c",), f"tfc_logistic_f32({{in0}}, {{out0}}, {x.elements});", inplace=True)
    if out.zero_point != -128 or abs(out.scale - 1.0 / 256) > 1e-9:
        raise refuse(op, f"int8 LOGISTIC needs output scale 1/256 and zero point -128, got {out.scale} and {out.zero_point}")
    mult, shift, radius = quant.tanh_params(x.scale)  # same Q4.27 input scaling as TANH
    code = f"tfc_logistic_s8({{in0}}, {{out0}}, {x.elements}, {x.zero_point}, {radius}, {mult}, {shift});"
    return Step(op, ("logistic.c",), code, inplace=True)


def lower_mean(graph: Graph, op: Operator) -> Step:
    ins, (out,) = tensors(graph, op)
    x = require_types(op, ins[0], INT8_FLOAT, "input")
    axes_t = require_constant(op, ins[1] if len(ins) > 1 else None, "axis")
    if out.type_name != x.type_name:
        raise refuse(op, "input and output types differ")
    nd = len(x.shape)
    axes = sorted({int(a) % nd for a in np.asarray(axes_t.data).reshape(-1)}) if nd else []
    dims = extend_dims(x.shape)
    reduced = {a + 6 - nd for a in axes}
    kept = [d for d in range(6) if d not in reduced]
    out_strides = [0] * 6
    acc = 1
    for d in reversed(kept):
        out_strides[d] = acc
        acc *= dims[d]
    n_out, n_reduced = acc, int(np.prod([dims[d] for d in reduced], dtype=np.int64)) if reduced else 1
    if n_out != out.elements:
        raise refuse(op, f"reducing {x.shape} over {axes} gives {n_out} elements, the model says {out.elements}")
    consts: list = [ConstArray("dims", "int32_t", np.asarray(dims)), ConstArray("ostr", "int32_t", np.asarray(out_strides))]
    if x.type_name == "float32":
        code = f"tfc_mean_f32({{in0}}, {{out0}}, {{const:dims}}, {{const:ostr}}, {n_out}, {n_reduced});"
        return Step(op, ("mean.c",), code, consts, macs=x.elements)
    mult, shift = quant.quantize_multiplier(float(x.scale) / float(out.scale))
    s = min(n_reduced.bit_length() - 1, 32, 31 + shift)
    mult, shift = (mult << s) // n_reduced, shift - s
    code = (f"tfc_mean_s8({{in0}}, {{out0}}, (int32_t *){{scratch}}, {{const:dims}}, {{const:ostr}}, {n_out}, {n_reduced}, "
            f"{x.zero_point}, {mult}, {shift}, {out.zero_point});")
    return Step(op, ("mean.c",), code, consts, scratch_bytes=4 * n_out, macs=x.elements)


def lower_pad(graph: Graph, op: Operator) -> Step:
    ins, (out,) = tensors(graph, op)
    x = require_types(op, ins[0], tuple(_ELEM_TYPES), "input")
    pads = np.asarray(require_constant(op, ins[1] if len(ins) > 1 else None, "paddings").data).reshape(-1, 2)
    if len(pads) != len(x.shape) or (pads < 0).any():
        raise refuse(op, f"paddings {pads.tolist()} do not fit shape {x.shape}")
    before = [0] * (6 - len(x.shape)) + [int(p) for p in pads[:, 0]]
    c_type = _ELEM_TYPES[x.type_name]
    if len(ins) > 2 and ins[2] is not None:
        value = require_constant(op, ins[2], "constant value")
        if x.type_name == "int8" and (value.zero_point != out.zero_point or value.scale != out.scale):
            raise refuse(op, "PADV2's constant value must share the output's quantisation")
        pad_value = np.asarray(value.data).reshape(-1)[:1]
    else:
        pad_value = np.asarray([out.zero_point if x.type_name == "int8" else 0])
    consts = [ConstArray("idims", "int32_t", np.asarray(extend_dims(x.shape))), ConstArray("before", "int32_t", np.asarray(before)),
              ConstArray("odims", "int32_t", np.asarray(extend_dims(out.shape))), ConstArray("value", c_type, pad_value)]
    code = f"tfc_pad({{in0}}, {{out0}}, {{const:idims}}, {{const:before}}, {{const:odims}}, {x.dtype.itemsize}, {{const:value}});"
    return Step(op, ("pad.c",), code, consts)


def _nearest(out_size: int, in_size: int, align_corners: bool, half_pixel: bool) -> list[int]:
    """TFLM's GetNearestNeighbor for every output coordinate, in its float32 arithmetic."""
    f = np.float32
    if align_corners and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    offset = f(0.5) if half_pixel else f(0.0)
    result = []
    for v in range(out_size):
        pos = (f(v) + offset) * scale
        idx = int(quant.round_half_away(float(pos))) if align_corners else int(math.floor(float(pos)))
        idx = min(idx, in_size - 1)
        result.append(max(0, idx) if half_pixel else idx)
    return result


def lower_resize_nearest(graph: Graph, op: Operator) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    x = require_types(op, x, tuple(_ELEM_TYPES), "input")
    if len(x.shape) != 4 or len(out.shape) != 4:
        raise refuse(op, "needs 4-D NHWC tensors")
    if x.type_name == "int8" and (x.scale != out.scale or x.zero_point != out.zero_point):
        raise refuse(op, "int8 RESIZE_NEAREST_NEIGHBOR needs the same quantisation in and out")
    b, ih, iw, c = x.shape
    _, oh, ow, _ = out.shape
    ac, hp = bool(op.options.get("alignCorners")), bool(op.options.get("halfPixelCenters"))
    consts = [ConstArray("ymap", "int32_t", np.asarray(_nearest(oh, ih, ac, hp))),
              ConstArray("xmap", "int32_t", np.asarray(_nearest(ow, iw, ac, hp)))]
    code = (f"tfc_resize_nearest({{in0}}, {{out0}}, {b}, {ih}, {iw}, {c}, {oh}, {ow}, {{const:ymap}}, {{const:xmap}}, "
            f"{x.dtype.itemsize});")
    return Step(op, ("pad.c",), code, consts)


LOWERINGS = {
    "ADD": lower_add,
    "LOGISTIC": lower_logistic,
    "MEAN": lower_mean,
    "PAD": lower_pad,
    "PADV2": lower_pad,
    "RESIZE_NEAREST_NEIGHBOR": lower_resize_nearest,
}
