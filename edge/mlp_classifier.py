"""A numpy multilayer perceptron classifier trained one labelled sample at a time.

The classification twin of :class:`edge.mlp.NumpyMLP`: the same tanh hidden
layers, weight names (``w0, b0, …``), initialisation and memory arithmetic,
with a softmax cross-entropy output. Keeping the names and shapes identical
is what lets the federated strategies (TinyReptile, TinyMetaFed's private
head ``w{L-1}, b{L-1}``, FedAvg) and the firmware's local init treat a
classifier exactly like the sine regressor: only the loss differs.

Labels are class indices ``0 … n_classes-1``; a device's own class order is
its business (few-shot tasks permute labels per device), which is precisely
why averaging the output layer across devices means little and TinyMetaFed
keeps it private.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge.mlp import NumpyMLP, backpropagate, mlp_forward
from edge.validation import InvalidInputError, as_float_array


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def mlp_cross_entropy_gradients(
    weights: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray, n_layers: int
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean softmax cross-entropy over the batch and its gradient for every weight."""
    acts = mlp_forward(weights, x, n_layers)
    probs = softmax(acts[-1])
    batch = len(labels)
    picked = probs[np.arange(batch), labels]
    loss = float(-np.log(np.maximum(picked, 1e-12)).mean())
    delta = probs.copy()
    delta[np.arange(batch), labels] -= 1.0
    return loss, backpropagate(weights, acts, delta / batch, n_layers)


class MLPClassifier(NumpyMLP):
    """Whole-model online classifier: logits out, one cross-entropy SGD step per sample."""

    def __init__(self, layer_sizes: Sequence[int], seed: int = 0) -> None:
        super().__init__(layer_sizes, seed)
        if self.layer_sizes[-1] < 2:
            raise ValueError(f"a classifier needs >= 2 outputs, got layer sizes {list(layer_sizes)}")

    @property
    def n_classes(self) -> int:
        return self.layer_sizes[-1]

    def _labels(self, y: object, count: int) -> np.ndarray:
        labels = np.asarray(y)
        if labels.size != count:
            raise InvalidInputError(f"{labels.size} labels for {count} samples")
        labels = labels.reshape(count)
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise InvalidInputError(f"class labels must be whole numbers, got {labels.tolist()[:5]}")
        elif labels.dtype.kind not in "iu":
            raise InvalidInputError(f"class labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= self.n_classes:
            raise InvalidInputError(f"class labels must be in 0..{self.n_classes - 1}, got {labels.tolist()[:5]}")
        return labels

    def predict_labels(self, x: np.ndarray) -> np.ndarray:
        return self.predict(x).argmax(axis=1)

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        xb = self._batch(x)
        loss, _ = mlp_cross_entropy_gradients(self._weights, xb, self._labels(y, len(xb)), self.n_layers)
        return loss

    def learn_one(self, x: np.ndarray, y: object, learning_rate: float) -> float:
        xs = as_float_array("sample x", x, (self.layer_sizes[0],)).reshape(1, -1)
        label = self._labels(y, 1)
        loss, grads = mlp_cross_entropy_gradients(self._weights, xs, label, self.n_layers)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging step is caught just below
            step = np.float32(learning_rate)
            updated = {k: (w - step * grads[k]).astype(np.float32) for k, w in self._weights.items()}
            total = sum(float(w.sum()) for w in updated.values())
        if not math.isfinite(total):
            bad = next(k for k, w in updated.items() if not np.all(np.isfinite(w)))
            raise InvalidInputError(f"SGD step diverged in '{bad}' (learning rate {learning_rate}); step refused")
        self._weights = updated
        return loss
