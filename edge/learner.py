"""The contract every on-device learner honours.

Strategies, simulated firmware and real devices talk to learners only through
this interface, so a numpy reference, a TFLite training graph and a frozen
int8 backbone with a trainable head are interchangeable in a federation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge.validation import WeightSpec, check_weights


@dataclass(frozen=True)
class MemoryFootprint:
    """Bytes a learner holds in RAM; what a device budget is checked against.

    ``weights`` are the trainable parameters; ``training`` is everything the SGD
    step needs on top (gradients, saved activations, optimiser state);
    ``inference`` is working memory for a forward pass (activations or a
    TFLite tensor arena).
    """

    weights: int
    training: int
    inference: int

    @property
    def total(self) -> int:
        return self.weights + self.training + self.inference


@dataclass(frozen=True)
class ComputeCost:
    """Multiply-accumulates of one forward pass and of one SGD step (forward + backward).

    Device profiles turn these into simulated time and energy.
    """

    inference_float_macs: int = 0
    inference_int8_macs: int = 0
    training_float_macs: int = 0


class Learner(ABC):
    """An online learner: one SGD step per streamed sample, weights as named arrays."""

    @property
    @abstractmethod
    def weight_spec(self) -> WeightSpec:
        """Name -> (shape, dtype) of every trainable array."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch ``x`` of shape (n, *input_shape)."""

    @abstractmethod
    def learn_one(self, x: np.ndarray, y: object, learning_rate: float) -> float:
        """Take one SGD step on one labelled sample; return the loss before the step.

        Invalid input raises :class:`edge.validation.InvalidInputError` and
        leaves the weights unchanged.
        """

    @abstractmethod
    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean loss over a batch, without learning."""

    @abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the trainable arrays."""

    @abstractmethod
    def _assign_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Store already validated weights."""

    @abstractmethod
    def memory_footprint(self) -> MemoryFootprint:
        """RAM this learner needs to infer and train."""

    def compute_cost(self) -> ComputeCost:
        """MACs per inference and per SGD step; learners that cannot tell return zeros."""
        return ComputeCost()

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace all trainable arrays at once, or none if any is invalid."""
        self._assign_weights(check_weights(weights, self.weight_spec))
