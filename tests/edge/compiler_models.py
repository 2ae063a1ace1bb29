"""Small models the compiler tests build with TensorFlow (one per op and variant), and TFLM as the reference.

Models are plain ``tf.Module`` functions converted from concrete functions
(as server/models does), so each op appears exactly as TFLite's converter
emits it. Each is converted once per test session into pytest's temp dir.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

_CACHE: dict[str, "ModelFile"] = {}
_HOST_RUNS: dict[str, tuple[Path, np.ndarray, np.ndarray]] = {}
N_SAMPLES = 64  # seeded random inputs per model for the exactness tests


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path
    dtype: str  # "int8" (int8 in/out), "int8_float_io" / "uint8_io" (float / uint8 in and out, int8 inside) or "float32"
    input_shape: tuple[int, ...]

    def random_inputs(self, n: int, seed: int = 0) -> np.ndarray:
        """Seeded inputs: int8 uniform over the whole range, float normal with unit scale."""
        rng = np.random.default_rng(seed)
        if self.dtype == "int8":
            return rng.integers(-128, 128, size=(n, *self.input_shape), dtype=np.int8)
        if self.dtype == "uint8_io":
            return rng.integers(0, 256, size=(n, *self.input_shape), dtype=np.uint8)
        return rng.normal(0.0, 1.0, size=(n, *self.input_shape)).astype(np.float32)


def _convert(fn: Callable, input_shape: tuple[int, ...], dtype: str, per_channel: bool, seed: int) -> bytes:
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(fn, input_signature=[tf.TensorSpec(input_shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
    if dtype == "float32":
        return converter.convert()
    rng = np.random.default_rng(seed + 1000)

    def dataset() -> Iterator[list[np.ndarray]]:
        for _ in range(64):
            yield [rng.normal(0.0, 1.0, size=input_shape).astype(np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if dtype in ("int8", "uint8_io"):
        converter.inference_input_type = tf.int8 if dtype == "int8" else tf.uint8
        converter.inference_output_type = tf.int8 if dtype == "int8" else tf.uint8
    if not per_channel:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        converter._experimental_disable_per_channel = True
    return converter.convert()


def _weights(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return (rng.normal(0.0, scale / np.sqrt(shape[0]), size=shape)).astype(np.float32)


def mlp(activation: str = "none", softmax: bool = False, hidden: tuple[int, ...] = (24, 12), n_in: int = 10, seed: int = 0) -> Callable:
    """Dense layers with a fused activation (none, relu, relu6) or tanh between them, optionally a softmax."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    sizes = (n_in, *hidden)
    layers = [(tf.constant(_weights(rng, a, b, scale=2.0)), tf.constant(rng.normal(0, 0.3, b).astype(np.float32))) for a, b in zip(sizes, sizes[1:])]
    act = {"none": lambda h: h, "relu": tf.nn.relu, "relu6": tf.nn.relu6, "tanh": tf.tanh}[activation]

    def f(x):
        h = x
        for w, b in layers:
            h = act(tf.matmul(h, w) + b)
        return tf.nn.softmax(h) if softmax else h

    return f


def conv(kind: str = "conv", strides: int = 1, padding: str = "SAME", dilation: int = 1, activation: str = "relu",
         channels: int = 4, seed: int = 0) -> Callable:
    """A CONV_2D or DEPTHWISE_CONV_2D (multiplier 2) on a 3-channel image, with bias and a fused activation."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    act = {"none": lambda h: h, "relu": tf.nn.relu, "relu6": tf.nn.relu6}[activation]
    if kind == "conv":
        w = tf.constant(_weights(rng, 27, channels).reshape(3, 3, 3, channels))
        b = tf.constant(rng.normal(0, 0.3, channels).astype(np.float32))
        return lambda x: act(tf.nn.conv2d(x, w, strides, padding, dilations=dilation) + b)
    w = tf.constant(_weights(rng, 9, 6, scale=1.0).reshape(3, 3, 3, 2))
    b = tf.constant(rng.normal(0, 0.3, 6).astype(np.float32))
    return lambda x: act(tf.nn.depthwise_conv2d(x, w, [1, strides, strides, 1], padding, dilations=[dilation, dilation]) + b)


def pooled(kind: str, size: int, strides: int, padding: str, seed: int = 0) -> Callable:
    """A 1x1 conv (so the pool sees varied values) then an average or max pool."""
    import tensorflow as tf

    front = conv("conv", activation="none", seed=seed)
    pool = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d
    return lambda x: pool(front(x), size, strides, padding)


def residual(seed: int = 0) -> Callable:
    """ADD of two conv branches, an ADD broadcasting a per-image MEAN, a global MEAN and a dense LOGISTIC head."""
    import tensorflow as tf

    a, b = conv("conv", seed=seed), conv("conv", activation="none", seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    w = tf.constant(_weights(rng, 4, 3, scale=2.0))

    def f(x):
        h = a(x) + b(x)
        h = h + tf.reduce_mean(h, axis=[1, 2], keepdims=True)
        g = tf.reduce_mean(h, axis=[1, 2])
        return tf.sigmoid(tf.matmul(g, w))

    return f


def padded_resized(align_corners: bool, seed: int = 0) -> Callable:
    """PAD then a VALID conv, then nearest-neighbour upsampling (TF2's half-pixel, or v1 align-corners)."""
    import tensorflow as tf

    c = conv("conv", padding="VALID", activation="relu6", seed=seed)

    def f(x):
        h = c(tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]))
        if align_corners:
            return tf.compat.v1.image.resize_nearest_neighbor(h, [13, 11], align_corners=True)
        return tf.image.resize(h, [13, 11], method="nearest")

    return f


def reshaped(kind: str, seed: int = 0) -> Callable:
    """RESHAPE at the edges: the whole model ("only": input to output, a copy) or after the last FC (an alias)."""
    import tensorflow as tf

    if kind == "only":
        return lambda x: tf.reshape(x, [1, 2, 5])
    w = tf.constant(_weights(np.random.default_rng(seed), 10, 12, scale=2.0))
    return lambda x: tf.reshape(tf.nn.relu(tf.matmul(x, w)), [1, 3, 4])


def padded_depthwise(strides: int, pads: tuple[int, int, int, int], seed: int = 0) -> Callable:
    """conv -> explicit PAD -> VALID depthwise (multiplier 1) -> 1x1 conv: the PAD the compiler folds away."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    c = conv("conv", activation="relu6", channels=4, seed=seed)
    dw = tf.constant(_weights(rng, 9, 4, scale=1.5).reshape(3, 3, 4, 1))
    pw = tf.constant(_weights(rng, 4, 3).reshape(1, 1, 4, 3))
    top, bottom, left, right = pads

    def f(x):
        h = tf.pad(c(x), [[0, 0], [top, bottom], [left, right], [0, 0]])
        return tf.nn.conv2d(tf.nn.relu(tf.nn.depthwise_conv2d(h, dw, [1, strides, strides, 1], "VALID")), pw, 1, "SAME")

    return f


def padv2_pool(seed: int = 0) -> Callable:
    """PADV2 (a non-zero constant value) between a conv and a VALID max pool."""
    import tensorflow as tf

    c = conv("conv", activation="none", seed=seed)
    return lambda x: tf.nn.max_pool2d(tf.pad(c(x), [[0, 0], [2, 1], [1, 1], [0, 0]], constant_values=0.75), 2, 2, "VALID")


def mean_last_axis(seed: int = 0) -> Callable:
    import tensorflow as tf

    c = conv("depthwise", activation="none", seed=seed)
    return lambda x: tf.reduce_mean(c(x), axis=-1, keepdims=True)


def conv_flatten_fc(seed: int = 0) -> Callable:
    """The micro_speech shape: a strided conv, RESHAPE (flatten), FULLY_CONNECTED, SOFTMAX."""
    import tensorflow as tf

    c = conv("conv", 2, "SAME", seed=seed)
    w = tf.constant(_weights(np.random.default_rng(seed + 7), 5 * 5 * 4, 6, scale=2.0))
    return lambda x: tf.nn.softmax(tf.matmul(tf.reshape(c(x), [1, -1]), w))


def with_requantize(data: bytes) -> bytes:
    """The model with an int8 -> int8 QUANTIZE appended (new scale x1.7, zero point +5): TFLite's requantize op.

    The converter emits it only between ops that insist on different scales,
    so the test grafts it onto a converted model through the flatbuffer
    object API.
    """
    import copy

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    old = graph.outputs[0]
    tensor = copy.deepcopy(graph.tensors[old])
    tensor.name, tensor.buffer = b"requantized", 0
    tensor.quantization.scale = [float(tensor.quantization.scale[0]) * 1.7]
    tensor.quantization.zeroPoint = [int(tensor.quantization.zeroPoint[0]) + 5]
    graph.tensors.append(tensor)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    model.operatorCodes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = len(model.operatorCodes) - 1, [old], [len(graph.tensors) - 1]
    graph.operators.append(op)
    graph.outputs = [len(graph.tensors) - 1]
    for sig in model.signatureDefs or []:
        for out in sig.outputs:
            out.tensorIndex = len(graph.tensors) - 1
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def mobilenet_block(strides: int = 1, seed: int = 0) -> Callable:
    """conv 3x3 -> depthwise 3x3 (multiplier 1, the in-place case) -> pointwise 1x1, RELU6 between."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    w1 = tf.constant(_weights(rng, 27, 8).reshape(3, 3, 3, 8))
    dw = tf.constant(_weights(rng, 9, 8, scale=1.5).reshape(3, 3, 8, 1))
    pw = tf.constant(_weights(rng, 8, 4).reshape(1, 1, 8, 4))
    b1, b2 = (tf.constant(rng.normal(0, 0.2, 8).astype(np.float32)) for _ in range(2))

    def f(x):
        h = tf.nn.relu6(tf.nn.conv2d(x, w1, 1, "SAME") + b1)
        h = tf.nn.relu6(tf.nn.depthwise_conv2d(h, dw, [1, strides, strides, 1], "SAME") + b2)
        return tf.nn.conv2d(h, pw, 1, "SAME")

    return f


IMG = (1, 9, 9, 3)


SPECS: dict[str, tuple[Callable[[], Callable], tuple[int, ...], str, bool]] = {
    # name: (function builder, input shape, dtype, per-channel)
    "fc_relu_pc": (lambda: mlp("relu"), (1, 10), "int8", True),
    "fc_relu6_pt": (lambda: mlp("relu6", seed=1), (1, 10), "int8", False),
    "fc_none_softmax": (lambda: mlp("none", softmax=True, seed=2), (1, 10), "int8", True),
    "fc_tanh_batch3": (lambda: mlp("tanh", seed=3), (3, 10), "int8", True),
    "fc_float_io": (lambda: mlp("relu", softmax=True, seed=4), (1, 10), "int8_float_io", True),
    "fc_tanh_softmax_f32": (lambda: mlp("tanh", softmax=True, seed=5), (2, 10), "float32", True),
    "fc_relu6_f32": (lambda: mlp("relu6", seed=6), (1, 10), "float32", True),
    "conv_same_relu_pc": (lambda: conv("conv"), IMG, "int8", True),
    "conv_valid_s2_relu6_pt": (lambda: conv("conv", 2, "VALID", activation="relu6", seed=1), IMG, "int8", False),
    "conv_dilated_none": (lambda: conv("conv", 1, "SAME", 2, "none", seed=2), IMG, "int8", True),
    "conv_s2_same_f32": (lambda: conv("conv", 2, "SAME", seed=3), IMG, "float32", True),
    "dw_same_relu": (lambda: conv("depthwise", seed=4), IMG, "int8", True),
    "dw_valid_s2_relu6": (lambda: conv("depthwise", 2, "VALID", activation="relu6", seed=5), IMG, "int8", True),
    "dw_dilated_f32": (lambda: conv("depthwise", 1, "SAME", 2, seed=6), IMG, "float32", True),
    "avgpool_same_s2": (lambda: pooled("avg", 3, 2, "SAME"), IMG, "int8", True),
    "maxpool_valid_s2": (lambda: pooled("max", 2, 2, "VALID", seed=1), IMG, "int8", True),
    "avgpool_valid_f32": (lambda: pooled("avg", 3, 1, "VALID", seed=2), IMG, "float32", True),
    "maxpool_same_f32": (lambda: pooled("max", 3, 2, "SAME", seed=3), IMG, "float32", True),
    "residual_add_mean_logistic": (lambda: residual(), IMG, "int8", True),
    "residual_float_io": (lambda: residual(seed=3), IMG, "int8_float_io", True),
    "residual_f32": (lambda: residual(seed=5), IMG, "float32", True),
    "pad_resize_half_pixel": (lambda: padded_resized(False), IMG, "int8", True),
    "pad_resize_align_corners": (lambda: padded_resized(True, seed=1), IMG, "int8", True),
    "pad_resize_f32": (lambda: padded_resized(False, seed=2), IMG, "float32", True),
    "mean_last_axis": (lambda: mean_last_axis(), IMG, "int8", True),
    "conv_flatten_fc_softmax": (lambda: conv_flatten_fc(), IMG, "int8", True),
    "conv_flatten_fc_f32": (lambda: conv_flatten_fc(seed=1), IMG, "float32", True),
    "fc_requantize": (lambda: mlp("relu", seed=8), (1, 10), "int8", True),
    "fc_uint8_io": (lambda: mlp("relu", softmax=True, seed=9), (1, 10), "uint8_io", True),
    "dw_inplace_s1": (lambda: mobilenet_block(1), IMG, "int8", True),
    "dw_inplace_s2": (lambda: mobilenet_block(2, seed=1), IMG, "int8", True),
    "dw_inplace_s1_f32": (lambda: mobilenet_block(1, seed=2), IMG, "float32", True),
    "padv2_maxpool": (lambda: padv2_pool(), IMG, "int8", True),
    "padv2_maxpool_f32": (lambda: padv2_pool(seed=1), IMG, "float32", True),
    "dw_inplace_s2_batch2": (lambda: mobilenet_block(2, seed=3), (2, 9, 9, 3), "int8", True),
    "dw_inplace_s1_batch2_f32": (lambda: mobilenet_block(1, seed=4), (2, 9, 9, 3), "float32", True),
    "avgpool_batch3": (lambda: pooled("avg", 3, 2, "SAME", seed=4), (3, 9, 9, 3), "int8", True),
    "pad_dw_inplace": (lambda: padded_depthwise(1, (1, 1, 2, 0)), IMG, "int8", True),
    "pad_dw_s2_asym_f32": (lambda: padded_depthwise(2, (0, 1, 2, 1), seed=1), IMG, "float32", True),
    "reshape_only": (lambda: reshaped("only"), (1, 10), "int8", True),
    "fc_then_reshape": (lambda: reshaped("last"), (1, 10), "int8", True),
}
POST: dict[str, Callable[[bytes], bytes]] = {"fc_requantize": with_requantize}  # edits after conversion


PROJECT_BACKBONES = ("keywords", "characters", "presence")  # server.models.<task>.ARCH: DS-CNN, CNN, MLP


def _project_backbone_bytes(task: str) -> bytes:
    """The project's int8 backbone of ``task`` (server.models.backbone_export), He-initialised, random biases."""
    import importlib

    from server.models.architecture import init_params
    from server.models.backbone_export import export_backbone

    arch = importlib.import_module(f"server.models.{task}").ARCH
    rng = np.random.default_rng(len(task))
    params = [(w, rng.normal(0.0, 0.1, b.shape).astype(np.float32)) for w, b in init_params(arch, seed=3)]
    return export_backbone(arch, params, rng.normal(0.0, 1.0, size=(48, arch.n_inputs)).astype(np.float32))


def _project_input_shape(task: str) -> tuple[int, ...]:
    import importlib

    return (1, importlib.import_module(f"server.models.{task}").ARCH.n_inputs)


ALL_MODELS = sorted(SPECS) + [f"backbone_{t}" for t in PROJECT_BACKBONES]


def build_model_bytes(name: str) -> bytes:
    """Convert SPECS[name] (and apply its POST edit), or export a project backbone: the .tflite's bytes."""
    if name.startswith("backbone_"):
        return _project_backbone_bytes(name.removeprefix("backbone_"))
    builder, shape, dtype, per_channel = SPECS[name]
    data = _convert(builder(), shape, dtype, per_channel, seed=0)
    return POST[name](data) if name in POST else data


def model_file(name: str, tmp_path_factory: pytest.TempPathFactory) -> ModelFile:
    """The converted model ``name`` of SPECS, built once per session."""
    if name not in _CACHE:
        if name.startswith("backbone_"):
            shape, dtype = _project_input_shape(name.removeprefix("backbone_")), "int8"
        else:
            _, shape, dtype, _ = SPECS[name]
        folder = tmp_path_factory.getbasetemp() / "compiler_models"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.tflite"
        path.write_bytes(build_model_bytes(name))
        _CACHE[name] = ModelFile(name, path, dtype, shape)
    return _CACHE[name]


def tflm_outputs(path: Path, inputs: np.ndarray, arena_size: int = 1 << 20) -> np.ndarray:
    """TFLite Micro's outputs (its reference kernels, via PyPI tflite-micro) for each input sample."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_file(str(path), arena_size=arena_size)
    outs = []
    for x in inputs:
        it.set_input(np.ascontiguousarray(x), 0)
        it.invoke()
        outs.append(np.array(it.get_output(0), copy=True))
    return np.stack(outs)


def _abs_model() -> Callable:
    import tensorflow as tf

    w = tf.constant(_weights(np.random.default_rng(9), 10, 8))

    def f(x):
        return tf.abs(tf.matmul(x, w))

    return f


def _hybrid_bytes() -> bytes:
    """Dynamic-range ("hybrid") quantisation: int8 weights, float activations; TFLM refuses these."""
    import tensorflow as tf

    w = tf.constant(_weights(np.random.default_rng(10), 64, 64))
    module = tf.Module()
    module.f = tf.function(lambda x: tf.nn.relu(tf.matmul(x, w)), input_signature=[tf.TensorSpec((1, 64), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _legacy_uint8_bytes() -> bytes:
    """An int8 model relabelled uint8 throughout (TF1-era quantisation, which TFLM no longer runs)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(_convert(mlp("relu", seed=12), (1, 10), "int8", False, 0)), 0)
    for tensor in model.subgraphs[0].tensors:
        if tensor.type == schema.TensorType.INT8:
            tensor.type = schema.TensorType.UINT8
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def refused_model(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models the compiler must refuse: "abs" (FULLY_CONNECTED then ABS), "hybrid" and "legacy_uint8"."""
    key = f"refused_{name}"
    if key not in _CACHE:
        folder = tmp_path_factory.getbasetemp() / "compiler_models"
        folder.mkdir(exist_ok=True)
        path = folder / f"{key}.tflite"
        build = {"abs": lambda: _convert(_abs_model(), (1, 10), "float32", True, 0), "hybrid": _hybrid_bytes,
                 "legacy_uint8": _legacy_uint8_bytes}[name]
        path.write_bytes(build())
        _CACHE[key] = ModelFile(key, path, "float32", (1, 10))
    return _CACHE[key].path


def host_runs(names: list[str], tmp_path_factory: pytest.TempPathFactory, extra: dict[str, tuple[Path, np.ndarray]] | None = None
              ) -> dict[str, tuple[Path, np.ndarray, np.ndarray]]:
    """name -> (model path, inputs, our host-built outputs), all models in one host program, once per session.

    ``extra`` adds models by path with their inputs (the project's sine backbones from conftest).
    """
    from edge.compiler import compile_model
    from edge.compiler.harness import run_host_many

    todo = {n: (model_file(n, tmp_path_factory).path, model_file(n, tmp_path_factory).random_inputs(N_SAMPLES, seed=11))
            for n in names if n not in _HOST_RUNS}
    todo |= {n: v for n, v in (extra or {}).items() if n not in _HOST_RUNS}
    if todo:
        cases = [(compile_model(path.read_bytes(), prefix=n), x) for n, (path, x) in todo.items()]
        outputs = run_host_many(cases, tmp_path_factory.mktemp("compiler_host"))
        for (n, (path, x)), out in zip(todo.items(), outputs):
            _HOST_RUNS[n] = (path, x, out)
    wanted = list(names) + list(extra or {})
    return {n: _HOST_RUNS[n] for n in wanted}
