"""Conversions between named numpy weights and Flower records.

Lives in ``edge`` because both sides of a Flower federation need it: the
ServerApp's strategies and the ClientApp on a Linux-class device (which
installs ``flwr`` but never TensorFlow).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord


def to_array_record(weights: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array.from_numpy_ndarray(np.asarray(value)) for name, value in weights.items()})


def from_array_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}
