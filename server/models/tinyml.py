"""Train a small backbone in TensorFlow, quantise it to full-int8 TFLite and check it fits a device.

The pipeline every task model (:mod:`server.models.characters`,
:mod:`server.models.keywords`, :mod:`server.models.presence`) shares:

1. **Train** a classifier ``input -> backbone -> features -> head`` with plain
   ``tf.Variable`` weights, a hand-written forward pass and Adam (no Keras:
   Keras 3 layers inside a ``tf.Module`` do not convert cleanly, and the same
   forward function must serve training and export).
2. **Export** the backbone alone (input -> penultimate-layer features) with
   its trained weights as graph constants: a full-integer int8 ``.tflite``
   (int8 input and output, calibrated on a representative dataset) for the
   device, and a float32 ``.tflite`` as the reference it is measured against.
   The input is flat, ``(n, prod(input_shape))``, and reshaped inside the
   graph, which is the layout :class:`edge.tflite_learner.FrozenBackbone`
   expects.
3. Keep the trained **head** ``{head_w, head_b}`` as the initial weights of the
   on-device :class:`edge.online_head.OnlineHead`.
4. **Check the fit** through the registry's describer
   (:func:`ontology.describe_model.describe_model_bytes`): flash = model size,
   RAM = tensor arena (TFLM greedy-planner replay) + the TinyOL head's
   :meth:`~edge.online_head.OnlineHead.memory_footprint`.

Inputs reach the backbone already scaled by an :class:`InputScaler` (a
per-column affine map, optionally after ``log1p``), which the device applies in
numpy before quantising: int8 input has one scale for all columns, so raw
columns of very different ranges (CO2 in ppm next to a temperature slope)
would lose most of their resolution.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from rdflib import Literal

from edge.online_head import OnlineHead
from edge.profiles import NANO_33_BLE_SENSE, DeviceProfile
from ontology.describe_model import describe_model_bytes
from ontology.vocab import TF
from server.models.quantize import convert_full_int8

# --- architecture -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    """2-D convolution, SAME padding, ReLU."""

    filters: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class DepthwiseConv:
    """Depthwise 3×3 (by default) convolution, SAME padding, ReLU; follow it by a 1×1 :class:`Conv` for DS-CNN."""

    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class MaxPool:
    size: int = 2


@dataclass(frozen=True)
class GlobalAveragePool:
    pass


@dataclass(frozen=True)
class Dense:
    """Fully connected layer with ReLU; a 4-D input is flattened first."""

    units: int


Layer = Conv | DepthwiseConv | MaxPool | GlobalAveragePool | Dense


@dataclass(frozen=True)
class Architecture:
    """A backbone: ``input_shape`` (H, W, C) or (D,), then layers; the last must be :class:`Dense` (the features)."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if not self.layers or not isinstance(self.layers[-1], Dense):
            raise ValueError("the last backbone layer must be Dense: its activations are the feature vector")

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_features(self) -> int:
        return self.layers[-1].units  # type: ignore[union-attr]


def init_params(arch: Architecture, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-uniform kernels and zero biases, one (kernel, bias) pair per weighted layer."""
    rng = np.random.default_rng(seed)
    shape = tuple(arch.input_shape)
    params = []

    def he(kernel_shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, size=kernel_shape).astype(np.float32)

    for layer in arch.layers:
        if isinstance(layer, Conv):
            kh, kw = layer.kernel
            params.append((he((kh, kw, shape[-1], layer.filters), kh * kw * shape[-1]), np.zeros(layer.filters, np.float32)))
            shape = (-(-shape[0] // layer.stride[0]), -(-shape[1] // layer.stride[1]), layer.filters)
        elif isinstance(layer, DepthwiseConv):
            kh, kw = layer.kernel
            params.append((he((kh, kw, shape[-1], 1), kh * kw), np.zeros(shape[-1], np.float32)))
            shape = (-(-shape[0] // layer.stride[0]), -(-shape[1] // layer.stride[1]), shape[-1])
        elif isinstance(layer, MaxPool):
            shape = (shape[0] // layer.size, shape[1] // layer.size, shape[2])
        elif isinstance(layer, GlobalAveragePool):
            shape = (shape[-1],)
        else:
            fan_in = int(np.prod(shape))
            params.append((he((fan_in, layer.units), fan_in), np.zeros(layer.units, np.float32)))
            shape = (layer.units,)
    return params


def forward(arch: Architecture, params: Sequence[tuple[tf.Tensor, tf.Tensor]], x: tf.Tensor) -> tf.Tensor:
    """Features of a flat batch ``x`` (n, n_inputs); the same code runs on variables (training) and constants (export)."""
    h = tf.reshape(x, [-1, *arch.input_shape])
    weights = iter(params)
    for layer in arch.layers:
        if isinstance(layer, Conv):
            w, b = next(weights)
            h = tf.nn.relu(tf.nn.conv2d(h, w, [1, *layer.stride, 1], "SAME") + b)
        elif isinstance(layer, DepthwiseConv):
            w, b = next(weights)
            h = tf.nn.relu(tf.nn.depthwise_conv2d(h, w, [1, *layer.stride, 1], "SAME") + b)
        elif isinstance(layer, MaxPool):
            h = tf.nn.max_pool2d(h, layer.size, layer.size, "VALID")
        elif isinstance(layer, GlobalAveragePool):
            h = tf.reduce_mean(h, axis=[1, 2])
        else:
            w, b = next(weights)
            if len(h.shape) > 2:
                h = tf.reshape(h, [-1, int(np.prod(h.shape[1:]))])
            h = tf.nn.relu(tf.matmul(h, w) + b)
    return h


# --- device-side input scaling ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # holds arrays
class InputScaler:
    """``(f(x) - mean) / scale`` per column, ``f`` = ``log1p(max(x, 0))`` on ``log_columns``, identity elsewhere.

    ``mean`` and ``scale`` broadcast against the trailing axes of a sample
    (e.g. shape (10,) for 49 × 10 MFCC frames: one pair per coefficient).
    """

    mean: np.ndarray
    scale: np.ndarray
    log_columns: tuple[int, ...] = ()

    @classmethod
    def fit(cls, x: np.ndarray, axis: tuple[int, ...] = (0,), log_columns: tuple[int, ...] = ()) -> InputScaler:
        raw = cls(np.zeros(1, np.float32), np.ones(1, np.float32), log_columns)._transform(x)
        return cls(
            raw.mean(axis=axis).astype(np.float32), np.maximum(raw.std(axis=axis), 1e-6).astype(np.float32), log_columns
        )

    def _transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.log_columns:
            x = x.copy()
            cols = list(self.log_columns)
            x[..., cols] = np.log1p(np.maximum(x[..., cols], 0.0))
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scaled float32 samples, flattened to (n, features) as the backbone takes them."""
        x = np.asarray(x, np.float32)
        scaled = (self._transform(x) - self.mean) / self.scale
        return scaled.reshape(len(x), -1).astype(np.float32)

    def as_dict(self) -> dict[str, object]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "log_columns": list(self.log_columns)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> InputScaler:
        return cls(
            np.asarray(data["mean"], np.float32), np.asarray(data["scale"], np.float32), tuple(data["log_columns"])  # type: ignore[arg-type]
        )


def identity_scaler() -> InputScaler:
    return InputScaler(np.zeros(1, np.float32), np.ones(1, np.float32))


# --- training -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4  # L2 on kernels, keeps features in a range int8 covers well
    seed: int = 0


@dataclass
class TrainResult:
    backbone: list[tuple[np.ndarray, np.ndarray]]
    head: dict[str, np.ndarray]
    train_accuracy: float
    seconds: float
    history: list[float] = field(default_factory=list)  # mean loss per epoch


def train_classifier(
    arch: Architecture, x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig = TrainConfig()
) -> TrainResult:
    """Train backbone + linear softmax head on scaled flat inputs ``x`` (n, n_inputs) and integer labels ``y``."""
    start = time.perf_counter()
    tf.random.set_seed(config.seed)
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    y = np.asarray(y, np.int32)
    params = [(tf.Variable(w), tf.Variable(b)) for w, b in init_params(arch, config.seed)]
    head_limit = np.sqrt(6.0 / (arch.n_features + n_classes))
    rng = np.random.default_rng(config.seed)
    head_w = tf.Variable(rng.uniform(-head_limit, head_limit, (arch.n_features, n_classes)).astype(np.float32))
    head_b = tf.Variable(np.zeros(n_classes, np.float32))
    variables = [v for pair in params for v in pair] + [head_w, head_b]
    kernels = [w for w, _ in params] + [head_w]
    slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in variables]
    step = tf.Variable(0.0)
    beta1, beta2, eps = 0.9, 0.999, 1e-7

    @tf.function(autograph=False, reduce_retracing=True)
    def train_step(xb: tf.Tensor, yb: tf.Tensor, lr: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.matmul(forward(arch, params, xb), head_w) + head_b
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))
            total = loss + config.weight_decay * tf.add_n([tf.reduce_sum(k * k) for k in kernels])
        grads = tape.gradient(total, variables)
        step.assign_add(1.0)
        correction = tf.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        for v, g, (m, s) in zip(variables, grads, slots):
            m.assign(beta1 * m + (1 - beta1) * g)
            s.assign(beta2 * s + (1 - beta2) * g * g)
            v.assign_sub(lr * correction * m / (tf.sqrt(s) + eps))
        return loss

    history = []
    n_batches = max(1, len(x) // config.batch_size)
    total_steps = config.epochs * n_batches
    for epoch in range(config.epochs):
        order = rng.permutation(len(x))
        losses = []
        for i in range(n_batches):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            done = epoch * n_batches + i
            lr = config.learning_rate * 0.5 * (1 + np.cos(np.pi * done / total_steps))  # cosine decay
            losses.append(float(train_step(x[idx], y[idx], tf.constant(lr, tf.float32))))
        history.append(float(np.mean(losses)))

    backbone = [(w.numpy(), b.numpy()) for w, b in params]
    head = {"head_w": head_w.numpy(), "head_b": head_b.numpy()}
    features = float_features(arch, backbone, x)
    accuracy = float(np.mean((features @ head["head_w"] + head["head_b"]).argmax(1) == y))
    return TrainResult(backbone, head, accuracy, time.perf_counter() - start, history)


def float_features(arch: Architecture, backbone: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Features of the float backbone in TensorFlow (the reference for the int8 model)."""
    consts = [(tf.constant(w), tf.constant(b)) for w, b in backbone]
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return np.concatenate([forward(arch, consts, tf.constant(x[i : i + 512])).numpy() for i in range(0, len(x), 512)])


# --- export -------------------------------------------------------------------------------------


class _Backbone(tf.Module):
    """The trained backbone with its weights as graph constants (they go to flash)."""

    def __init__(self, arch: Architecture, backbone: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__(name="backbone")
        self.arch = arch
        self.weights = [(tf.constant(w), tf.constant(b)) for w, b in backbone]
        spec = tf.TensorSpec([None, arch.n_inputs], tf.float32, name="x")
        self.features = tf.function(
            lambda x: {"features": forward(self.arch, self.weights, x)}, input_signature=[spec], autograph=False
        )


def export_backbone(
    arch: Architecture, backbone: Sequence[tuple[np.ndarray, np.ndarray]], representative_x: np.ndarray | None
) -> bytes:
    """Full-integer int8 .tflite (int8 in/out) calibrated on ``representative_x``; float32 if it is None."""
    module = _Backbone(arch, backbone)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.features.get_concrete_function()], module)
    if representative_x is None:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
    samples = np.asarray(representative_x, np.float32).reshape(len(representative_x), -1)
    if len(samples) == 0 or samples.shape[1] != arch.n_inputs or not np.all(np.isfinite(samples)):
        raise ValueError(f"representative_x must be finite with shape (n>0, {arch.n_inputs}), got {samples.shape}")

    return convert_full_int8(converter, samples)


# --- the shipped artefact -----------------------------------------------------------------------


@dataclass(eq=False)
class TaskModel:
    """What a task ships to a device: int8 backbone, its float reference, the input scaler and the initial head."""

    task: str
    arch: Architecture
    int8_model: bytes
    float_model: bytes
    scaler: InputScaler
    initial_head: dict[str, np.ndarray]
    classes: tuple[str, ...]
    train: TrainResult
    info: dict[str, object] = field(default_factory=dict)  # data sizes, timings, split

    @property
    def n_features(self) -> int:
        return self.arch.n_features

    @property
    def n_outputs(self) -> int:
        return int(self.initial_head["head_w"].shape[1])

    def head(self, seed: int = 0) -> OnlineHead:
        """An OnlineHead holding the initial head weights."""
        head = OnlineHead(self.n_features, self.n_outputs, "classification", seed)
        head.set_weights(self.initial_head)
        return head

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``<task>.tflite`` (int8), ``<task>_float.tflite``, ``<task>_head.npz`` and ``<task>.json``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "int8": out / f"{self.task}.tflite",
            "float": out / f"{self.task}_float.tflite",
            "head": out / f"{self.task}_head.npz",
            "meta": out / f"{self.task}.json",
        }
        paths["int8"].write_bytes(self.int8_model)
        paths["float"].write_bytes(self.float_model)
        np.savez(paths["head"], **self.initial_head)
        meta = {
            "task": self.task,
            "input_shape": list(self.arch.input_shape),
            "n_features": self.n_features,
            "classes": list(self.classes),
            "scaler": self.scaler.as_dict(),
            "int8_sha256": hashlib.sha256(self.int8_model).hexdigest(),
            "train_accuracy": self.train.train_accuracy,
            "train_seconds": self.train.seconds,
            **self.info,
        }
        paths["meta"].write_text(json.dumps(meta, indent=2, default=str))
        return paths


def build_task_model(
    task: str,
    arch: Architecture,
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    scaler: InputScaler,
    config: TrainConfig,
    n_representative: int = 300,
    info: dict[str, object] | None = None,
) -> TaskModel:
    """Train on raw samples ``x`` (scaled here with ``scaler``), then export int8 and float backbones."""
    start = time.perf_counter()
    scaled = scaler(x)
    result = train_classifier(arch, scaled, y, len(classes), config)
    pick = np.random.default_rng(config.seed).permutation(len(scaled))[:n_representative]
    int8_model = export_backbone(arch, result.backbone, scaled[pick])
    float_model = export_backbone(arch, result.backbone, None)
    details = dict(info or {})
    details.update(n_train=len(x), export_seconds=time.perf_counter() - start - result.seconds)
    return TaskModel(task, arch, int8_model, float_model, scaler, result.head, tuple(classes), result, details)


# --- fit check through the registry's describer ------------------------------------------------


@dataclass(frozen=True)
class FitReport:
    """Memory a task model needs on a device, from the registry's description of the .tflite file."""

    task: str
    device: str
    flash_bytes: int  # tf:modelSizeBytes = .tflite file size
    arena_bytes: int  # tf:tensorArenaBytes = TFLM greedy planner replay
    head_ram_bytes: int  # OnlineHead weights + gradient + activations (memory_footprint().total)
    usable_flash_bytes: int
    usable_ram_bytes: int

    @property
    def training_ram_bytes(self) -> int:
        """What online learning needs in RAM: backbone inference arena + the trainable head."""
        return self.arena_bytes + self.head_ram_bytes

    @property
    def fits(self) -> bool:
        return self.flash_bytes <= self.usable_flash_bytes and self.training_ram_bytes <= self.usable_ram_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "task": self.task,
            "device": self.device,
            "flash_bytes": self.flash_bytes,
            "arena_bytes": self.arena_bytes,
            "head_ram_bytes": self.head_ram_bytes,
            "training_ram_bytes": self.training_ram_bytes,
            "usable_flash_bytes": self.usable_flash_bytes,
            "usable_ram_bytes": self.usable_ram_bytes,
            "fits": self.fits,
        }


def _integer(graph: object, subject: object, prop: object) -> int:
    value = graph.value(subject, prop)  # type: ignore[attr-defined]
    if not isinstance(value, Literal):
        raise ValueError(f"the model description has no {prop}")
    return int(value.toPython())


def fit_report(
    model: bytes, n_features: int, n_outputs: int, task: str = "model", profile: DeviceProfile = NANO_33_BLE_SENSE
) -> FitReport:
    """Describe ``model`` as the registry does and compare its needs plus a TinyOL head with ``profile``."""
    iri, graph = describe_model_bytes(model, name=task)
    head = OnlineHead(n_features, n_outputs, "classification").memory_footprint().total
    return FitReport(
        task=task,
        device=profile.name,
        flash_bytes=_integer(graph, iri, TF.modelSizeBytes),
        arena_bytes=_integer(graph, iri, TF.tensorArenaBytes),
        head_ram_bytes=head,
        usable_flash_bytes=profile.usable_flash_bytes,
        usable_ram_bytes=profile.usable_ram_bytes,
    )


def task_fit(model: TaskModel, n_outputs: int | None = None, profile: DeviceProfile = NANO_33_BLE_SENSE) -> FitReport:
    """:func:`fit_report` of a task model with its head (``n_outputs`` defaults to the initial head's)."""
    return fit_report(model.int8_model, model.n_features, n_outputs or model.n_outputs, model.task, profile)


HEAD_UPDATE_BUDGET = 0.15
"""Issue 5's bar: a TinyOL head step may cost at most 15 % on top of one backbone inference."""


@dataclass(frozen=True)
class DeviceUpdateCost:
    """A head step against a backbone inference on a device profile, from MAC counts and its cycles per MAC.

    ``backbone_int8_macs`` come from the registry's reading of the .tflite
    file (every layer, as :func:`ontology.tflite_facts.read_facts` counts
    them); ``head_update_float_macs`` from
    :meth:`edge.online_head.OnlineHead.compute_cost` (forward + rank-1
    update; the softmax and bias are not counted). Inference is the backbone
    alone, so the head's own forward pass is charged to the update.
    """

    device: str
    backbone_int8_macs: int
    head_update_float_macs: int
    inference_seconds: float
    head_update_seconds: float

    @property
    def overhead(self) -> float:
        return self.head_update_seconds / self.inference_seconds

    @property
    def within_budget(self) -> bool:
        return self.overhead <= HEAD_UPDATE_BUDGET

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "backbone_int8_macs": self.backbone_int8_macs,
            "head_update_float_macs": self.head_update_float_macs,
            "inference_s": self.inference_seconds,
            "head_update_s": self.head_update_seconds,
            "head_update_over_inference": self.overhead,
            "within_15_percent": self.within_budget,
        }


def device_update_cost(
    model: TaskModel, n_outputs: int | None = None, profile: DeviceProfile = NANO_33_BLE_SENSE
) -> DeviceUpdateCost:
    """What one head SGD step costs on ``profile`` next to one int8 backbone inference (``n_outputs`` defaults
    to the initial head's)."""
    from ontology.tflite_facts import read_facts

    macs = read_facts(model.int8_model).macs
    head = OnlineHead(model.n_features, n_outputs or model.n_outputs, "classification").compute_cost()
    return DeviceUpdateCost(
        device=profile.name,
        backbone_int8_macs=macs,
        head_update_float_macs=head.training_float_macs,
        inference_seconds=profile.compute_seconds(int8_macs=macs),
        head_update_seconds=profile.compute_seconds(float_macs=head.training_float_macs),
    )


_FLOAT32_MAX = float(np.finfo(np.float32).max)  # |w| <= this: a finiteness test of builtin ops (NaN compares False)


class _HeadStep(tf.Module):
    """One TinyOL softmax-head SGD step as a pure function of builtin ops (weights in, weights out)."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__(name="head_step")
        specs = [
            tf.TensorSpec([1, n_features + 1], tf.float32, name="x1"),  # [features, 1]
            tf.TensorSpec([1, n_outputs], tf.float32, name="onehot"),
            tf.TensorSpec([], tf.float32, name="lr"),
            tf.TensorSpec([n_features + 1, n_outputs], tf.float32, name="params"),  # [W; b]
        ]
        self.step = tf.function(self._step, input_signature=specs, autograph=False)

    @staticmethod
    def _step(x1: tf.Tensor, onehot: tf.Tensor, lr: tf.Tensor, params: tf.Tensor) -> dict[str, tf.Tensor]:
        p = tf.nn.softmax(tf.matmul(x1, params))
        loss = -tf.reduce_sum(onehot * tf.math.log(tf.maximum(p, 1e-12)))
        updated = params - lr * (tf.reshape(x1, [-1, 1]) * (p - onehot))
        applied = tf.reduce_all(tf.abs(updated) <= _FLOAT32_MAX)
        return {"params": tf.where(applied, updated, params), "loss": loss, "applied": applied}


def export_head_step(n_features: int, n_outputs: int) -> bytes:
    """The softmax head's SGD step as a float32 .tflite of builtin ops only, for timing it in the interpreter.

    :class:`edge.online_head.OnlineHead` runs this step in numpy, where each
    call costs about half a microsecond of Python whatever its size; this
    graph lets ``bench/task_models.py`` time the same arithmetic (forward,
    softmax, rank-1 update, finiteness check, keep-or-refuse) compiled, in
    the same interpreter and with the same call overhead as the backbone's
    ``invoke()``. Weights go in and come out as tensors, so the graph holds
    no state; a firmware build would keep them in a variable or in C.
    """
    module = _HeadStep(n_features, n_outputs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.step.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


class InterpretedHeadStep:
    """:func:`export_head_step` in a real interpreter, its inputs addressed by tensor index (no signature runner,
    whose per-call Python bookkeeping would be timed too)."""

    def __init__(self, n_features: int, n_outputs: int, backend: str = "ai_edge_litert", num_threads: int = 1) -> None:
        from edge.tflite_runtime import load_interpreter

        self.n_features, self.n_outputs = n_features, n_outputs
        self.interpreter = load_interpreter(export_head_step(n_features, n_outputs), backend, num_threads)
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner()
        self._in = {name: d["index"] for name, d in runner.get_input_details().items()}
        self._out = {name: d["index"] for name, d in runner.get_output_details().items()}
        del runner  # it holds views into the interpreter's buffers, which would block invoke()

    def load(self, features: np.ndarray, label: int, learning_rate: float, weights: dict[str, np.ndarray]) -> None:
        """Set the step's inputs: one feature vector, its class, the learning rate and the head's weights."""
        onehot = np.zeros((1, self.n_outputs), np.float32)
        onehot[0, label] = 1.0
        x1 = np.append(np.asarray(features, np.float32), np.float32(1.0)).reshape(1, -1)
        params = np.vstack([weights["head_w"], weights["head_b"].reshape(1, -1)]).astype(np.float32)
        for name, value in (("x1", x1), ("onehot", onehot), ("lr", np.array(learning_rate, np.float32)), ("params", params)):
            self.interpreter.set_tensor(self._in[name], value)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def result(self) -> tuple[dict[str, np.ndarray], float, bool]:
        """(weights after the step, loss before it, whether the step was applied)."""
        params = self.interpreter.get_tensor(self._out["params"])
        weights = {"head_w": params[: self.n_features].copy(), "head_b": params[self.n_features].copy()}
        return weights, float(self.interpreter.get_tensor(self._out["loss"])), bool(self.interpreter.get_tensor(self._out["applied"]))


# --- online learning on top of a backbone -------------------------------------------------------


def head_learning_rate(features: np.ndarray, step: float = 1.0) -> float:
    """SGD learning rate for a head on these features: ``step / mean ||f||²``.

    One SGD step on a zero head moves the true class's logit by about
    ``lr · ||f||²``, so this makes a first step move it by ``step``, whatever
    scale the backbone's features have.
    """
    energy = float(np.mean(np.sum(np.asarray(features, np.float64) ** 2, axis=1)))
    return step / max(energy, 1e-6)


def empty_head(n_features: int) -> OnlineHead:
    """A classification head that knows no class yet: one zero output, grown with ``add_class``."""
    head = OnlineHead(n_features, 1, "classification")
    head.set_weights({"head_w": np.zeros((n_features, 1), np.float32), "head_b": np.zeros(1, np.float32)})
    return head


class GrowingClassifier:
    """Device-side label bookkeeping around a learner whose head grows a class per new label (TinyOL).

    Labels are whatever the stream says (words, class ids); the head's output
    ``i`` is the ``i``-th label seen. ``learner`` is a
    :class:`~edge.tflite_learner.BackboneHeadLearner` on :func:`empty_head`.
    """

    def __init__(self, learner: object) -> None:
        self.learner = learner
        self.labels: list[object] = []

    def learn_one(self, x: np.ndarray, label: object, learning_rate: float) -> float:
        if label not in self.labels:
            if self.labels:  # the empty head already has one output for the first label
                self.learner.head.add_class()  # type: ignore[attr-defined]
            self.labels.append(label)
        return self.learner.learn_one(x, self.labels.index(label), learning_rate)  # type: ignore[attr-defined]

    def predict_labels(self, x: np.ndarray) -> list[object]:
        return [self.labels[i] for i in self.learner.predict(x).argmax(axis=1)]  # type: ignore[attr-defined]


def online_accuracy(
    backbone: object,
    scaler: InputScaler,
    train_x: np.ndarray,
    train_y: Sequence[object],
    test_x: np.ndarray,
    test_y: Sequence[object],
    learning_rate: float,
    head: OnlineHead | None = None,
    shuffle_seed: int | None = 0,
    balanced: bool = False,
) -> float:
    """Stream ``train`` once through a TinyOL head on ``backbone`` (one SGD step per sample), then score ``test``.

    ``backbone`` is a :class:`~edge.tflite_learner.FrozenBackbone`. With no
    ``head`` the head starts empty and grows a class per new label; with one,
    labels must be its output indices. The score is accuracy over ``test``
    (labels the head never saw count as wrong), or with ``balanced`` the mean
    of the per-class recalls (for skewed streams such as mostly-empty rooms).
    """
    from edge.tflite_learner import BackboneHeadLearner

    learner = BackboneHeadLearner(backbone, head if head is not None else empty_head(backbone.n_features))  # type: ignore[arg-type]
    xs = scaler(train_x)
    order = np.arange(len(xs)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(xs))
    if head is None:
        device = GrowingClassifier(learner)
        for i in order:
            device.learn_one(xs[i], train_y[i], learning_rate)
        predicted = device.predict_labels(scaler(test_x))
    else:
        for i in order:
            learner.learn_one(xs[i], int(train_y[i]), learning_rate)  # type: ignore[arg-type]
        predicted = list(learner.predict(scaler(test_x)).argmax(axis=1))
    return score(predicted, test_y, balanced)


def imprint_accuracy(
    backbone: object,
    scaler: object,
    train_x: np.ndarray,
    train_y: list[object],
    test_x: np.ndarray,
    test_y: list[object],
    shuffle_seed: int | None = 0,
    balanced: bool = False,
    min_rate: float = 0.0,
) -> float:
    """:func:`online_accuracy`'s episode (same order, same scoring) with the head imprinted: an empty head grown a
    class per new label, ``imprint_one`` on each support sample, no learning rate."""
    head = empty_head(backbone.n_features)  # type: ignore[attr-defined]
    labels: list[object] = []
    xs = scaler(train_x)  # type: ignore[operator]
    order = np.arange(len(xs)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(xs))
    for i in order:
        if train_y[i] not in labels:
            if labels:  # the empty head already has one output for the first label
                head.add_class()
            labels.append(train_y[i])
        features = backbone.feature_vector(xs[i])  # type: ignore[attr-defined]
        head.imprint_one(features, labels.index(train_y[i]), min_rate)
    predicted = [labels[i] for i in head.predict(backbone.features(scaler(test_x))).argmax(axis=1)]  # type: ignore[operator]
    return score(predicted, test_y, balanced)


def score(predicted: Sequence[object], truth: Sequence[object], balanced: bool = False) -> float:
    """Accuracy, or balanced accuracy (mean recall over the classes present in ``truth``)."""
    hits = np.array([p == t for p, t in zip(predicted, truth)], bool)
    if not balanced:
        return float(hits.mean())
    truth_list = list(truth)
    return float(np.mean([hits[[t == c for t in truth_list]].mean() for c in set(truth_list)]))
