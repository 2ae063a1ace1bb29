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


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path
    dtype: str  # "int8" (int8 in/out), "int8_float_io" (float in/out, int8 inside) or "float32"
    input_shape: tuple[int, ...]

    def random_inputs(self, n: int, seed: int = 0) -> np.ndarray:
        """Seeded inputs: int8 uniform over the whole range, float normal with unit scale."""
        rng = np.random.default_rng(seed)
        if self.dtype == "int8":
            return rng.integers(-128, 128, size=(n, *self.input_shape), dtype=np.int8)
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
    if dtype == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
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


SPECS: dict[str, tuple[Callable[[], Callable], tuple[int, ...], str, bool]] = {
    # name: (function builder, input shape, dtype, per-channel)
    "fc_relu_pc": (lambda: mlp("relu"), (1, 10), "int8", True),
    "fc_relu6_pt": (lambda: mlp("relu6", seed=1), (1, 10), "int8", False),
    "fc_none_softmax": (lambda: mlp("none", softmax=True, seed=2), (1, 10), "int8", True),
    "fc_tanh_batch3": (lambda: mlp("tanh", seed=3), (3, 10), "int8", True),
    "fc_float_io": (lambda: mlp("relu", softmax=True, seed=4), (1, 10), "int8_float_io", True),
    "fc_tanh_softmax_f32": (lambda: mlp("tanh", softmax=True, seed=5), (2, 10), "float32", True),
    "fc_relu6_f32": (lambda: mlp("relu6", seed=6), (1, 10), "float32", True),
}


def model_file(name: str, tmp_path_factory: pytest.TempPathFactory) -> ModelFile:
    """The converted model ``name`` of SPECS, built once per session."""
    if name not in _CACHE:
        builder, shape, dtype, per_channel = SPECS[name]
        folder = tmp_path_factory.getbasetemp() / "compiler_models"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.tflite"
        path.write_bytes(_convert(builder(), shape, dtype, per_channel, seed=0))
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


def refused_model(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models the compiler must refuse: "abs" (FULLY_CONNECTED then ABS) and "hybrid"."""
    key = f"refused_{name}"
    if key not in _CACHE:
        folder = tmp_path_factory.getbasetemp() / "compiler_models"
        folder.mkdir(exist_ok=True)
        path = folder / f"{key}.tflite"
        path.write_bytes(_convert(_abs_model(), (1, 10), "float32", True, 0) if name == "abs" else _hybrid_bytes())
        _CACHE[key] = ModelFile(key, path, "float32", (1, 10))
    return _CACHE[key].path
