"""A .tflite flatbuffer as a small typed graph: tensors (shape, dtype, quantisation, constant data) and operators.

Why a graph of our own: the planner and the C emitter need exactly these
facts and nothing of TensorFlow; ``ai_edge_litert``'s generated schema reads
the flatbuffer (the describer reads it the same way) without importing an
interpreter, so this works wherever ``edge`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.compiler.errors import UnsupportedModelError

# tflite::TensorType -> numpy dtype, for the types the compiler can meet.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.float32), 1: np.dtype(np.float16), 2: np.dtype(np.int32), 3: np.dtype(np.uint8),
    4: np.dtype(np.int64), 6: np.dtype(np.bool_), 7: np.dtype(np.int16), 9: np.dtype(np.int8),
}  # fmt: skip
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16", 9: "int8"}


@dataclass
class Tensor:
    """One tensor of subgraph 0. ``data`` is set for constants (weights, biases, shapes) kept in flash."""

    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    zero_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quantized_dimension: int = 0
    data: np.ndarray | None = None

    @property
    def dtype(self) -> np.dtype:
        return _DTYPES[_type_code(self.type_name)]

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.elements * self.dtype.itemsize

    @property
    def scale(self) -> float:
        """The per-tensor scale (float32, as TFLM holds it); 0.0 when unquantised."""
        return float(self.scales[0]) if len(self.scales) else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if len(self.zero_points) else 0

    @property
    def is_constant(self) -> bool:
        return self.data is not None


def _type_code(name: str) -> int:
    return next(code for code, n in _TYPE_NAMES.items() if n == name)


@dataclass
class Operator:
    """One operator: its builtin name, tensor indices (-1 = optional input absent) and builtin options."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]


@dataclass
class Graph:
    """Subgraph 0 of a model with one input and one output, the only shape ``model_invoke`` can serve."""

    tensors: list[Tensor]
    operators: list[Operator]
    input: int
    output: int

    def tensor(self, index: int) -> Tensor | None:
        return None if index < 0 else self.tensors[index]


def _op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _options(op: Any) -> dict[str, Any]:
    opts = op.builtinOptions
    if opts is None:
        return {}
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(opts).items()}


def read_graph(data: bytes) -> Graph:
    """Parse a .tflite flatbuffer into a Graph; refuse models ``model_invoke`` cannot express."""
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UnsupportedModelError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if not model.subgraphs:
        raise UnsupportedModelError("the model has no subgraph")
    if len(model.subgraphs) > 1:
        raise UnsupportedModelError(f"the model has {len(model.subgraphs)} subgraphs; only single-subgraph models compile")
    sub = model.subgraphs[0]
    names = _op_names()
    tensors = []
    for i, t in enumerate(sub.tensors):
        type_name = _TYPE_NAMES.get(int(t.type), f"type{int(t.type)}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        q = t.quantization
        tensor = Tensor(index=i, name=(t.name or b"").decode(errors="replace"), shape=shape, type_name=type_name)
        if q is not None and q.scale is not None and len(q.scale):
            tensor.scales = np.asarray(q.scale, np.float32)
            tensor.zero_points = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale), np.int64)
            tensor.quantized_dimension = int(q.quantizedDimension)
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buffer is not None and buffer.data is not None and len(buffer.data):
            if type_name not in ("float32", "int32", "int8", "int16", "uint8", "int64", "float16"):
                raise UnsupportedModelError(f"tensor {i} has constant data of type {type_name}")
            raw = np.asarray(buffer.data, np.uint8).tobytes()
            tensor.data = np.frombuffer(raw, tensor.dtype).reshape(shape).copy()
        tensors.append(tensor)
    operators = []
    for i, op in enumerate(sub.operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM({(code.customCode or b'').decode(errors='replace')})"
        ins = tuple(int(x) for x in (op.inputs if op.inputs is not None else []))
        outs = tuple(int(x) for x in (op.outputs if op.outputs is not None else []))
        operators.append(Operator(index=i, name=name, inputs=ins, outputs=outs, options=_options(op)))
    inputs, outputs = list(sub.inputs if sub.inputs is not None else []), list(sub.outputs if sub.outputs is not None else [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(f"model_invoke serves one input and one output; the model has {len(inputs)} and {len(outputs)}")
    return Graph(tensors=tensors, operators=operators, input=int(inputs[0]), output=int(outputs[0]))
