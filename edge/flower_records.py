"""Conversions between named numpy weights and Flower records.

Lives in ``edge`` because both sides of a Flower federation need it: the
ServerApp's strategies and the ClientApp on a Linux-class device (which
installs ``flwr`` but never TensorFlow). ``flwr`` is imported inside the
functions, so ``import edge`` works on a device that has no Flower at all (an
MQTT microcontroller client); only calling these needs it.
"""

from __future__ import annotations

from collections.abc import Mapping

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from flwr.app import ArrayRecord


def to_array_record(weights: Mapping[str, np.ndarray]) -> ArrayRecord:
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({name: Array.from_numpy_ndarray(np.asarray(value)) for name, value in weights.items()})


def from_array_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}
