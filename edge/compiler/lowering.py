"""Operator name -> lowering function, and the model-wide refusals TFLM makes too.

Why one table: the supported-op list, the refusal message and the benchmark's
op census all read it, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.compiler.errors import UnsupportedModelError
from edge.compiler.graph import Graph, Operator
from edge.compiler.lower_basic import LOWERINGS as BASIC
from edge.compiler.lower_misc import LOWERINGS as MISC
from edge.compiler.lower_window import LOWERINGS as WINDOW
from edge.compiler.step import Step

LOWERINGS: dict[str, Callable[[Graph, Operator], Step]] = {**BASIC, **WINDOW, **MISC}


def supported_ops() -> list[str]:
    return sorted(LOWERINGS)


_UINT8_OK = {"QUANTIZE", "DEQUANTIZE"}  # converting a uint8 model input/output to and from int8, as TFLM does


def _check_legacy_uint8(graph: Graph, op: Operator) -> None:
    if op.name in _UINT8_OK:
        return
    for t in op.inputs + op.outputs:
        if t >= 0 and graph.tensors[t].type_name == "uint8":
            raise UnsupportedModelError(
                "legacy uint8 quantisation is not supported (TFLM refuses it too); re-quantise to int8",
                op_name=op.name, op_index=op.index)


def lower(graph: Graph) -> list[Step]:
    """One Step per operator, or UnsupportedModelError naming the first op that cannot be compiled."""
    steps = []
    for op in graph.operators:
        _check_legacy_uint8(graph, op)
        fn = LOWERINGS.get(op.name)
        if fn is None:
            raise UnsupportedModelError(f"op {op.name} is not supported; supported: {', '.join(supported_ops())}",
                                        op_name=op.name, op_index=op.index)
        steps.append(fn(graph, op))
    return steps
