"""TinyOL: a dense layer trained in RAM, one SGD step per streamed sample.

The frozen backbone stays in flash and turns each sample into a feature
vector; this head is the only thing that learns on the device. It keeps no
sample after its step (online learning), and a classifier head can grow new
output classes at run time without disturbing the classes it already knows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from edge.learner import ComputeCost, Learner, MemoryFootprint
from edge.validation import InvalidInputError, WeightSpec, as_float_array, check_finite

Task = Literal["regression", "classification"]
FLOAT_BYTES = 4


def softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class OnlineHead(Learner):
    """Dense head ``y = x·W + b``: MSE for regression, softmax cross-entropy for classification."""

    def __init__(self, n_features: int, n_outputs: int, task: Task = "regression", seed: int = 0) -> None:
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
        if n_features <= 0 or n_outputs <= 0:
            raise ValueError("n_features and n_outputs must be positive")
        self.task: Task = task
        self.n_features = n_features
        rng = np.random.default_rng(seed)
        limit = np.sqrt(6.0 / (n_features + n_outputs))
        self._w = rng.uniform(-limit, limit, size=(n_features, n_outputs)).astype(np.float32)
        self._b = np.zeros(n_outputs, dtype=np.float32)

    @property
    def n_outputs(self) -> int:
        return int(self._w.shape[1])

    @property
    def weight_spec(self) -> WeightSpec:
        return {"head_w": (self._w.shape, np.dtype(np.float32)), "head_b": (self._b.shape, np.dtype(np.float32))}

    def add_class(self) -> int:
        """Grow one output class (zero-initialised, so existing predictions are unchanged); return its index."""
        if self.task != "classification":
            raise ValueError("only a classification head can grow classes")
        self._w = np.concatenate([self._w, np.zeros((self.n_features, 1), np.float32)], axis=1)
        self._b = np.concatenate([self._b, np.full(1, self._b.min() if self._b.size else 0.0, np.float32)])
        return self.n_outputs - 1

    def _features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InvalidInputError(f"features have shape {x.shape}; expected (n, {self.n_features})")
        check_finite("features", x)
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._features(x) @ self._w + self._b

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        return softmax(z) if self.task == "classification" else z

    def _label(self, y: object) -> np.ndarray:
        if self.task == "regression":
            return as_float_array("label y", y, (self.n_outputs,))
        label = np.asarray(y)
        if label.size != 1 or label.dtype.kind not in "iu" and not (
            label.dtype.kind == "f" and float(label.reshape(-1)[0]).is_integer()
        ):
            raise InvalidInputError(f"class label must be one integer, got {y!r}")
        index = int(label.reshape(-1)[0])
        if not 0 <= index < self.n_outputs:
            raise InvalidInputError(
                f"class label {index} is outside 0..{self.n_outputs - 1}; call add_class() to grow the head first"
            )
        onehot = np.zeros(self.n_outputs, np.float32)
        onehot[index] = 1.0
        return onehot

    def _loss_and_delta(self, x: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss of a batch and dLoss/dlogits (per-sample mean over the batch)."""
        z = x @ self._w + self._b
        n = len(x)
        if self.task == "classification":
            p = softmax(z)
            loss = float(-np.mean(np.sum(target * np.log(np.clip(p, 1e-12, 1.0)), axis=1)))
            return loss, (p - target) / n
        loss = float(np.mean((z - target) ** 2))
        return loss, 2.0 * (z - target) / (n * self.n_outputs)

    def gradients(self, x: np.ndarray, y: object) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradient for one sample; exposed so tests can check it against finite differences."""
        features = self._features(as_float_array("sample x", x, (self.n_features,)))
        loss, delta = self._loss_and_delta(features, self._label(y).reshape(1, -1))
        return loss, {"head_w": features.T @ delta, "head_b": delta.sum(axis=0)}

    def learn_one(self, x: np.ndarray, y: object, learning_rate: float) -> float:
        loss, grads = self.gradients(x, y)
        new_w = self._w - learning_rate * grads["head_w"]
        new_b = self._b - learning_rate * grads["head_b"]
        if not (np.all(np.isfinite(new_w)) and np.all(np.isfinite(new_b))):
            raise InvalidInputError(f"SGD step diverged (learning rate {learning_rate}); step refused")
        self._w, self._b = new_w.astype(np.float32), new_b.astype(np.float32)
        return loss

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        features = self._features(x)
        if self.task == "classification":
            labels = np.asarray(y).reshape(-1)
            target = np.stack([self._label(label) for label in labels])
        else:
            target = np.asarray(y, np.float32).reshape(len(features), self.n_outputs)
        return self._loss_and_delta(features, target)[0]

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"head_w": self._w.copy(), "head_b": self._b.copy()}

    def _assign_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._w, self._b = weights["head_w"], weights["head_b"]

    def memory_footprint(self) -> MemoryFootprint:
        n_params = self._w.size + self._b.size
        return MemoryFootprint(
            weights=n_params * FLOAT_BYTES,
            training=(n_params + self.n_outputs) * FLOAT_BYTES,  # gradient + dLoss/dlogits
            inference=(self.n_features + self.n_outputs) * FLOAT_BYTES,
        )

    def compute_cost(self) -> ComputeCost:
        forward = self.n_features * self.n_outputs
        return ComputeCost(inference_float_macs=forward, training_float_macs=2 * forward)
