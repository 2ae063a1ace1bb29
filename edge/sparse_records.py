"""Sparse updates (Top-P%) as Flower records, and back.

A sparse update travels in one ``ArrayRecord`` with two arrays per tensor,
``"<name>.indices"`` (flat C-order, uint32) and ``"<name>.values"``; the dense
shape is not sent because the receiver owns θ and knows it. The same record
comes from a Flower SuperNode and, translated from the binary wire payload,
from an MQTT device, so a strategy handles both alike. Decoding checks
everything before returning: one bad reply must not poison θ. ``flwr`` is
imported only where a record is built, so ``import edge`` needs no Flower.
"""

from __future__ import annotations

from collections.abc import Mapping

from typing import TYPE_CHECKING

import numpy as np

from edge.validation import InvalidInputError, WeightSpec
from edge.wire.sparse import SparseTensor

INDICES = ".indices"
VALUES = ".values"

if TYPE_CHECKING:
    from flwr.app import ArrayRecord


def sparse_to_array_record(sparse: Mapping[str, SparseTensor]) -> ArrayRecord:
    from flwr.app import Array, ArrayRecord

    record = ArrayRecord()
    for name, st in sparse.items():
        record[name + INDICES] = Array.from_numpy_ndarray(st.indices.astype(np.uint32))
        record[name + VALUES] = Array.from_numpy_ndarray(np.asarray(st.values))
    return record


def sparse_from_array_record(record: ArrayRecord, spec: WeightSpec) -> dict[str, SparseTensor]:
    """The sparse update in ``record``; it must cover exactly the names of ``spec`` (dense shapes, dtypes).

    Raises :class:`InvalidInputError` naming the first problem: missing or extra
    arrays, indices out of range, unsorted or duplicated, values of the wrong
    dtype or count, NaN/Inf.
    """
    expected = {name + suffix for name in spec for suffix in (INDICES, VALUES)}
    missing, extra = sorted(expected - set(record)), sorted(set(record) - expected)
    if missing or extra:
        raise InvalidInputError(f"sparse update arrays do not match: missing {missing or 'none'}, unexpected {extra or 'none'}")
    out: dict[str, SparseTensor] = {}
    for name, (shape, dtype) in spec.items():
        indices = record[name + INDICES].numpy()
        values = record[name + VALUES].numpy()
        if indices.dtype.kind not in "iu":
            raise InvalidInputError(f"sparse update {name!r} indices have dtype {indices.dtype}; expected integers")
        if values.dtype != np.dtype(dtype):
            raise InvalidInputError(f"sparse update {name!r} values have dtype {values.dtype}; expected {np.dtype(dtype)}")
        if values.size and not np.all(np.isfinite(values)):
            raise InvalidInputError(f"sparse update {name!r} contains NaN or Inf")
        try:
            out[name] = SparseTensor(tuple(shape), indices.reshape(-1), values.reshape(-1))
        except ValueError as exc:
            raise InvalidInputError(f"sparse update {name!r}: {exc}") from None
    return out
