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
* MACs for batch 1: FULLY_CONNECTED = output elements x input depth (its
  weights constant or not: training graphs read them from variables);
  BATCH_MATMUL = output elements x the contracted dimension (K of the left
  operand, honouring adj_x); CONV_2D = output elements x KH x KW x IC;
  DEPTHWISE_CONV_2D = output elements x KH x KW; TRANSPOSE_CONV = input
  elements x KH x KW x OC; CONV_3D likewise. Other operators count 0
  (element-wise ops are cheap next to these on TinyML models);
* flash bytes: the file size, which is what the model occupies in flash;
* planner head (``arena_bytes``): TFLite Micro's *greedy* planner replayed.
  Every non-constant tensor of the main subgraph (activations, inputs,
  outputs, variables) lives from the first to the last operator that touches
  it (inputs from 0, outputs and variable tensors to the end), plus the
  scratch buffers TFLM's reference kernels request (int8/int16 MEAN and SUM:
  one int32 per output element, alive during that operator only). Sizes are
  rounded up to 16 bytes; buffers are placed largest first, equal sizes in
  *descending* buffer id (TFLM fills its sort array from the tail and its
  bubble sort is stable), tensors before scratch buffers, each at the lowest
  offset that does not overlap a placed buffer alive at the same time; the
  head is the highest end offset. It is never below the peak of live bytes
  (also reported, with the plain sum);
* TFLM's whole used arena (``tflm_arena_bytes`` = head + ``tflm_tail_bytes``,
  the figure behind ``tf:tensorArenaBytes``): the tail is TFLM's persistent
  allocations, modelled term by term (:func:`tflm_tail_estimate`) and
  calibrated on the PyPI ``tflite-micro`` interpreter, a *64-bit* host build
  (``print_allocations()``'s "Arena allocation tail"). On a 32-bit
  microcontroller pointers halve, so the tail is smaller; that figure
  (``tflm_arena_bytes_32bit``) is an estimate from the struct layouts, not a
  measurement, and the 64-bit figure is the conservative one matchmaking uses;
* TFLM compatibility (``tflm_unsupported``): a reason when TFLM cannot run
  the model (legacy uint8 quantisation, dynamic-range "hybrid" quantisation
  with int8/uint8 weights and float activations, or no operators), else None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ai_edge_litert import schema_py_generated as schema

ALIGNMENT = 16  # TFLite Micro aligns arena buffers to 16 bytes
WEIGHTED_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D"})
MATMUL_OPS = WEIGHTED_OPS | {"BATCH_MATMUL"}  # the ops whose MACs are counted

# TFLM's persistent tail, per term, as measured on the 64-bit PyPI tflite-micro build (see tflm_tail_estimate).
TAIL_EVAL_TENSOR = 24  # TfLiteEvalTensor (data*, dims*, type), every tensor of the subgraph incl. constants; 12 on 32-bit
TAIL_NODE = 64  # TfLiteNode + registration pointer, per operator; about 40 on 32-bit
TAIL_IO_TENSOR = 64  # the TfLiteTensor struct kept for each of the model's input and output; about 48 on 32-bit
TAIL_IO_QUANT = 64  # their quantisation parameters, if the input or output is integer
TAIL_OP_DATA = 72  # builtin params + the kernel's OpData, per operator (40-80 B by op; mean of the fit); about 56 on 32-bit
TAIL_BOOKKEEPING = 560  # allocator, interpreter graph and subgraph bookkeeping; about 350 on 32-bit
CHANNEL_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})  # always allocate per-channel multiplier+shift
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
    tflm_tail_bytes: int = 0  # TFLM's persistent tail, estimated (64-bit reference build)
    tflm_arena_bytes: int = 0  # arena_bytes + tflm_tail_bytes: TFLM's whole used arena, estimated
    tflm_arena_bytes_32bit: int = 0  # the same for a 32-bit target (pointer-sized fields halved): an estimate
    tflm_unsupported: str | None = None  # why TFLM cannot run the model, or None


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


def _layer_macs(op: str, shapes: dict[str, tuple[int, ...] | None], adj_x: bool = False) -> int:
    out, inp, w = shapes["output"], shapes["input"], shapes["weight"]
    if op == "BATCH_MATMUL" and out is not None and inp is not None and len(inp) >= 2:
        return _product(out) * max(inp[-2] if adj_x else inp[-1], 1)
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
    """Arena size TFLM's greedy planner reaches: place largest first at the lowest non-clashing offset.

    Keys are TFLM's buffer ids (tensor indices, then scratch buffers numbered
    after them). Ties break as TFLM's do: GreedyMemoryPlanner copies the
    online buffers into its sort array from the tail, then sorts by size
    with a stable bubble sort, so of two equal sizes the higher id is placed
    first.
    """
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    arena = 0
    aligned = {t: (sizes[t] + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT for t in sizes}
    order = sorted(sizes, key=lambda t: (-aligned[t], -t))
    for t in order:
        size = aligned[t]
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


def tflm_tail_estimate(n_tensors: int, ops: list[str], io_integer: bool, n_io: int, channel_arrays: list[int],
                       bits: int = 64) -> int:
    """TFLM's persistent tail ("Arena allocation tail") for a model, in bytes.

    Terms (64-bit figures, calibrated on PyPI tflite-micro's host build over
    the compiler tests' models and the project's backbones, each within
    about 140 B of the measured tail):

    * ``TAIL_EVAL_TENSOR`` (24 B) per tensor of the subgraph, constants
      included: TFLM keeps a TfLiteEvalTensor for every one;
    * ``TAIL_NODE`` (64 B) per operator: its TfLiteNode and registration;
    * ``TAIL_IO_TENSOR`` (64 B) per model input and output (their full
      TfLiteTensor structs) plus ``TAIL_IO_QUANT`` (64 B) when they are integer
      (their quantisation parameters);
    * per-channel requantisation: CONV_2D, DEPTHWISE_CONV_2D and
      TRANSPOSE_CONV always, FULLY_CONNECTED when its weights are quantised
      per channel, allocate an int32 multiplier and an int32 shift per output
      channel, each array rounded up to 16 B (``channel_arrays`` holds the
      channel counts): 8 B per channel, the largest term on big CNNs
      (person_detect: 21,904 of its 29,968 B tail);
    * ``TAIL_OP_DATA`` (72 B) per operator: builtin params and kernel OpData
      (40-80 B depending on the op);
    * ``TAIL_BOOKKEEPING`` (560 B): allocator, graph and subgraph structs.

    ``bits=32`` scales the pointer-bearing terms to a 32-bit target's struct
    sizes (eval tensor 12 B, node 40 B, I/O tensor 48 B, op data 56 B,
    bookkeeping 350 B): an estimate, not a measurement.
    """
    def up(n: int) -> int:
        return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT

    if bits == 64:
        eval_tensor, node, io_tensor, op_data, bookkeeping = TAIL_EVAL_TENSOR, TAIL_NODE, TAIL_IO_TENSOR, TAIL_OP_DATA, TAIL_BOOKKEEPING
    else:
        eval_tensor, node, io_tensor, op_data, bookkeeping = 12, 40, 48, 56, 350
    tail = (n_tensors * eval_tensor + 7) // 8 * 8
    tail += len(ops) * (node + op_data)
    tail += n_io * io_tensor + (TAIL_IO_QUANT if io_integer else 0)
    tail += sum(2 * up(4 * c) for c in channel_arrays)
    return tail + bookkeeping


def _tflm_unsupported(layers: list[tuple[str, list[TensorInfo], list[TensorInfo]]]) -> str | None:
    """Why TFLM cannot run these (op, inputs, outputs), or None: legacy uint8 or hybrid quantisation."""
    if not layers:
        return "no operators"
    for index, (op, ins, outs) in enumerate(layers):
        if op in WEIGHTED_OPS and len(ins) > 1 and ins[1].constant:
            w, x = ins[1], ins[0]
            if w.dtype in ("UINT8", "INT8") and x.dtype == "FLOAT32":
                return (f"hybrid (dynamic-range) quantisation: {op} at index {index} has {w.dtype.lower()} weights and "
                        "float32 activations, which TFLite Micro does not run")
        if op not in ("QUANTIZE", "DEQUANTIZE") and any(t.dtype == "UINT8" for t in ins + outs):
            return (f"legacy uint8 quantisation: {op} at index {index} computes on uint8 tensors; TFLite Micro runs "
                    "uint8 only at QUANTIZE/DEQUANTIZE")
    return None


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
    op_tensors: list[tuple[str, list[TensorInfo], list[TensorInfo]]] = []
    channel_arrays: list[int] = []
    scratch: list[tuple[int, int]] = []  # (bytes, operator index): scratch buffers TFLM's reference kernels request
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
        op_tensors.append((name, [tensors[i] for i in ins], [tensors[i] for i in outs]))
        if weight is not None and len(weight.shape) >= 1:
            channels = weight.shape[-1] if name == "DEPTHWISE_CONV_2D" else weight.shape[0]
            if name in CHANNEL_OPS or (name == "FULLY_CONNECTED" and weight.quantization.endswith("per-channel")):
                channel_arrays.append(channels)
        if name in ("MEAN", "SUM") and out is not None and data_in is not None and data_in.dtype in ("INT8", "INT16"):
            scratch.append((4 * _product(out.shape), step))
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
        if name == "BATCH_MATMUL" and ins:  # the left operand's contracted dimension, whichever input is constant
            layer_macs = _layer_macs(name, shapes | {"input": tensors[ins[0]].shape},
                                     adj_x=bool(getattr(op.builtinOptions, "adjX", False)))
        else:
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
    buffers, spans = dict(sizes), dict(lifetimes)
    for k, (nbytes, step) in enumerate(scratch):  # TFLM numbers scratch buffers after every tensor
        buffers[len(tensors) + k], spans[len(tensors) + k] = nbytes, (step, step)
    live = [0] * (end + 1)
    for t, (a, b) in spans.items():
        for step in range(a, b + 1):
            live[step] += buffers[t]
    op_counts: dict[str, int] = {}
    for layer in layers:
        op_counts[layer.op] = op_counts.get(layer.op, 0) + 1
    signatures = tuple(
        (s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else s.signatureKey) for s in model.signatureDefs or []
    )
    head = greedy_arena(buffers, spans)
    io = [tensors[i] for i in _ints(subgraph.inputs) + _ints(subgraph.outputs)]
    tail_args = (len(tensors), [layer.op for layer in layers], any(t.dtype in ("INT8", "UINT8", "INT16") for t in io), len(io),
                 channel_arrays)
    tail = tflm_tail_estimate(*tail_args)
    return ModelFacts(
        file_bytes=len(data),
        subgraph_index=sg_index,
        signatures=signatures,
        inputs=tuple(tensors[i] for i in _ints(subgraph.inputs)),
        outputs=tuple(tensors[i] for i in _ints(subgraph.outputs)),
        layers=tuple(layers),
        parameters=parameters,
        macs=macs,
        arena_bytes=head,
        peak_live_bytes=max(live) if live else 0,
        sum_tensor_bytes=sum(sizes.values()),
        constant_bytes=constant_bytes,
        op_counts=op_counts,
        tflm_tail_bytes=tail,
        tflm_arena_bytes=head + tail,
        tflm_arena_bytes_32bit=head + tflm_tail_estimate(*tail_args, bits=32),
        tflm_unsupported=_tflm_unsupported(op_tensors),
    )


def read_facts_file(path: str | Path) -> ModelFacts:
    """read_facts of a file; ModelReadError (not OSError) if it is missing or unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return read_facts(data)
