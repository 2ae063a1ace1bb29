"""Graph rewrites before lowering: a zero PAD folded into the convolution that reads it.

Why: ``PAD -> CONV_2D (VALID)`` is how converters spell asymmetric or
explicit padding (Keras ``ZeroPadding2D``), and the padded tensor costs a
whole activation of RAM. A convolution already skips taps outside the image,
and a tap on a pad cell holding the zero point contributes
``w * (zp - zp) = 0`` (a float 0.0 contributes 0), so reading the unpadded
tensor with the pad added to the window's top/left offset gives the very
same sums, so the same bytes as TFLM's two ops.

Legal when: the PAD (or PADV2 whose constant is the zero point / 0.0) pads
only height and width, its output has exactly one reader, a CONV_2D or
DEPTHWISE_CONV_2D, and is not the graph's output. Average pooling is left
alone (TFLM counts pad cells in the average); max pooling too (a pad cell
can be the maximum).
"""

from __future__ import annotations

import numpy as np

from edge.compiler.graph import Graph, Operator

_FUSABLE_READERS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _zero_pad(graph: Graph, op: Operator) -> tuple[int, int] | None:
    """(top, left) of a PAD that only pads H and W with the zero point; None if it is not one."""
    if op.name not in ("PAD", "PADV2") or len(op.inputs) < 2 or len(op.outputs) != 1:
        return None
    x, pads_t, out = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensors[op.outputs[0]]
    if x is None or x.is_constant or pads_t is None or pads_t.data is None or len(x.shape) != 4:
        return None
    if x.type_name not in ("int8", "float32") or out.type_name != x.type_name:
        return None
    pads = np.asarray(pads_t.data).reshape(-1, 2)
    if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any():
        return None
    if x.type_name == "int8" and (x.zero_point != out.zero_point or x.scale != out.scale):
        return None
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = graph.tensor(op.inputs[2])
        if value is None or value.data is None:
            return None
        v = float(np.asarray(value.data).reshape(-1)[0])
        if v != (out.zero_point if x.type_name == "int8" else 0.0):
            return None
    return int(pads[1, 0]), int(pads[2, 0])


def fuse_pads(graph: Graph) -> Graph:
    """The graph with every legal zero PAD folded into its convolution (the reader gets option ``fusedPad``)."""
    readers: dict[int, list[Operator]] = {}
    for op in graph.operators:
        for t in op.inputs:
            if t >= 0:
                readers.setdefault(t, []).append(op)
    dropped: set[int] = set()
    rewritten: dict[int, Operator] = {}
    for op in graph.operators:
        top_left = _zero_pad(graph, op)
        if top_left is None:
            continue
        padded = op.outputs[0]
        users = readers.get(padded, [])
        if padded == graph.output or len(users) != 1 or users[0].name not in _FUSABLE_READERS or users[0].inputs[0] != padded:
            continue
        conv = rewritten.get(users[0].index, users[0])
        options = dict(conv.options, fusedPad=(top_left[0], top_left[1], graph.tensors[padded].shape))
        rewritten[conv.index] = Operator(conv.index, conv.name, (op.inputs[0], *conv.inputs[1:]), conv.outputs, options)
        dropped.add(op.index)
    if not dropped:
        return graph
    operators = [rewritten.get(op.index, op) for op in graph.operators if op.index not in dropped]
    return Graph(tensors=graph.tensors, operators=operators, input=graph.input, output=graph.output)
