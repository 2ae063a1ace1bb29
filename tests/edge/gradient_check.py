"""Central finite differences against analytic gradients, for every entry of every weight array."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def assert_gradients_match(
    loss_of: Callable[[dict[str, np.ndarray]], float], weights: dict[str, np.ndarray], grads: dict[str, np.ndarray]
) -> None:
    eps = 1e-6
    for name, value in weights.items():
        for index in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in weights.items()}
            minus = {k: v.copy() for k, v in weights.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric = (loss_of(plus) - loss_of(minus)) / (2 * eps)
            assert grads[name][index] == pytest.approx(numeric, rel=1e-4, abs=1e-7), f"{name}{index}"
