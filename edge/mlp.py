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
    one_sample = len(delta) == 1
    for i in reversed(range(n_layers)):
        grads[f"w{i}"] = acts[i].T @ delta
        # the sum over a batch of one is its one row, bit for bit: a view, not a reduction
        grads[f"b{i}"] = delta[0] if one_sample else np.add.reduce(delta, 0)
        if i > 0:
            a = acts[i]
            delta = (delta @ weights[f"w{i}"].T) * (1.0 - a * a)  # a * a is what a ** 2 computes
    return grads


def regression_gradients(layer_sizes: Sequence[int]) -> Callable[..., tuple[float, dict[str, np.ndarray]]]:
    """``(weights, x, y) -> (loss, gradients)`` at any weights, not only a learner's own: what a hypergradient needs."""
    n_in, n_out, n_layers = layer_sizes[0], layer_sizes[-1], len(layer_sizes) - 1

    def gradient(weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        xb = np.asarray(x, dtype=np.float32).reshape(-1, n_in)
        return mlp_gradients(dict(weights), xb, np.asarray(y, dtype=np.float32).reshape(len(xb), n_out), n_layers)

    return gradient


def _sample(name: str, value: object, size: int) -> np.ndarray:
    """One sample as a (1, size) float32 row, refused as :func:`edge.validation.as_float_array` refuses it.

    A stream's own samples are float32 arrays of the right shape already: they need only the finiteness check
    (no copy: the step never writes to them).
    """
    if type(value) is np.ndarray and value.dtype == np.float32 and value.shape == (size,):
        check_finite(name, value)
        return value.reshape(1, size)
    return as_float_array(name, value, (size,)).reshape(1, size)


class NumpyMLP(Learner):
    """Whole-model online regressor: every weight trains on the device."""

    def __init__(self, layer_sizes: Sequence[int], seed: int = 0) -> None:
        if len(layer_sizes) < 2 or any(int(s) <= 0 for s in layer_sizes):
            raise ValueError(f"layer_sizes must be >= 2 positive ints, got {list(layer_sizes)}")
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.n_layers = len(self.layer_sizes) - 1
        self._weights = init_mlp_weights(self.layer_sizes, seed)
        self._step_scales: dict[str, np.ndarray] | None = None
        self._rates_cache: tuple[tuple[float, list[str]], np.ndarray] | None = None  # see _rates

    def set_step_sizes(self, scales: Mapping[str, np.ndarray] | None) -> None:
        """Per-weight multipliers of the learning rate (meta-learned, :mod:`edge.step_sizes`); None: one shared rate."""
        if scales is not None and type(self).learn_one is not NumpyMLP.learn_one:
            raise NotImplementedError(f"{type(self).__name__} has its own SGD step, which does not apply step sizes")
        self._step_scales = None if scales is None else check_scales(scales, self._weights)
        self._rates_cache = None

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
        xs = _sample("sample x", x, self.layer_sizes[0])
        ys = _sample("label y", y, self.layer_sizes[-1])
        loss, grads = mlp_gradients(self._weights, xs, ys, self.n_layers)
        # Every weight array in one flat vector, so the step and its check are one operation each instead of one
        # per array. Elementwise, so each weight gets exactly w - (rate · scale) · g, as per array.
        names = list(self._weights)
        flat = np.concatenate([self._weights[k].ravel() for k in names])
        gradient = np.concatenate([grads[k].ravel() for k in names])
        if self._step_scales is None:
            updated = flat - np.float32(learning_rate) * gradient
        else:
            updated = flat - self._rates(learning_rate, names) * gradient
        if not np.isfinite(updated).all():
            split = self._split(updated, names)
            bad = next(k for k in names if not np.isfinite(split[k]).all())
            raise InvalidInputError(f"SGD step diverged in '{bad}' (learning rate {learning_rate}); step refused")
        self._weights = self._split(updated, names)
        return loss

    def _split(self, flat: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """Views of ``flat`` shaped like the weights, in ``names`` order."""
        arrays, start = {}, 0
        for k in names:
            shape = self._weights[k].shape
            size = math.prod(shape)
            arrays[k] = flat[start:start + size].reshape(shape)
            start += size
        return arrays

    def _rates(self, learning_rate: float, names: list[str]) -> np.ndarray:
        """rate · scale per weight, flat; computed once per learning rate (the same float32 products each time)."""
        if self._rates_cache is None or self._rates_cache[0] != (learning_rate, names):
            assert self._step_scales is not None
            step = np.float32(learning_rate)
            rates = np.concatenate([(step * self._step_scales[k]).ravel() for k in names])
            self._rates_cache = ((learning_rate, names), rates)
        return self._rates_cache[1]

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
