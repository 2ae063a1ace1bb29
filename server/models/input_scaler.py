"""Device-side input scaling: a per-column affine map, optionally after ``log1p``, applied in numpy.

int8 input has one scale for all columns, so raw columns of very different
ranges (CO2 in ppm next to a temperature slope) would lose most of their
resolution; the device scales first, then quantises. The scaler travels with
the model as plain JSON (:meth:`InputScaler.as_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
