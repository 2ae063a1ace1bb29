"""Lowering of the windowed NHWC ops: CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D.

Why the geometry is a const struct: the four kernels share it (strides,
dilations, TFLM's top/left padding), and one ``tfc_conv_geom`` in flash is
smaller than sixteen arguments at every call site.
"""

from __future__ import annotations

import numpy as np

from edge.compiler import quant
from edge.compiler.graph import Graph, Operator, Tensor
from edge.compiler.step import (ConstArray, ConstStruct, Step, c_float, c_ints, folded_bias, refuse, require_constant,
                                require_types, tensors)

INT8_FLOAT = ("int8", "float32")
_SAME, _VALID = 0, 1


def _padding(op: Operator, padding: int, stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """TFLM's ComputePaddingHeightWidth: the top/left padding (the odd cell goes bottom/right)."""
    effective = (filter_size - 1) * dilation + 1
    expected = (in_size + stride - 1) // stride if padding == _SAME else (in_size + stride - effective) // stride
    if padding not in (_SAME, _VALID) or expected != out_size:
        raise refuse(op, f"padding {padding} with stride {stride} gives {expected} outputs, the model says {out_size}")
    return max((out_size - 1) * stride + effective - in_size, 0) // 2


def _geometry(op: Operator, x: Tensor, out: Tensor, fh: int, fw: int, filter_in_depth: int) -> str:
    """The kernel's window geometry. With ``fusedPad`` (edge.compiler.fuse) the window is laid out on the
    padded shape the model describes but reads the unpadded tensor ``x``, so the PAD adds to the offset."""
    if len(x.shape) != 4 or len(out.shape) != 4:
        raise refuse(op, f"needs 4-D NHWC tensors, got {x.shape} -> {out.shape}")
    o = op.options
    sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
    dh, dw = int(o.get("dilationHFactor", 1) or 1), int(o.get("dilationWFactor", 1) or 1)
    b, ih, iw, ic = x.shape
    _, oh, ow, oc = out.shape
    top, left, padded = o.get("fusedPad", (0, 0, x.shape))
    ph = top + _padding(op, int(o.get("padding", 0)), sh, dh, padded[1], fh, oh)
    pw = left + _padding(op, int(o.get("padding", 0)), sw, dw, padded[2], fw, ow)
    return c_ints([b, ih, iw, ic, oh, ow, oc, fh, fw, filter_in_depth, sh, sw, dh, dw, ph, pw])[1:-1]


def _activation(op: Operator) -> int:
    activation = int(op.options.get("fusedActivationFunction", 0))
    if activation not in (0, 1, 2, 3):
        raise refuse(op, f"fused activation {activation} is not supported")
    return activation


def _conv_like(graph: Graph, op: Operator, depthwise: bool) -> Step:
    ins, (out,) = tensors(graph, op)
    x = require_types(op, ins[0], INT8_FLOAT, "input")
    w = require_constant(op, ins[1] if len(ins) > 1 else None, "filter")
    bias = ins[2] if len(ins) > 2 else None
    if x.type_name == "float32" and w.type_name != "float32":
        raise refuse(op, f"hybrid quantisation (float32 input, {w.type_name} filter) is not supported, as in TFLM")
    if w.type_name != x.type_name or out.type_name != x.type_name:
        raise refuse(op, f"input {x.type_name}, filter {w.type_name}, output {out.type_name}: mixed types are not supported")
    if bias is not None and bias.data is None:
        raise refuse(op, "the bias must be a constant tensor")
    _, fh, fw, fd = (int(d) for d in w.shape)
    in_depth, out_depth = int(x.shape[3]), int(out.shape[3])
    filter_in_depth = in_depth if depthwise else fd
    if depthwise and (fd != out_depth or out_depth % in_depth):
        raise refuse(op, f"depthwise filter depth {fd} does not fit {in_depth} -> {out_depth} channels")
    if not depthwise and (in_depth % fd or out_depth % (in_depth // fd)):
        raise refuse(op, f"filter depth {fd} does not divide input depth {in_depth}")
    geom = _geometry(op, x, out, fh, fw, filter_in_depth)
    activation = _activation(op)
    kind = "depthwise" if depthwise else "conv"
    is_float = x.type_name == "float32"
    consts: list = [ConstStruct("geom", "tfc_conv_geom", geom), ConstArray("w", "float" if is_float else "int8_t", w.data.reshape(-1))]
    bias_expr = "NULL"
    if bias is not None:
        if not is_float and bias.type_name != "int32":
            raise refuse(op, f"int8 {op.name} needs an int32 bias, not {bias.type_name}")
        consts.append(ConstArray("b", "float" if is_float else "int32_t", bias.data.reshape(-1)))
        bias_expr = "{const:b}"
    macs = out.elements * fh * fw * (1 if depthwise else fd)
    mult_arg = f"{out_depth // in_depth}, " if depthwise else ""
    inplace = depthwise and out_depth == in_depth  # multiplier 1: one input channel per output channel
    plane = int(x.shape[1]) * int(x.shape[2]) * x.dtype.itemsize
    if is_float:
        lo, hi = quant.float_activation_range(activation)
        code = f"tfc_{kind}_f32({{in0}}, {{const:w}}, {bias_expr}, {{out0}}, {{const:geom}}, {mult_arg}{c_float(lo)}, {c_float(hi)});"
        inplace_code = (f"tfc_depthwise_inplace_f32({{out0}}, {{const:w}}, {bias_expr}, {{const:geom}}, {c_float(lo)}, {c_float(hi)}, "
                        f"(float *){{scratch}});")
        return Step(op, ("conv.c",), code, consts, macs=macs, inplace=inplace, inplace_shrinks=True,
                    inplace_code=inplace_code if inplace else None, inplace_scratch=plane)
    scales = w.scales if len(w.scales) > 1 else [w.scale] * out_depth
    mults, shifts = quant.per_channel_multipliers(x.scale, scales, out.scale)
    consts += [ConstArray("mult", "int32_t", np.asarray(mults)), ConstArray("shift", "int32_t", np.asarray(shifts))]
    lo, hi = quant.activation_range(activation, out.scale, out.zero_point)
    # windows wholly inside the image start from bias + offset * sum(filter): a plain dot product each
    per_channel_filter = w.data if not depthwise else np.moveaxis(w.data.reshape(-1, out_depth), -1, 0)
    consts.append(ConstArray("bfull", "int32_t", folded_bias(None if bias is None else bias.data, per_channel_filter, -x.zero_point)))
    tail = f"{-x.zero_point}, {out.zero_point}, {{const:mult}}, {{const:shift}}, {lo}, {hi}"
    if depthwise:
        code = f"tfc_depthwise_s8({{in0}}, {{const:w}}, {bias_expr}, {{const:bfull}}, {{out0}}, {{const:geom}}, {mult_arg}{tail});"
        scratch = 0
    else:  # an im2col patch of one window (none for 1x1 filters, nor grouped convs, which take the per-tap path)
        scratch = fh * fw * in_depth if (fh * fw > 1 and filter_in_depth == in_depth) else 0
        patch = "(int8_t *){scratch}" if scratch else "NULL"
        code = f"tfc_conv_s8({{in0}}, {{const:w}}, {bias_expr}, {{const:bfull}}, {{out0}}, {{const:geom}}, {tail}, {patch});"
    inplace_code = (f"tfc_depthwise_inplace_s8({{out0}}, {{const:w}}, {bias_expr}, {{const:bfull}}, {{const:geom}}, {tail}, "
                    f"(int8_t *){{scratch}});")
    return Step(op, ("conv.c",), code, consts, macs=macs, inplace=inplace, inplace_shrinks=True,
                inplace_code=inplace_code if inplace else None, inplace_scratch=plane, scratch_bytes=scratch, scratch_align=1)


def lower_conv(graph: Graph, op: Operator) -> Step:
    return _conv_like(graph, op, depthwise=False)


def lower_depthwise(graph: Graph, op: Operator) -> Step:
    return _conv_like(graph, op, depthwise=True)


def _pool(graph: Graph, op: Operator, kind: str) -> Step:
    (x, *_), (out,) = tensors(graph, op)
    x = require_types(op, x, INT8_FLOAT, "input")
    if out.type_name != x.type_name:
        raise refuse(op, "input and output types differ")
    if x.type_name == "int8" and (abs(x.scale - out.scale) > 1e-6 or x.zero_point != out.zero_point):
        raise refuse(op, "int8 pooling needs the same scale and zero point in and out (TFLM checks it too)")
    fh, fw = int(op.options.get("filterHeight", 1)), int(op.options.get("filterWidth", 1))
    geom = _geometry(op, x, out, fh, fw, int(x.shape[3]))
    activation = _activation(op)
    if x.type_name == "float32":
        lo, hi = quant.float_activation_range(activation)
        code = f"tfc_{kind}_pool_f32({{in0}}, {{out0}}, {{const:geom}}, {c_float(lo)}, {c_float(hi)});"
    else:
        lo, hi = quant.activation_range(activation, out.scale, out.zero_point)
        code = f"tfc_{kind}_pool_s8({{in0}}, {{out0}}, {{const:geom}}, {lo}, {hi});"
    return Step(op, ("pool.c",), code, [ConstStruct("geom", "tfc_conv_geom", geom)])


def lower_avg_pool(graph: Graph, op: Operator) -> Step:
    return _pool(graph, op, "avg")


def lower_max_pool(graph: Graph, op: Operator) -> Step:
    return _pool(graph, op, "max")


LOWERINGS = {
    "CONV_2D": lower_conv,
    "DEPTHWISE_CONV_2D": lower_depthwise,
    "AVERAGE_POOL_2D": lower_avg_pool,
    "MAX_POOL_2D": lower_max_pool,
}
