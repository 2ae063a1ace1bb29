"""Checks applied at every boundary where arrays enter a learner.

A device must never let one bad packet or one bad sensor reading poison the
weights it has learned, so every check here runs *before* any state changes
and raises an error that names the offending entry.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

WeightSpec = Mapping[str, tuple[tuple[int, ...], np.dtype]]


class InvalidInputError(ValueError):
    """Raised when a sample, label or weight set is refused; the learner is unchanged."""


def check_finite(name: str, array: np.ndarray) -> None:
    """Refuse NaN/Inf, which would silently spread through every later SGD step."""
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InvalidInputError(f"{name} contains {bad} non-finite value(s) (NaN or Inf)")


def as_float_array(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """Convert a sample to float32 with the exact expected shape, or refuse it."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # numpy raises many types for ragged input
        raise InvalidInputError(f"{name} is not an array: {exc}") from exc
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(f"{name} has dtype {array.dtype}; expected a real number type")
    if array.shape != shape:
        if array.size == int(np.prod(shape)) and array.ndim <= 1 and len(shape) <= 1:
            array = array.reshape(shape)
        else:
            raise InvalidInputError(f"{name} has shape {array.shape}; expected {shape}")
    array = array.astype(np.float32)
    check_finite(name, array)
    return array


def check_weights(weights: Mapping[str, np.ndarray], spec: WeightSpec) -> dict[str, np.ndarray]:
    """Validate a complete weight set against a learner's spec; return float32 copies.

    Every entry is checked before anything is returned so that the caller can
    assign all of them or none.
    """
    if not isinstance(weights, Mapping):
        raise InvalidInputError(f"weights must be a mapping of name -> array, got {type(weights).__name__}")
    missing = sorted(set(spec) - set(weights))
    extra = sorted(set(weights) - set(spec))
    if missing or extra:
        raise InvalidInputError(
            f"weight names do not match: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    checked: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in spec.items():
        array = np.asarray(weights[name])
        if array.shape != tuple(shape):
            raise InvalidInputError(f"weight '{name}' has shape {array.shape}; expected {tuple(shape)}")
        if array.dtype != np.dtype(dtype):
            raise InvalidInputError(f"weight '{name}' has dtype {array.dtype}; expected {np.dtype(dtype)}")
        check_finite(f"weight '{name}'", array)
        checked[name] = np.array(array, dtype=dtype, copy=True)
    return checked
