"""A numpy multilayer perceptron trained one sample at a time.

This is the reference implementation of the whole-model learner (e.g. the
1→40→40→1 sine regressor of the Reptile paper). The TFLite training graph
built by ``server.models.sine_mlp`` computes exactly the same forward pass,
backward pass and SGD step, which the test-suite checks; devices that have
no TFLite interpreter can run this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edge.learner import ComputeCost, Learner, MemoryFootprint
from edge.step_sizes import check_scales
from edge.validation import InvalidInputError, WeightSpec, as_float_array, check_finite

FLOAT_BYTES = 4


def mlp_weight_names(n_layers: int) -> list[str]:
    names = []
    for i in range(n_layers):
        names += [f"w{i}", f"b{i}"]
    return names


def init_mlp_weights(layer_sizes: Sequence[int], seed: int) -> dict[str, np.ndarray]:
    """Glorot-uniform kernels and zero biases, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights[f"w{i}"] = rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
        weights[f"b{i}"] = np.zeros(fan_out, dtype=np.float32)
    return weights


def mlp_forward(weights: dict[str, np.ndarray], x: np.ndarray, n_layers: int) -> list[np.ndarray]:
    """Activations of every layer, input first; tanh on hidden layers, linear output."""
    activations = [x]
    h = x
    for i in range(n_layers):
        z = h @ weights[f"w{i}"] + weights[f"b{i}"]
        h = np.tanh(z) if i < n_layers - 1 else z
        activations.append(h)
    return activations


def mlp_gradients(
    weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, n_layers: int
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean-squared-error loss over the batch and its gradient for every weight."""
    acts = mlp_forward(weights, x, n_layers)
    out = acts[-1]
    batch, out_dim = out.shape
    error = out - y
    loss = float((error * error).sum()) / error.size
    return loss, backpropagate(weights, acts, error * (2.0 / (batch * out_dim)), n_layers)


def backpropagate(
    weights: dict[str, np.ndarray], acts: list[np.ndarray], delta: np.ndarray, n_layers: int
) -> dict[str, np.ndarray]:
    """Gradients of every weight from the loss gradient ``delta`` at the (linear) output, through tanh layers.

    Shared by the regressor and :mod:`edge.mlp_classifier`: the losses differ
    only in the output delta.
    """
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(n_layers)):
        grads[f"w{i}"] = acts[i].T @ delta
        grads[f"b{i}"] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ weights[f"w{i}"].T) * (1.0 - acts[i] ** 2)
    return grads


def regression_gradients(layer_sizes: Sequence[int]) -> Callable[..., tuple[float, dict[str, np.ndarray]]]:
    """``(weights, x, y) -> (loss, gradients)`` at any weights, not only a learner's own: what a hypergradient needs."""
    n_in, n_out, n_layers = layer_sizes[0], layer_sizes[-1], len(layer_sizes) - 1

    def gradient(weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        xb = np.asarray(x, dtype=np.float32).reshape(-1, n_in)
        return mlp_gradients(dict(weights), xb, np.asarray(y, dtype=np.float32).reshape(len(xb), n_out), n_layers)

    return gradient


class NumpyMLP(Learner):
    """Whole-model online regressor: every weight trains on the device."""

    def __init__(self, layer_sizes: Sequence[int], seed: int = 0) -> None:
        if len(layer_sizes) < 2 or any(int(s) <= 0 for s in layer_sizes):
            raise ValueError(f"layer_sizes must be >= 2 positive ints, got {list(layer_sizes)}")
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.n_layers = len(self.layer_sizes) - 1
        self._weights = init_mlp_weights(self.layer_sizes, seed)
        self._step_scales: dict[str, np.ndarray] | None = None

    def set_step_sizes(self, scales: Mapping[str, np.ndarray] | None) -> None:
        """Per-weight multipliers of the learning rate (meta-learned, :mod:`edge.step_sizes`); None: one shared rate."""
        if scales is not None and type(self).learn_one is not NumpyMLP.learn_one:
            raise NotImplementedError(f"{type(self).__name__} has its own SGD step, which does not apply step sizes")
        self._step_scales = None if scales is None else check_scales(scales, self._weights)

    @property
    def step_sizes(self) -> dict[str, np.ndarray] | None:
        return None if self._step_scales is None else {k: v.copy() for k, v in self._step_scales.items()}


    @property
    def weight_spec(self) -> WeightSpec:
        return {k: (v.shape, v.dtype) for k, v in self._weights.items()}

    def _batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1 and self.layer_sizes[0] == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[1] != self.layer_sizes[0]:
            raise InvalidInputError(f"input batch has shape {x.shape}; expected (n, {self.layer_sizes[0]})")
        check_finite("input batch", x)
        return x

    def predict(self, x: np.ndarray) -> np.ndarray:
        return mlp_forward(self._weights, self._batch(x), self.n_layers)[-1]

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        xb = self._batch(x)
        yb = np.asarray(y, dtype=np.float32).reshape(len(xb), self.layer_sizes[-1])
        return float(np.mean((self.predict(xb) - yb) ** 2))

    def learn_one(self, x: np.ndarray, y: object, learning_rate: float) -> float:
        xs = as_float_array("sample x", x, (self.layer_sizes[0],)).reshape(1, -1)
        ys = as_float_array("label y", y, (self.layer_sizes[-1],)).reshape(1, -1)
        loss, grads = mlp_gradients(self._weights, xs, ys, self.n_layers)
        step = np.float32(learning_rate)
        if self._step_scales is None:
            updated = {k: w - step * grads[k] for k, w in self._weights.items()}
        else:
            updated = {k: w - step * self._step_scales[k] * grads[k] for k, w in self._weights.items()}
        # One reduction per array: a NaN or Inf anywhere makes its sum non-finite.
        if not math.isfinite(sum(float(w.sum()) for w in updated.values())):
            bad = next(k for k, w in updated.items() if not np.all(np.isfinite(w)))
            raise InvalidInputError(f"SGD step diverged in '{bad}' (learning rate {learning_rate}); step refused")
        self._weights = updated
        return loss

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._weights.items()}

    def _assign_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._weights = weights

    def memory_footprint(self) -> MemoryFootprint:
        n_params = sum(v.size for v in self._weights.values())
        activations = sum(self.layer_sizes)  # batch of one, every layer kept for backprop
        scales = n_params if self._step_scales is not None else 0
        return MemoryFootprint(
            weights=n_params * FLOAT_BYTES,
            training=(n_params + scales + 2 * max(self.layer_sizes)) * FLOAT_BYTES,  # gradients (+ step sizes) + two deltas
            inference=activations * FLOAT_BYTES,
        )

    def compute_cost(self) -> ComputeCost:
        forward = sum(a * b for a, b in zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        # backward: one MAC per weight for its gradient, one per weight to propagate the delta
        return ComputeCost(inference_float_macs=forward, training_float_macs=3 * forward)
