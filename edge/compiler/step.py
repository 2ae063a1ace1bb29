"""What lowering one operator yields: the C call, its constant arrays, and what the planner may do with its memory.

Why a plain record: the planner decides where tensors live only after every
op is lowered, so a step names tensors by placeholder (``{in0}``, ``{out0}``,
``{scratch}``) and the emitter substitutes pointer expressions afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.compiler.errors import UnsupportedModelError
from edge.compiler.graph import Graph, Operator, Tensor

C_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float", "uint8": "uint8_t"}


@dataclass(frozen=True)
class ConstArray:
    """A ``static const`` array of the generated model (weights, biases, per-channel multipliers): flash."""

    suffix: str  # the C name is {prefix}_op{index}_{suffix}
    c_type: str
    values: np.ndarray


@dataclass(frozen=True)
class ConstStruct:
    """A ``static const`` struct of kernel parameters (window geometry, broadcast strides): flash, one element."""

    suffix: str
    c_type: str
    initializer: str  # the text between the outer braces


@dataclass
class Step:
    """One operator, lowered.

    ``code`` is a C statement with ``{in0}``.. ``{out0}`` ``{scratch}`` and
    ``{const:suffix}`` placeholders. ``alias`` marks ops whose output is the
    input's bytes reinterpreted (RESHAPE): no code unless the planner must
    copy. ``inplace`` marks ops whose output may overwrite input 0 when input
    0 dies here: elementwise ops with ``code`` as is, others (depthwise
    convolution) with a different kernel, ``inplace_code``. ``macs`` feeds
    the benchmark.
    """

    op: Operator
    kernels: tuple[str, ...] = ()
    code: str = ""
    consts: list[ConstArray | ConstStruct] = field(default_factory=list)
    scratch_bytes: int = 0
    inplace: bool = False
    alias: bool = False
    macs: int = 0
    inplace_shrinks: bool = False  # in place even when the output is smaller than input 0 (strided depthwise)
    inplace_code: str | None = None  # the call to emit instead of ``code`` when the planner runs it in place
    inplace_scratch: int = 0  # scratch bytes of ``inplace_code``
    scratch_align: int = 4  # alignment the scratch needs (1 for int8 buffers, 4 for int32/float)


def refuse(op: Operator, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(why, op_name=op.name, op_index=op.index)


def tensors(graph: Graph, op: Operator) -> tuple[list[Tensor | None], list[Tensor]]:
    """The op's input tensors (None for an absent optional input) and output tensors."""
    return [graph.tensor(i) for i in op.inputs], [graph.tensors[i] for i in op.outputs]


def require_types(op: Operator, tensor: Tensor | None, allowed: tuple[str, ...], role: str) -> Tensor:
    if tensor is None:
        raise refuse(op, f"the {role} tensor is missing")
    if tensor.type_name not in allowed:
        raise refuse(op, f"{role} type {tensor.type_name} is not supported (supported: {', '.join(allowed)})")
    return tensor


def require_constant(op: Operator, tensor: Tensor | None, role: str) -> Tensor:
    if tensor is None or tensor.data is None:
        raise refuse(op, f"the {role} must be a constant tensor")
    return tensor


def c_float(x: float) -> str:
    """A float32 literal that round-trips exactly."""
    v = float(np.float32(x))
    if v == float("inf"):
        return "INFINITY"
    if v == float("-inf"):
        return "-INFINITY"
    return f"{v!r}f" if "e" in repr(v) or "." in repr(v) else f"{v!r}.0f"


def c_double(x: float) -> str:
    r = repr(float(x))
    return r if ("e" in r or "." in r) else r + ".0"


def c_ints(values) -> str:
    """A brace-enclosed int list, for struct initialisers."""
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def extend_dims(shape: tuple[int, ...], n: int = 6) -> list[int]:
    """The shape left-padded with 1s to ``n`` dimensions, as TFLM's RuntimeShape::ExtendedShape."""
    if len(shape) > n:
        raise ValueError(f"shape {shape} has more than {n} dimensions")
    return [1] * (n - len(shape)) + [int(d) for d in shape]


def wrap_int32(values) -> np.ndarray:
    """Integers reduced to int32 two's complement: the compile-time half of a sum the kernel finishes in int32."""
    return ((np.asarray(values, np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int64)


def folded_bias(bias, weights: np.ndarray, input_offset: int) -> np.ndarray:
    """bias + input_offset * (sum of each output channel's weights): sum w*(x + off) = sum w*x + off*sum w."""
    sums = np.asarray(weights, np.int64).reshape(weights.shape[0], -1).sum(axis=1)
    base = np.zeros(weights.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    return wrap_int32(base + int(input_offset) * sums)
