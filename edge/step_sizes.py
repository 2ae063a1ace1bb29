"""Per-weight step sizes for online adaptation, and how a device measures which way to move them.

Why: a meta-learned initialisation alone cannot make five online SGD steps
fast enough on this fleet's sine devices (a shared rate diverges above 0.02
when amplitudes reach 5, and at 0.02 five steps fall short). Meta-SGD (Li et
al., 2017) meta-learns one step size per weight alongside θ; here the device
applies ``base_rate · scale[name]`` to each weight, and the server learns the
scales from devices' *hypergradients*.

A device's hypergradient is the derivative of the loss on ``query`` samples
after K online steps on ``support`` samples with respect to ``log scale``.
It needs Hessian-vector products through the K steps; a microcontroller has
no second-order code, so each product is a central finite difference of two
ordinary gradients (Fallah et al., 2020, "HF-MAML"): 3·K + 1 gradient
evaluations in all, and the K intermediate weight sets in RAM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from edge.validation import InvalidInputError, WeightSpec

Weights = dict[str, np.ndarray]
GradientFn = Callable[[Mapping[str, np.ndarray], np.ndarray, np.ndarray], tuple[float, Weights]]
FINITE_DIFFERENCE = 1e-3  # length of the probe step along the adjoint, in weight units
LOG_SCALE_BOUND = 6.0  # scales stay within e^±6 of the base rate: a corrupt update cannot freeze or explode a weight


def scale_spec(weights: Mapping[str, np.ndarray]) -> WeightSpec:
    """The spec of step sizes and hypergradients: float32, named and shaped like ``weights`` whatever their dtype."""
    return {k: (np.shape(v), np.dtype(np.float32)) for k, v in weights.items()}


def unit_scales(weights: Mapping[str, np.ndarray]) -> Weights:
    """Scales that leave the base rate unchanged: what a device uses before anything was learned."""
    return {k: np.ones_like(v, dtype=np.float32) for k, v in weights.items()}


def check_scales(scales: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]) -> Weights:
    """Scales shaped like ``weights``, finite and positive; InvalidInputError naming the first fault otherwise."""
    if set(scales) != set(weights):
        raise InvalidInputError(f"step sizes name {sorted(scales)}; the model's weights are {sorted(weights)}")
    checked: Weights = {}
    for name, value in scales.items():
        array = np.asarray(value)
        if array.shape != np.shape(weights[name]):
            raise InvalidInputError(f"step sizes '{name}' have shape {array.shape}; the weight has {np.shape(weights[name])}")
        if not np.issubdtype(array.dtype, np.floating):
            raise InvalidInputError(f"step sizes '{name}' have dtype {array.dtype}; expected floats")
        if not np.all(np.isfinite(array)) or np.any(array <= 0):
            raise InvalidInputError(f"step sizes '{name}' must be finite and positive")
        checked[name] = array.astype(np.float32)
    return checked


class _Flat:
    """Weight sets as one float32 vector and back: elementwise steps become one operation, not one per array."""

    def __init__(self, like: Mapping[str, np.ndarray]) -> None:
        self.names = list(like)
        self.shapes = [np.shape(like[k]) for k in self.names]
        self.bounds = np.cumsum([0] + [math.prod(shape) for shape in self.shapes]).tolist()

    def join(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(arrays[k], dtype=np.float32).ravel() for k in self.names])

    def split(self, flat: np.ndarray) -> Weights:
        """Views of ``flat``, named and shaped like the weights (nothing is copied)."""
        return {k: flat[a:b].reshape(shape) for k, shape, a, b in zip(self.names, self.shapes, self.bounds, self.bounds[1:])}

    def norm(self, flat: np.ndarray) -> float:
        """The Euclidean norm as it is summed per array: one float32 dot product per array, added in float64."""
        return math.sqrt(sum(float(np.vdot(flat[a:b], flat[a:b])) for a, b in zip(self.bounds, self.bounds[1:])))


def log_scale_hypergradient(
    theta: Mapping[str, np.ndarray],
    scales: Mapping[str, np.ndarray],
    base_rate: float,
    support: Sequence[tuple[np.ndarray, np.ndarray]],
    query: tuple[np.ndarray, np.ndarray],
    gradient: GradientFn,
) -> tuple[Weights, float]:
    """d(query loss after online steps on ``support``)/d(log scale), and that query loss.

    Forward: φ_0 = θ, φ_t = φ_{t-1} − base_rate·scale ⊙ g_t(φ_{t-1}), one step
    per support sample, exactly as the device adapts. Backward: v = ∇L_q(φ_K);
    for t = K … 1 the step's contribution is −v ⊙ α ⊙ g_t, then
    v ← v − H_t·(α ⊙ v), with H_t·u from two gradients at φ_{t-1} ± h·u/|u|.
    Every elementwise step runs on all weight arrays at once (:class:`_Flat`), in float32 as per array.
    """
    flat = _Flat(theta)
    rates = np.float32(base_rate) * flat.join(scales)
    phis = [flat.join(theta)]
    step_gradients: list[np.ndarray] = []
    for x, y in support:
        _, g = gradient(flat.split(phis[-1]), x, y)
        step_gradients.append(flat.join(g))
        phis.append(phis[-1] - rates * step_gradients[-1])
    query_loss, grad = gradient(flat.split(phis[-1]), *query)
    v = flat.join(grad)
    hyper = np.zeros_like(rates)
    for t in reversed(range(len(support))):
        hyper -= v * rates * step_gradients[t]
        probe = rates * v  # the step's Jacobian is I − diag(α)·H_t, so v ← v − H_t·(α ⊙ v)
        size = flat.norm(probe)
        if size == 0.0 or not math.isfinite(size):
            break
        h = FINITE_DIFFERENCE / size
        x, y = support[t]
        _, plus = gradient(flat.split(phis[t] + np.float32(h) * probe), x, y)
        _, minus = gradient(flat.split(phis[t] + np.float32(-h) * probe), x, y)
        v = v - (flat.join(plus) - flat.join(minus)) / np.float32(2 * h)
    return {k: a.copy() for k, a in flat.split(hyper).items()}, float(query_loss)


def stream_hypergradient(
    theta: Mapping[str, np.ndarray],
    scales: Mapping[str, np.ndarray],
    base_rate: float,
    stream: Iterator[tuple[np.ndarray, np.ndarray]],
    shots: int,
    query: int,
    gradient: GradientFn,
) -> tuple[Weights, float]:
    """:func:`log_scale_hypergradient` on a device's next ``shots`` samples (support) and the ``query`` after them."""
    support = [next(stream) for _ in range(shots)]
    queried = [next(stream) for _ in range(query)]
    batch = (np.concatenate([x for x, _ in queried]), np.concatenate([y for _, y in queried]))
    return log_scale_hypergradient(theta, scales, base_rate, support, batch, gradient)


class LogScaleAdam:
    """Adam on log step sizes: the server's update from the devices' mean hypergradient.

    Why Adam and log space: hypergradients of different weights differ by
    orders of magnitude, and scales must stay positive. State is plain arrays
    so a checkpoint can hold it and a resumed run continues identically.
    """

    def __init__(self, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        if not learning_rate > 0:
            raise ValueError("the step-size learning rate must be positive")
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.log_scales: Weights = {}
        self.first: Weights = {}
        self.second: Weights = {}
        self.steps = 0

    def start(self, weights: Mapping[str, np.ndarray]) -> None:
        if not self.log_scales:
            self.log_scales = {k: np.zeros_like(v, dtype=np.float64) for k, v in weights.items()}
            self.first = {k: np.zeros_like(v, dtype=np.float64) for k, v in weights.items()}
            self.second = {k: np.zeros_like(v, dtype=np.float64) for k, v in weights.items()}

    def scales(self) -> Weights:
        return {k: np.exp(v).astype(np.float32) for k, v in self.log_scales.items()}

    def step(self, hypergradient: Mapping[str, np.ndarray]) -> None:
        self.steps += 1
        b1, b2 = self.beta1, self.beta2
        for k, g in hypergradient.items():
            g64 = np.asarray(g, dtype=np.float64)
            self.first[k] = b1 * self.first[k] + (1 - b1) * g64
            self.second[k] = b2 * self.second[k] + (1 - b2) * g64 * g64
            m_hat = self.first[k] / (1 - b1**self.steps)
            v_hat = self.second[k] / (1 - b2**self.steps)
            updated = self.log_scales[k] - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)
            self.log_scales[k] = np.clip(updated, -LOG_SCALE_BOUND, LOG_SCALE_BOUND)

    def state(self, prefix: str) -> Weights:
        arrays = {f"{prefix}log/{k}": v for k, v in self.log_scales.items()}
        arrays |= {f"{prefix}m/{k}": v for k, v in self.first.items()}
        arrays |= {f"{prefix}v/{k}": v for k, v in self.second.items()}
        if self.log_scales:
            arrays[f"{prefix}steps"] = np.array(self.steps, dtype=np.int64)
        return arrays

    def restore(self, state: Mapping[str, np.ndarray], prefix: str) -> None:
        def part(tag: str) -> Weights:
            head = f"{prefix}{tag}/"
            return {k[len(head):]: np.asarray(v, dtype=np.float64) for k, v in state.items() if k.startswith(head)}

        self.log_scales, self.first, self.second = part("log"), part("m"), part("v")
        self.steps = int(state.get(f"{prefix}steps", 0))
