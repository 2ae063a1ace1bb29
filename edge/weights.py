"""Framework-free arithmetic over named weight sets.

Every strategy (server) and every device (edge) does the same few operations
on weights: subtract, scale, average, interpolate. Keeping them here as pure
functions over ``dict[str, np.ndarray]`` lets the Reptile update read like the
paper and lets tests check it without Flower or TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Weights = dict[str, np.ndarray]


def _same_names(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    if set(a) != set(b):
        raise ValueError(f"weight sets differ in names: {sorted(set(a) ^ set(b))}")


def copy(weights: Mapping[str, np.ndarray]) -> Weights:
    return {k: np.array(v, copy=True) for k, v in weights.items()}


def subtract(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> Weights:
    _same_names(a, b)
    return {k: a[k] - b[k] for k in a}


def add(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> Weights:
    _same_names(a, b)
    return {k: a[k] + b[k] for k in a}


def scale(a: Mapping[str, np.ndarray], factor: float) -> Weights:
    return {k: (v * factor).astype(v.dtype) for k, v in a.items()}


def mean(weight_sets: Sequence[Mapping[str, np.ndarray]], counts: Sequence[float] | None = None) -> Weights:
    """(Weighted) average; ``counts`` are e.g. example counts as in FedAvg."""
    if not weight_sets:
        raise ValueError("cannot average an empty list of weight sets")
    first = weight_sets[0]
    for other in weight_sets[1:]:
        _same_names(first, other)
    factors = np.ones(len(weight_sets)) if counts is None else np.asarray(counts, dtype=np.float64)
    if np.any(factors < 0) or factors.sum() <= 0:
        raise ValueError("averaging weights must be non-negative with a positive sum")
    factors = factors / factors.sum()
    return {
        k: np.sum([f * ws[k].astype(np.float64) for f, ws in zip(factors, weight_sets)], axis=0).astype(first[k].dtype)
        for k in first
    }


def interpolate(theta: Mapping[str, np.ndarray], phi: Mapping[str, np.ndarray], epsilon: float) -> Weights:
    """Reptile's outer step: θ + ε(φ − θ)."""
    _same_names(theta, phi)
    return {k: (theta[k] + epsilon * (phi[k] - theta[k])).astype(theta[k].dtype) for k in theta}


def nbytes(weights: Mapping[str, np.ndarray]) -> int:
    return int(sum(np.asarray(v).nbytes for v in weights.values()))


def l2_distance(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    _same_names(a, b)
    return float(np.sqrt(sum(float(np.sum((a[k] - b[k]) ** 2)) for k in a)))
