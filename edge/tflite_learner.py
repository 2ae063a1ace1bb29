"""Learners that run inside a TFLite interpreter instead of numpy.

Two device designs share the :class:`edge.learner.Learner` contract:

* :class:`TFLiteTrainer` runs a whole-model training graph (exported by
  ``server.models.sine_mlp``): the SGD step itself is a TFLite signature, so
  a device needs no numpy maths, only an interpreter.
* :class:`BackboneHeadLearner` runs a frozen (typically int8) backbone
  (``server.models.backbone_head``) as a feature extractor and trains only an
  :class:`edge.online_head.OnlineHead` on its features (TinyOL).

Both validate every sample, label and weight set before any state changes
(:mod:`edge.validation`), exactly like the numpy learners, so a federation can
mix them freely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge.learner import ComputeCost, Learner, MemoryFootprint
from edge.online_head import OnlineHead, Task
from edge.step_sizes import check_scales, unit_scales
from edge.tflite_layout import LayoutError, ModelLayout, read_layout
from edge.tflite_runtime import ModelLoadError, interpreter_backend, load_interpreter, read_model
from edge.validation import InvalidInputError, WeightSpec, as_float_array, check_finite

TRAINING_SIGNATURES = {
    "train": ({"x", "y", "lr"}, {"loss", "applied"}),
    "infer": ({"x"}, {"y"}),
    "get_weights": (set(), None),  # outputs are the weight names, whatever they are
    "set_weights": (None, None),  # inputs must equal get_weights' outputs; checked below
}


def _layout(where: str, data: bytes) -> ModelLayout:
    try:
        return read_layout(data)
    except LayoutError as exc:
        raise ModelLoadError(f"{where}: {exc}") from exc


def _batch(x: object, n_inputs: int) -> np.ndarray:
    """A float32 batch (n, n_inputs); a 1-D array is a batch of scalars when n_inputs is 1."""
    try:
        array = np.asarray(x)
    except Exception as exc:
        raise InvalidInputError(f"input batch is not an array: {exc}") from exc
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(f"input batch has dtype {array.dtype}; expected a real number type")
    if array.ndim == 1 and n_inputs == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != n_inputs:
        raise InvalidInputError(f"input batch has shape {array.shape}; expected (n, {n_inputs})")
    array = array.astype(np.float32)
    check_finite("input batch", array)
    return array


def _labels(y: object, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 labels of a batch, any layout with the right number of values."""
    try:
        array = np.asarray(y)
    except Exception as exc:
        raise InvalidInputError(f"labels y are not an array: {exc}") from exc
    if array.dtype.kind not in "fiu" or array.size != int(np.prod(shape)):
        raise InvalidInputError(f"labels y have dtype {array.dtype} and {array.size} values; expected {shape}")
    array = array.astype(np.float32).reshape(shape)
    check_finite("labels y", array)
    return array


def _learning_rate(learning_rate: object) -> np.ndarray:
    try:
        lr = np.asarray(learning_rate, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"learning rate must be a number, got {learning_rate!r}") from exc
    if lr.shape != ():
        raise InvalidInputError(f"learning rate must be a scalar, got shape {lr.shape}")
    check_finite("learning rate", lr)
    return lr


class TFLiteTrainer(Learner):
    """Whole-model online learner whose forward pass, backward pass and SGD step are TFLite signatures.

    The model must have the signatures ``train(x, y, lr) -> {loss, applied}``,
    ``infer(x) -> {y}``, ``get_weights() -> {name: array}`` and
    ``set_weights(**weights)``, and may have ``set_step_sizes(**scales)`` (per-weight
    multipliers of ``lr``; models exported before step sizes lack it and then
    refuse :meth:`set_step_sizes`). A diverged step (any updated weight NaN/Inf) is
    refused *inside* the graph (``applied`` is False, weights kept), and this
    class then raises :class:`InvalidInputError`, the same contract as
    :class:`edge.mlp.NumpyMLP`.
    """

    def __init__(self, model: str | Path | bytes, backend: str = "auto", num_threads: int = 1) -> None:
        where, data = read_model(model)
        self.flash_bytes = len(data)
        """Size of the model file: what the device stores in flash (graph, initial weights, constants)."""
        self._interpreter = load_interpreter(model, backend, num_threads)
        self.layout = _layout(where, data)
        self.backend = interpreter_backend(self._interpreter)
        self._runners = self._signature_runners(where)
        x_details = self._runners["train"].get_input_details()
        self.n_inputs = int(x_details["x"]["shape"][-1])
        self.n_outputs = int(x_details["y"]["shape"][-1])
        self._spec: WeightSpec = {
            name: (tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]))
            for name, detail in self._runners["get_weights"].get_output_details().items()
        }

    def _signature_runners(self, where: str) -> dict[str, Any]:
        signatures = self._interpreter.get_signature_list()
        problems = []
        for key, (inputs, outputs) in TRAINING_SIGNATURES.items():
            if key not in signatures:
                problems.append(f"no '{key}' signature")
                continue
            if inputs is not None and set(signatures[key]["inputs"]) != inputs:
                problems.append(f"'{key}' inputs are {sorted(signatures[key]['inputs'])}, expected {sorted(inputs)}")
            if outputs is not None and set(signatures[key]["outputs"]) != outputs:
                problems.append(f"'{key}' outputs are {sorted(signatures[key]['outputs'])}, expected {sorted(outputs)}")
        if not problems and set(signatures["set_weights"]["inputs"]) != set(signatures["get_weights"]["outputs"]):
            problems.append("'set_weights' inputs differ from 'get_weights' outputs")
        if problems:
            raise ModelLoadError(f"{where} is not a training model: " + "; ".join(problems))
        runners = {key: self._interpreter.get_signature_runner(key) for key in TRAINING_SIGNATURES}
        if "set_step_sizes" in signatures:  # optional: models exported before step sizes existed lack it
            runners["set_step_sizes"] = self._interpreter.get_signature_runner("set_step_sizes")
        return runners

    @property
    def weight_spec(self) -> WeightSpec:
        return self._spec

    def predict(self, x: np.ndarray) -> np.ndarray:
        batch = _batch(x, self.n_inputs)
        if len(batch) == 0:
            return np.zeros((0, self.n_outputs), np.float32)
        return np.array(self._runners["infer"](x=batch)["y"], dtype=np.float32)

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        prediction = self.predict(x)
        return float(np.mean((prediction - _labels(y, prediction.shape)) ** 2))

    def learn_one(self, x: np.ndarray, y: object, learning_rate: float) -> float:
        xs = as_float_array("sample x", x, (self.n_inputs,)).reshape(1, -1)
        ys = as_float_array("label y", y, (self.n_outputs,)).reshape(1, -1)
        result = self._runners["train"](x=xs, y=ys, lr=_learning_rate(learning_rate))
        if not bool(result["applied"]):
            raise InvalidInputError(f"SGD step diverged (learning rate {learning_rate}); step refused")
        return float(result["loss"])

    def get_weights(self) -> dict[str, np.ndarray]:
        values = self._runners["get_weights"]()
        return {name: np.array(values[name], dtype=np.float32, copy=True) for name in self._spec}

    def _assign_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._runners["set_weights"](**weights)

    def set_step_sizes(self, scales: Mapping[str, np.ndarray] | None) -> None:
        """Per-weight multipliers of the learning rate (:mod:`edge.step_sizes`); None restores a plain SGD step."""
        if "set_step_sizes" not in self._runners:
            raise InvalidInputError("this training model has no 'set_step_sizes' signature (exported without step sizes)")
        weights = {name: np.zeros(shape, dtype) for name, (shape, dtype) in self._spec.items()}
        checked = unit_scales(weights) if scales is None else check_scales(scales, weights)
        self._runners["set_step_sizes"](**checked)

    def memory_footprint(self) -> MemoryFootprint:
        """Weights in the resource variables plus static upper bounds on the TFLite arenas.

        ``inference`` is the non-constant tensor bytes of the ``infer`` subgraph
        for a batch of one; ``training`` is those of every other subgraph
        (``train``, ``get_weights``, ``set_weights``, variable initialisation),
        each counted as if no two tensors shared memory (see
        :mod:`edge.tflite_layout`). Both include the copies that READ_VARIABLE
        makes of the weights. The real arena is smaller; interpreter
        bookkeeping is not included.
        """
        inference = self.layout.signature_bytes("infer")
        return MemoryFootprint(
            weights=sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in self._spec.values()),
            training=sum(self.layout.tensor_bytes) - inference,
            inference=inference,
        )

    def compute_cost(self) -> ComputeCost:
        """Same convention as NumpyMLP: one MAC per kernel weight forward, three per SGD step."""
        forward = sum(int(np.prod(shape)) for shape, _ in self._spec.values() if len(shape) == 2)
        return ComputeCost(inference_float_macs=forward, training_float_macs=3 * forward)


def _backbone_macs(data: bytes, dense_only: int) -> int:
    from edge.compiler import UnsupportedModelError, count_macs

    try:
        return count_macs(data)
    except UnsupportedModelError:
        return dense_only


class FrozenBackbone:
    """A fixed feature extractor in a .tflite file, int8 or float; nothing in it trains.

    A quantised model gets float input quantised with its input tensor's
    (scale, zero_point), rounding half away from zero like TFLite and
    saturating at the integer type's limits; its output is dequantised. So
    callers always see float32 features.
    """

    def __init__(self, model: str | Path | bytes, backend: str = "auto", num_threads: int = 1) -> None:
        where, data = read_model(model)
        self.flash_bytes = len(data)
        """Size of the model file: graph, quantised weights and constants, all in flash."""
        self._interpreter = load_interpreter(model, backend, num_threads)
        self.layout = _layout(where, data)
        self.arena_bytes = sum(self.layout.tensor_bytes)
        """Upper bound on the tensor arena for a batch of one (see :mod:`edge.tflite_layout`)."""
        self.macs = _backbone_macs(data, sum(self.layout.dense_macs))
        """Multiply-accumulates per sample of every layer (convolutions too), as the model compiler counts them;
        a model it cannot lower counts its FULLY_CONNECTED layers only."""
        self.backend = interpreter_backend(self._interpreter)
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f"{where} must have one input and one output, has {len(inputs)} and {len(outputs)}")
        self._input, self._output = inputs[0], outputs[0]
        if len(self._input["shape"]) != 2 or len(self._output["shape"]) != 2:
            raise ModelLoadError(f"{where} must map (n, inputs) to (n, features)")
        self.n_inputs = int(self._input["shape"][1])
        self.n_features = int(self._output["shape"][1])
        self._dynamic_batch = int(self._input["shape_signature"][0]) == -1
        self._batch_size = int(self._input["shape"][0])
        self._one_sample_buffers()

    def _one_sample_buffers(self) -> None:
        """Buffers and 0-d constants for :meth:`feature_vector`, allocated once (numpy multiplies by a 0-d
        float32 array about 3x faster than by a Python float)."""
        f32 = np.float32
        self._v = np.empty(self.n_inputs, f32)  # x / scale, rounded, shifted, clamped
        self._half = np.empty(self.n_inputs, f32)  # ±0.5: round half away from zero
        self._q_in = np.empty((1, self.n_inputs), np.dtype(self._input["dtype"]))
        self._q_in_row = self._q_in.reshape(-1)
        self._q_out = np.empty(self.n_features, f32)
        in_scale, in_zero = self._input["quantization"] if self.quantized else (1.0, 0)
        out_quantized = np.dtype(self._output["dtype"]).kind in "iu"
        out_scale, out_zero = self._output["quantization"] if out_quantized else (1.0, 0)
        self._in_scale, self._in_zero = np.array(in_scale, f32), np.array(in_zero, f32)
        self._out_scale, self._out_zero = np.array(out_scale, f32), np.array(out_zero, f32)
        if self.quantized:
            info = np.iinfo(self._q_in.dtype)
            self._q_min, self._q_max = np.array(info.min, f32), np.array(info.max, f32)
        self._point_five = np.array(0.5, f32)

    @property
    def quantized(self) -> bool:
        return np.dtype(self._input["dtype"]).kind in "iu"

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._input["dtype"])
        if dtype.kind not in "iu":
            return x.astype(dtype)
        scale, zero_point = self._input["quantization"]
        scaled = x / np.float32(scale)
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # std::round, as TFLite's Quantize
        info = np.iinfo(dtype)
        return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        if np.dtype(self._output["dtype"]).kind not in "iu":
            return q.astype(np.float32)
        scale, zero_point = self._output["quantization"]
        return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] != self._batch_size:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            self._interpreter.allocate_tensors()
            self._batch_size = batch.shape[0]
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output["index"]), copy=True)

    def feature_vector(self, x: object) -> np.ndarray:
        """Float32 features (n_features,) of one sample (n_inputs,): the call a device loop makes per sample.

        Same numbers as :meth:`features` on a batch of one, but through
        buffers allocated once and a fixed handful of numpy calls: quantise
        (divide, round half away from zero, add the zero point, saturate),
        invoke, dequantise. NaN/Inf are refused (one dot product checks the
        whole sample; only if it overflows does the exact check run).
        """
        if type(x) is not np.ndarray or x.dtype != np.float32 or x.shape != self._v.shape:
            x = as_float_array("sample x", x, self._v.shape)
        v = self._v
        if not self.quantized:
            np.copyto(self._q_in_row, x)
            if not math.isfinite(float(np.dot(x, x))):
                check_finite("sample x", x)
        else:
            np.divide(x, self._in_scale, out=v)
            if not math.isfinite(float(np.dot(v, v))):  # NaN/Inf, or finite values that merely saturate below
                check_finite("sample x", x)
            np.copysign(self._point_five, v, out=self._half)
            np.add(v, self._half, out=v)
            np.trunc(v, out=v)  # trunc(v ± 0.5) = std::round, as TFLite's Quantize
            np.add(v, self._in_zero, out=v)
            np.minimum(v, self._q_max, out=v)
            np.maximum(v, self._q_min, out=v)
            np.copyto(self._q_in_row, v, casting="unsafe")
        if self._batch_size != 1:
            self._interpreter.resize_tensor_input(self._input["index"], [1, self.n_inputs])
            self._interpreter.allocate_tensors()
            self._batch_size = 1
        self._interpreter.set_tensor(self._input["index"], self._q_in)
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output["index"]).reshape(-1)
        np.subtract(out, self._out_zero, out=self._q_out, casting="unsafe")
        return np.multiply(self._q_out, self._out_scale)

    def features(self, x: object) -> np.ndarray:
        """Float32 features (n, n_features) of a batch (n, n_inputs)."""
        batch = self._quantize(_batch(x, self.n_inputs))
        if len(batch) == 0:
            return np.zeros((0, self.n_features), np.float32)
        if self._dynamic_batch:
            out = self._run(batch)
        else:  # fixed batch in the model: one sample at a time
            out = np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])
        return self._dequantize(out)


class BackboneHeadLearner(Learner):
    """TinyOL learner: frozen backbone features -> trainable :class:`OnlineHead`; weights are the head's."""

    def __init__(
        self,
        backbone: FrozenBackbone,
        head: OnlineHead | None = None,
        n_outputs: int = 1,
        task: Task = "regression",
        seed: int = 0,
    ) -> None:
        self.backbone = backbone
        self.head = head if head is not None else OnlineHead(backbone.n_features, n_outputs, task, seed)
        if self.head.n_features != backbone.n_features:
            raise ValueError(f"head expects {self.head.n_features} features, backbone gives {backbone.n_features}")

    @property
    def weight_spec(self) -> WeightSpec:
        return self.head.weight_spec

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.head.predict(self.backbone.features(x))

    def learn_one(self, x: np.ndarray, y: object, learning_rate: float) -> float:
        return self.head.learn_one(self.backbone.feature_vector(x), y, learning_rate)

    def set_step_sizes(self, scales: Mapping[str, np.ndarray] | None) -> None:
        """Per-weight step sizes of the head (``head_w``, ``head_b``); the frozen backbone has none."""
        self.head.set_step_sizes(scales)

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.head.loss(self.backbone.features(x), y)

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.head.get_weights()

    def _assign_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.head.set_weights(weights)

    def memory_footprint(self) -> MemoryFootprint:
        """The head's weights and training memory; inference adds the backbone's arena upper bound.

        The backbone's weights live in flash (:attr:`FrozenBackbone.flash_bytes`), not RAM.
        """
        head = self.head.memory_footprint()
        return MemoryFootprint(
            weights=head.weights, training=head.training, inference=head.inference + self.backbone.arena_bytes
        )

    def compute_cost(self) -> ComputeCost:
        """Head MACs plus one backbone pass per inference and per step (int8 or float, as the model is)."""
        head = self.head.compute_cost()
        int8 = self.backbone.macs if self.backbone.quantized else 0
        float_backbone = 0 if self.backbone.quantized else self.backbone.macs
        return ComputeCost(
            inference_float_macs=head.inference_float_macs + float_backbone,
            inference_int8_macs=head.inference_int8_macs + int8,
            training_float_macs=head.training_float_macs + float_backbone,
        )
