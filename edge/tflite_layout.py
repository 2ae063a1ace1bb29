"""Static RAM accounting for a .tflite model, read straight from its flatbuffer.

The Python interpreters expose no arena size (the ai_edge_litert 2.3 and
tflite_runtime 2.14 wrappers have no ArenaUsedBytes), and their tensor details
do not say which tensors are constants kept in flash. So the few schema fields
needed are read here with ``struct``, without the ``flatbuffers`` package or
any interpreter, which keeps this usable on a device and identical across
backends.

What is counted for a subgraph: the bytes of every tensor that has no constant
data in the model, at the shape stored in the model (a dynamic batch
dimension is stored as 1). Their sum (``tensor_bytes``) is an *upper bound*
on the tensor arena TFLite allocates for a batch of one, since its planner
reuses memory between tensors whose lifetimes do not overlap; the largest
amount alive at one operator (``peak_bytes``) is what a perfect planner
would need. Not counted: constants (they stay in flash or the memory-mapped
file), resource-variable storage (counted by learners as their weights),
string/resource/variant tensors (no static size), per-op scratch buffers,
interpreter bookkeeping and delegate memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Bits per element of each tflite::TensorType (schema.fbs); 0 = no static size.
_TYPE_BITS = {
    0: 32, 1: 16, 2: 32, 3: 8, 4: 64, 5: 0, 6: 8, 7: 16, 8: 64, 9: 8, 10: 64, 11: 128,
    12: 64, 13: 0, 14: 0, 15: 32, 16: 16, 17: 4, 18: 16, 19: 2, 20: 4, 21: 8, 22: 8,
}  # fmt: skip
_FULLY_CONNECTED = 9  # tflite::BuiltinOperator


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= max(v, 1)
    return result


class LayoutError(ValueError):
    """The bytes are not a TFLite flatbuffer this reader can follow."""


@dataclass(frozen=True)
class ModelLayout:
    """Static per-subgraph facts of a model and its signature -> subgraph map.

    ``tensor_bytes``: all non-constant tensors added up, an upper bound on the
    arena. ``peak_bytes``: the most non-constant tensor bytes alive at once
    while the operators run in file order, close to what a good arena
    planner achieves (it cannot do better, but op scratch buffers come on
    top). ``dense_macs``: multiply-accumulates of the FULLY_CONNECTED ops for
    the stored (batch-one) shapes; other op types are not counted.
    """

    signatures: dict[str, int]
    tensor_bytes: tuple[int, ...]
    peak_bytes: tuple[int, ...]
    dense_macs: tuple[int, ...]
    constant_bytes: int

    def signature_bytes(self, key: str) -> int:
        """Upper bound on the arena of the subgraph that runs signature ``key``."""
        return self.tensor_bytes[self.signatures[key]]


class _Reader:
    """Just enough of the flatbuffer wire format: tables, vectors, scalars, strings."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _u(self, fmt: str, pos: int) -> int:
        if pos < 0:  # struct would silently count from the end
            raise struct.error(f"offset {pos} points before the start of the model")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or None if absent."""
        vtable = table - self._u("<i", table)
        entry = 4 + 2 * index
        if entry >= self._u("<H", vtable):
            return None
        offset = self._u("<H", vtable + entry)
        return table + offset if offset else None

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        pos = self.field(table, index)
        return default if pos is None else self._u(fmt, pos)

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(position of the first element, length) of a vector field; (0, 0) if absent."""
        pos = self.field(table, index)
        if pos is None:
            return 0, 0
        start = pos + self._u("<I", pos)
        return start + 4, self._u("<I", start)

    def tables(self, table: int, index: int) -> list[int]:
        start, n = self.vector(table, index)
        return [start + 4 * i + self._u("<I", start + 4 * i) for i in range(n)]

    def ints(self, table: int, index: int) -> list[int]:
        start, n = self.vector(table, index)
        return [self._u("<i", start + 4 * i) for i in range(n)]

    def string(self, table: int, index: int) -> str:
        start, n = self.vector(table, index)
        return self.data[start : start + n].decode()


def _peak_live_bytes(sizes: dict[int, int], ops: list[tuple[list[int], list[int]]], inputs: list[int], outputs: list[int]) -> int:
    """Largest sum of sizes of tensors alive at one operator; a tensor lives from first to last use."""
    last_step = max(len(ops) - 1, 0)
    first: dict[int, int] = {t: 0 for t in inputs if t in sizes}
    last: dict[int, int] = {t: last_step for t in outputs if t in sizes}
    for step, (op_inputs, op_outputs) in enumerate(ops):
        for t in op_inputs + op_outputs:
            if t in sizes:
                first.setdefault(t, step)
                last[t] = max(last.get(t, step), step)
    live = [0] * (last_step + 1)
    for t, begin in first.items():
        for step in range(begin, last.get(t, begin) + 1):
            live[step] += sizes[t]
    return max(live)


def read_layout(data: bytes) -> ModelLayout:
    """Parse the model's buffers, subgraphs (tensors, operators) and signature defs."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise LayoutError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    r = _Reader(data)
    try:
        model = r._u("<I", 0)
        constant_buffers = set()
        constant_bytes = 0
        for i, buffer in enumerate(r.tables(model, 4)):  # Model.buffers
            size = r.vector(buffer, 0)[1] or r.scalar(buffer, 2, "<Q")  # Buffer.data, or external Buffer.size
            if i > 0 and (size or r.scalar(buffer, 1, "<Q") > 1):  # buffer 0 is the empty sentinel
                constant_buffers.add(i)
                constant_bytes += size
        opcodes = [  # OperatorCode.builtin_code, or deprecated_builtin_code in old files
            max(r.scalar(code, 3, "<i"), r.scalar(code, 0, "<b")) for code in r.tables(model, 1)
        ]
        totals, peaks, macs = [], [], []
        for subgraph in r.tables(model, 2):  # Model.subgraphs
            sizes: dict[int, int] = {}  # non-constant tensor index -> bytes
            shapes: list[list[int]] = []
            for index, tensor in enumerate(r.tables(subgraph, 0)):  # SubGraph.tensors
                shapes.append(r.ints(tensor, 0))  # Tensor.shape
                if r.scalar(tensor, 2, "<I") in constant_buffers:  # Tensor.buffer
                    continue
                elements = 1
                for dim in shapes[-1]:
                    elements *= max(dim, 1)
                sizes[index] = (elements * _TYPE_BITS.get(r.scalar(tensor, 1, "<b"), 0) + 7) // 8  # Tensor.type
            ops = []
            dense = 0
            for op in r.tables(subgraph, 3):  # SubGraph.operators
                op_inputs, op_outputs = r.ints(op, 1), r.ints(op, 2)
                ops.append((op_inputs, op_outputs))
                if opcodes[r.scalar(op, 0, "<I")] == _FULLY_CONNECTED and len(op_inputs) > 1:
                    filter_shape, input_shape = shapes[op_inputs[1]], shapes[op_inputs[0]]
                    rows = max(_product(input_shape) // max(filter_shape[-1], 1), 1)
                    dense += _product(filter_shape) * rows
            totals.append(sum(sizes.values()))
            peaks.append(_peak_live_bytes(sizes, ops, r.ints(subgraph, 1), r.ints(subgraph, 2)))
            macs.append(dense)
        signatures = {
            r.string(sig, 2): r.scalar(sig, 4, "<I")  # SignatureDef.signature_key, .subgraph_index
            for sig in r.tables(model, 7)  # Model.signature_defs
        }
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise LayoutError(f"malformed TFLite flatbuffer: {exc}") from exc
    return ModelLayout(
        signatures=signatures,
        tensor_bytes=tuple(totals),
        peak_bytes=tuple(peaks),
        dense_macs=tuple(macs),
        constant_bytes=constant_bytes,
    )
