"""The sine-wave regression task family of the Reptile/MAML papers.

Each device owns one sine ``y = A·sin(x + φ)``; amplitude and phase differ per
device, which is the heterogeneity meta-learning exploits. A device's phase may
drift as it streams, modelling a sensor or environment that changes in the
field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, float(np.pi))
X_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class SineTask:
    amplitude: float
    phase: float
    drift_per_sample: float = 0.0
    noise_std: float = 0.0

    def value(self, x: np.ndarray, step: int = 0) -> np.ndarray:
        return self.amplitude * np.sin(x + self.phase + self.drift_per_sample * step)

    def evaluation_grid(self, n: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """A dense, evenly spaced grid on which a device's fitted curve is scored."""
        x = np.linspace(*X_RANGE, n, dtype=np.float32).reshape(-1, 1)
        return x, self.value(x).astype(np.float32)


def sample_task(seed: int, drift_per_sample: float = 0.0, noise_std: float = 0.0) -> SineTask:
    """The task of the device with this seed; the same seed always gives the same task."""
    rng = np.random.default_rng([seed, 0])
    return SineTask(
        amplitude=float(rng.uniform(*AMPLITUDE_RANGE)),
        phase=float(rng.uniform(*PHASE_RANGE)),
        drift_per_sample=drift_per_sample,
        noise_std=noise_std,
    )


class SineStream:
    """The labelled samples a device's sensor produces, one at a time, never repeated."""

    def __init__(self, task: SineTask, seed: int | tuple[int, ...]) -> None:
        self.task = task
        self._rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 1])
        self.samples_emitted = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        x = self._rng.uniform(*X_RANGE, size=(1,)).astype(np.float32)
        y = self.task.value(x, self.samples_emitted)
        if self.task.noise_std:
            y = y + self._rng.normal(0.0, self.task.noise_std, size=y.shape)
        self.samples_emitted += 1
        return x, y.astype(np.float32)

    def take(self, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [next(self) for _ in range(n)]
