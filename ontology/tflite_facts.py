"""Static facts of a .tflite model read from its flatbuffer, without TensorFlow.

The flatbuffer is decoded with the schema module that ships with
``ai_edge_litert`` (generated flatc code over the ``flatbuffers`` package; it
needs neither TensorFlow nor the interpreter). From the *main subgraph* (the
``infer``/``serving_default`` signature if there is one, else subgraph 0) we
derive:

* layers: one per operator, in execution order, with builtin name, data input
  shape, output shape, weight shape and quantisation;
* parameter count: elements of the *constant* weight and bias inputs of
  weighted operators (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D,
  TRANSPOSE_CONV, CONV_3D), once per tensor, plus the elements of every
  resource variable read by READ_VARIABLE (once per VAR_HANDLE): on-device
  training graphs keep their weights and biases in variables, and may add the
  bias with a separate ADD, so counting operator inputs alone would miss them;
* MACs for batch 1: FULLY_CONNECTED = output elements x input depth; CONV_2D =
  output elements x KH x KW x IC; DEPTHWISE_CONV_2D = output elements x KH x
  KW; TRANSPOSE_CONV = input elements x KH x KW x OC. Other operators count 0
  (element-wise ops are cheap next to these on TinyML models);
* flash bytes: the file size, which is what the model occupies in flash;
* tensor-arena estimate: TFLite Micro's *greedy* planner replayed. Every
  non-constant tensor of the main subgraph (activations, inputs, outputs,
  variables) lives from the first to the last operator that touches it
  (inputs from 0, outputs and variable tensors to the end); buffers are
  placed largest first at the lowest 16-byte aligned offset that does not
  overlap a placed buffer alive at the same time; the estimate is the highest
  end offset. It is never below the peak of live bytes and never above their
  sum (both are also reported). Not included: per-op scratch buffers,
  interpreter bookkeeping (a few KB on TFLM) and resource-variable storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ai_edge_litert import schema_py_generated as schema

ALIGNMENT = 16  # TFLite Micro aligns arena buffers to 16 bytes
WEIGHTED_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D"})
_MAIN_SIGNATURES = ("infer", "serving_default")

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_TYPE_BITS = {
    "FLOAT32": 32, "FLOAT16": 16, "INT32": 32, "UINT8": 8, "INT64": 64, "BOOL": 8, "INT16": 16,
    "COMPLEX64": 64, "INT8": 8, "FLOAT64": 64, "COMPLEX128": 128, "UINT64": 64, "UINT32": 32,
    "UINT16": 16, "INT4": 4, "BFLOAT16": 16, "INT2": 2, "UINT4": 4,
}  # fmt: skip


class ModelReadError(ValueError):
    """The file is not a TFLite flatbuffer this reader can follow."""


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    constant: bool
    quantization: str
    nbytes: int


@dataclass(frozen=True)
class LayerInfo:
    index: int
    op: str
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    weight_shape: tuple[int, ...] | None
    quantization: str
    parameters: int
    macs: int


@dataclass(frozen=True)
class ModelFacts:
    """Everything the model describer needs, in plain Python values."""

    file_bytes: int
    subgraph_index: int
    signatures: tuple[str, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    layers: tuple[LayerInfo, ...]
    parameters: int
    macs: int
    arena_bytes: int
    peak_live_bytes: int
    sum_tensor_bytes: int
    constant_bytes: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)


def _ints(values: object) -> list[int]:
    """A flatbuffer int vector as a list; the generated code gives numpy arrays, whose truth value is unusable."""
    return [] if values is None else [int(v) for v in values]  # type: ignore[attr-defined]


def _product(shape: tuple[int, ...] | list[int]) -> int:
    out = 1
    for d in shape:
        out *= max(int(d), 1)  # a dynamic (-1) or empty dimension counts as batch 1
    return out


def _quantization(tensor: schema.TensorT) -> str:
    dtype = _TYPE_NAMES.get(tensor.type, f"TYPE_{tensor.type}").lower()
    q = tensor.quantization
    scales = [] if q is None or q.scale is None else list(q.scale)
    if len(scales) > 1:
        return f"{dtype} per-channel"
    if len(scales) == 1:
        return f"{dtype} per-tensor"
    return dtype


def _main_subgraph(model: schema.ModelT) -> int:
    by_key = {s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else s.signatureKey: s.subgraphIndex
              for s in model.signatureDefs or []}  # fmt: skip
    for key in _MAIN_SIGNATURES:
        if key in by_key:
            return by_key[key]
    return 0


def _layer_macs(op: str, shapes: dict[str, tuple[int, ...] | None]) -> int:
    out, inp, w = shapes["output"], shapes["input"], shapes["weight"]
    if out is None or w is None:
        return 0
    if op == "FULLY_CONNECTED":
        return _product(out) * w[-1]
    if op == "CONV_2D" and len(w) == 4:
        return _product(out) * w[1] * w[2] * w[3]
    if op == "DEPTHWISE_CONV_2D" and len(w) == 4:
        return _product(out) * w[1] * w[2]
    if op == "TRANSPOSE_CONV" and len(w) == 4 and inp is not None:
        return _product(inp) * w[0] * w[1] * w[2]
    if op == "CONV_3D" and len(w) == 5:
        return _product(out) * w[0] * w[1] * w[2] * w[3]
    return 0


def greedy_arena(sizes: dict[int, int], lifetimes: dict[int, tuple[int, int]]) -> int:
    """Arena size a TFLM-style greedy planner reaches: place largest first at the lowest non-clashing offset."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    arena = 0
    order = sorted(sizes, key=lambda t: (-sizes[t], t))
    for t in order:
        size = (sizes[t] + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        if size == 0:
            continue
        first, last = lifetimes[t]
        clashes = sorted((o, s) for o, s, f, l in placed if not (l < first or last < f))
        offset = 0
        for o, s in clashes:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, last))
        arena = max(arena, offset + size)
    return arena


def read_facts(data: bytes) -> ModelFacts:
    """Facts of the model in ``data`` (the bytes of a .tflite file)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelReadError("not a TFLite flatbuffer (missing the 'TFL3' file identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # the generated code raises struct/index/type errors on corrupt input
        raise ModelReadError(f"corrupt TFLite flatbuffer: {type(exc).__name__}: {exc}") from None
    if not model.subgraphs:
        raise ModelReadError("the model has no subgraph")
    opcodes = [
        _OP_NAMES.get(max(c.builtinCode, c.deprecatedBuiltinCode), f"OP_{c.builtinCode}")
        if c.customCode is None else f"CUSTOM:{c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode}"
        for c in model.operatorCodes or []
    ]  # fmt: skip
    buffers = model.buffers or []

    def is_constant(buffer_index: int) -> bool:
        if buffer_index <= 0 or buffer_index >= len(buffers):
            return False
        b = buffers[buffer_index]
        return (b.data is not None and len(b.data) > 0) or b.offset > 1

    constant_bytes = sum(len(b.data) if b.data is not None else b.size for b in buffers)
    sg_index = _main_subgraph(model)
    subgraph = model.subgraphs[sg_index]
    tensors: list[TensorInfo] = []
    for i, t in enumerate(subgraph.tensors or []):
        shape = tuple(_ints(t.shape))
        dtype = _TYPE_NAMES.get(t.type, f"TYPE_{t.type}")
        name = t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
        nbytes = (_product(shape) * _TYPE_BITS.get(dtype, 0) + 7) // 8
        tensors.append(TensorInfo(i, name, shape, dtype, is_constant(t.buffer), _quantization(t), nbytes))

    layers: list[LayerInfo] = []
    counted: set[object] = set()  # tensor indices, and ("var", handle) for variables
    parameters = macs = 0
    first_use: dict[int, int] = {t: 0 for t in _ints(subgraph.inputs)}
    last_use: dict[int, int] = {}
    ops = subgraph.operators or []
    for step, op in enumerate(ops):
        name = opcodes[op.opcodeIndex] if op.opcodeIndex < len(opcodes) else f"OP_INDEX_{op.opcodeIndex}"
        ins = [i for i in _ints(op.inputs) if i >= 0]
        outs = [i for i in _ints(op.outputs) if i >= 0]
        for t in ins + outs:
            first_use.setdefault(t, step)
            last_use[t] = step
        data_in = next((tensors[i] for i in ins if not tensors[i].constant), tensors[ins[0]] if ins else None)
        out = tensors[outs[0]] if outs else None
        weight = tensors[ins[1]] if name in WEIGHTED_OPS and len(ins) > 1 else None
        layer_params = 0
        if weight is not None:
            for t in ins[1:3]:
                if t not in counted and tensors[t].constant:
                    counted.add(t)
                    layer_params += _product(tensors[t].shape)
        elif name == "READ_VARIABLE" and ins and outs and ("var", ins[0]) not in counted:
            counted.add(("var", ins[0]))  # type: ignore[arg-type]
            layer_params += _product(tensors[outs[0]].shape)
        shapes = {
            "input": data_in.shape if data_in else None,
            "output": out.shape if out else None,
            "weight": weight.shape if weight else None,
        }
        layer_macs = _layer_macs(name, shapes)
        parameters += layer_params
        macs += layer_macs
        layers.append(
            LayerInfo(
                index=step,
                op=name,
                input_shape=shapes["input"],
                output_shape=shapes["output"],
                weight_shape=shapes["weight"],
                quantization=(weight or out or data_in).quantization if (weight or out or data_in) else "unknown",
                parameters=layer_params,
                macs=layer_macs,
            )
        )
    end = max(len(ops) - 1, 0)
    for t in _ints(subgraph.outputs):
        last_use[t] = end
    sizes: dict[int, int] = {}
    lifetimes: dict[int, tuple[int, int]] = {}
    for t in set(first_use) | set(last_use):
        info = tensors[t]
        if info.constant or info.nbytes == 0:
            continue
        variable = bool(subgraph.tensors[t].isVariable)
        sizes[t] = info.nbytes
        lifetimes[t] = (0, end) if variable else (first_use.get(t, 0), last_use.get(t, end))
    live = [0] * (end + 1)
    for t, (a, b) in lifetimes.items():
        for step in range(a, b + 1):
            live[step] += sizes[t]
    op_counts: dict[str, int] = {}
    for layer in layers:
        op_counts[layer.op] = op_counts.get(layer.op, 0) + 1
    signatures = tuple(
        (s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else s.signatureKey) for s in model.signatureDefs or []
    )
    return ModelFacts(
        file_bytes=len(data),
        subgraph_index=sg_index,
        signatures=signatures,
        inputs=tuple(tensors[i] for i in _ints(subgraph.inputs)),
        outputs=tuple(tensors[i] for i in _ints(subgraph.outputs)),
        layers=tuple(layers),
        parameters=parameters,
        macs=macs,
        arena_bytes=greedy_arena(sizes, lifetimes),
        peak_live_bytes=max(live) if live else 0,
        sum_tensor_bytes=sum(sizes.values()),
        constant_bytes=constant_bytes,
        op_counts=op_counts,
    )


def read_facts_file(path: str | Path) -> ModelFacts:
    """read_facts of a file; ModelReadError (not OSError) if it is missing or unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return read_facts(data)
