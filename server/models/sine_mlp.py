"""The on-device training graph of the whole-model MLP learner, exported to TFLite.

A device without Python runs the same SGD step as :class:`edge.mlp.NumpyMLP`
inside a TFLite interpreter. The graph is therefore written by hand: plain
``tf.Variable`` weights (which become TFLite resource variables), the forward
pass with ``matmul``/``tanh`` and the backward pass with the tanh derivative
``1 - h²`` spelled out, so that the converter emits only builtin ops (no Flex
ops: TF 2.21 interpreters cannot run them, and neither can a microcontroller).
No Keras: Keras layers inside a ``tf.Module`` do not convert cleanly.

Signatures (names are the contract with :class:`edge.tflite_learner.TFLiteTrainer`):

* ``train(x[1,in], y[1,out], lr[]) -> {"loss", "applied"}``: one SGD step on one
  sample with loss ``mean((out - y)²)``; ``loss`` is measured before the step.
  If any updated weight would be NaN/Inf the step is not applied (``applied`` is
  False) and the old weights are kept, decided inside the graph so that a device
  needs no extra weight copy to refuse a diverged step.
* ``infer(x[None,in]) -> {"y"}``: forward pass; the batch dimension is dynamic.
* ``get_weights() -> {w0, b0, ...}`` and ``set_weights(w0, b0, ...) -> {w0, b0, ...}``
  (the latter returns the weights read back after assignment).
* ``set_step_sizes(w0, b0, ...) -> {w0, b0, ...}``: per-weight multipliers of
  ``lr`` (meta-learned, :mod:`edge.step_sizes`); ``train`` steps each weight by
  ``lr · step size · gradient``. They start at one (a plain SGD step) unless
  the export says otherwise.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from edge.mlp import init_mlp_weights, mlp_weight_names
from edge.step_sizes import check_scales
from edge.validation import check_weights

DEFAULT_LAYER_SIZES: tuple[int, ...] = (1, 40, 40, 1)
SIGNATURES = ("train", "infer", "get_weights", "set_weights", "set_step_sizes")
# Largest finite float32: |w| <= this is a finiteness test made of builtin ops only
# (ABS, LESS_EQUAL), since TFLite has no IS_FINITE builtin. NaN compares False.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _weight_spec(layer_sizes: Sequence[int]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        spec[f"w{i}"] = ((fan_in, fan_out), np.dtype(np.float32))
        spec[f"b{i}"] = ((fan_out,), np.dtype(np.float32))
    return spec


class MLPTrainingModule(tf.Module):
    """Weights as ``tf.Variable`` plus the four signature functions.

    Math mirrors :func:`edge.mlp.mlp_forward` / :func:`edge.mlp.mlp_gradients`
    operation for operation, so results agree with NumpyMLP to float32 rounding.
    """

    def __init__(
        self, layer_sizes: Sequence[int], weights: Mapping[str, np.ndarray],
        step_sizes: Mapping[str, np.ndarray] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(name="mlp_training")
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.n_layers = len(self.layer_sizes) - 1
        self.names = mlp_weight_names(self.n_layers)
        self.vars = [tf.Variable(weights[name], dtype=tf.float32, name=name) for name in self.names]
        steps = step_sizes or {name: np.ones_like(weights[name], dtype=np.float32) for name in self.names}
        self.step_vars = [tf.Variable(steps[name], dtype=tf.float32, name=f"step_{name}") for name in self.names]
        n_in, n_out = self.layer_sizes[0], self.layer_sizes[-1]

        self.train = tf.function(
            self._train,
            input_signature=[
                tf.TensorSpec([1, n_in], tf.float32, name="x"),
                tf.TensorSpec([1, n_out], tf.float32, name="y"),
                tf.TensorSpec([], tf.float32, name="lr"),
            ],
        )
        self.infer = tf.function(self._infer, input_signature=[tf.TensorSpec([None, n_in], tf.float32, name="x")])
        self.get_weights = tf.function(self._get_weights, input_signature=[])
        self.set_weights = tf.function(
            self._set_weights,
            input_signature=[tf.TensorSpec(v.shape, tf.float32, name=n) for n, v in zip(self.names, self.vars)],
        )
        self.set_step_sizes = tf.function(
            self._set_step_sizes,
            input_signature=[tf.TensorSpec(v.shape, tf.float32, name=n) for n, v in zip(self.names, self.vars)],
        )

    def _activations(self, params: list[tf.Tensor], x: tf.Tensor) -> list[tf.Tensor]:
        acts = [x]
        h = x
        for i in range(self.n_layers):
            z = tf.matmul(h, params[2 * i]) + params[2 * i + 1]
            h = tf.tanh(z) if i < self.n_layers - 1 else z
            acts.append(h)
        return acts

    def _train(self, x: tf.Tensor, y: tf.Tensor, lr: tf.Tensor) -> dict[str, tf.Tensor]:
        params = [v.read_value() for v in self.vars]
        acts = self._activations(params, x)
        loss, delta = self._loss_and_delta(acts[-1], y)
        grads: list[tf.Tensor] = [tf.zeros(())] * len(params)
        for i in reversed(range(self.n_layers)):
            grads[2 * i] = tf.matmul(acts[i], delta, transpose_a=True)
            grads[2 * i + 1] = tf.reduce_sum(delta, axis=0)
            if i > 0:
                delta = tf.matmul(delta, params[2 * i], transpose_b=True) * (1.0 - tf.square(acts[i]))
        updated = [p - lr * s.read_value() * g for p, s, g in zip(params, self.step_vars, grads)]
        applied = tf.constant(True)
        for u in updated:
            applied = tf.logical_and(applied, tf.reduce_all(tf.abs(u) <= _FLOAT32_MAX))
        for v, u, p in zip(self.vars, updated, params):
            v.assign(tf.where(applied, u, p))
        return {"loss": loss, "applied": applied}

    def _loss_and_delta(self, out: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The loss of one sample and its gradient at the output: mean squared error (the regressor). A
        classifier's graph overrides only this (``server.export_tflite``); the backward pass is shared."""
        diff = out - y
        return tf.reduce_mean(tf.square(diff)), 2.0 * diff / float(self.layer_sizes[-1])  # batch of exactly one sample

    def _infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self._activations([v.read_value() for v in self.vars], x)[-1]}

    def _get_weights(self) -> dict[str, tf.Tensor]:
        return {n: v.read_value() for n, v in zip(self.names, self.vars)}

    def _set_weights(self, *values: tf.Tensor) -> dict[str, tf.Tensor]:
        for v, value in zip(self.vars, values):
            v.assign(value)
        return {n: v.read_value() for n, v in zip(self.names, self.vars)}

    def _set_step_sizes(self, *values: tf.Tensor) -> dict[str, tf.Tensor]:
        for v, value in zip(self.step_vars, values):
            v.assign(value)
        return {n: v.read_value() for n, v in zip(self.names, self.step_vars)}


def build_training_module(
    layer_sizes: Sequence[int] = DEFAULT_LAYER_SIZES,
    weights: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    step_sizes: Mapping[str, np.ndarray] | None = None,
) -> MLPTrainingModule:
    """The module with validated initial weights (Glorot from ``seed`` when None) and step sizes (ones when None)."""
    sizes = tuple(int(s) for s in layer_sizes)
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ValueError(f"layer_sizes must be >= 2 positive ints, got {list(layer_sizes)}")
    initial = init_mlp_weights(sizes, seed) if weights is None else check_weights(weights, _weight_spec(sizes))
    steps = None if step_sizes is None else check_scales(step_sizes, initial)
    return MLPTrainingModule(sizes, initial, steps)


def convert_training_module(module: MLPTrainingModule) -> bytes:
    """TFLite flatbuffer with the four signatures, builtin ops and resource variables only.

    Goes through a temporary SavedModel because that is the converter path that
    keeps signature keys and shares variables across signatures.
    """
    with tempfile.TemporaryDirectory() as tmp:
        signatures = {name: getattr(module, name).get_concrete_function() for name in SIGNATURES}
        tf.saved_model.save(module, tmp, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(SIGNATURES))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        return converter.convert()


def export_training_model(
    path: str | Path,
    layer_sizes: Sequence[int] = DEFAULT_LAYER_SIZES,
    weights: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    step_sizes: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write the training .tflite to ``path``; initial weights from ``edge.mlp.init_mlp_weights`` when None."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(convert_training_module(build_training_module(layer_sizes, weights, seed, step_sizes)))
    return out
