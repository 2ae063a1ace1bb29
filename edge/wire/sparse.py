"""Top-P% selective communication (TinyMetaFed): keep the largest-magnitude entries.

A device sends only the fraction ``p`` of its update entries with the largest
magnitude, as (flat index, value) pairs per tensor; the server adds them to its
weights (``server.strategies.sparse_math``).

**Global, not per-tensor, selection.** The ``k = ceil(p * N)`` entries are chosen
over *all* ``N`` entries of the update together. That is exactly "the P% largest
entries of the update" (the best ``k``-term approximation in L2 of the whole
delta), so the uplink budget goes to wherever the device actually moved; a
per-tensor quota would spend bytes on near-zero entries of a tensor that barely
changed (e.g. biases) while cutting large entries of another. The price is that a
tensor may receive no entries in a round; it is still sent, with zero entries, so
the receiver sees every name. Ties in magnitude are broken deterministically: the
earlier entry wins, ordering tensors by name (ASCII) and entries by flat C-order
index.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseTensor:
    """A tensor of ``shape`` that is zero except at ``indices`` (flat, C order).

    ``indices`` are uint32, strictly increasing and ``< prod(shape)``; ``values``
    is 1-D with one entry per index, in the tensor's dtype.
    """

    shape: tuple[int, ...]
    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(d) for d in self.shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"sparse tensor shape {shape} has a negative dimension")
        indices = np.asarray(self.indices)
        values = np.asarray(self.values)
        if indices.ndim != 1 or values.ndim != 1 or indices.shape != values.shape:
            raise ValueError(
                f"sparse tensor needs 1-D indices and values of equal length, got {indices.shape} and {values.shape}"
            )
        if indices.size and indices.dtype.kind not in "iu":
            raise ValueError(f"sparse indices must be integers, got {indices.dtype}")
        size = math.prod(shape)
        if indices.size:
            if int(indices.min()) < 0 or int(indices.max()) >= size:
                raise ValueError(f"sparse indices out of range for shape {shape} ({size} entries)")
            if np.any(np.diff(indices.astype(np.int64)) <= 0):
                raise ValueError("sparse indices must be strictly increasing (sorted, no duplicates)")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "indices", indices.astype(np.uint32))
        object.__setattr__(self, "values", values)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.size, dtype=self.values.dtype)
        out[self.indices.astype(np.int64)] = self.values
        return out.reshape(self.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseTensor):
            return NotImplemented
        return (
            self.shape == other.shape
            and self.values.dtype == other.values.dtype
            and np.array_equal(self.indices, other.indices)
            and np.array_equal(self.values, other.values)
        )

    __hash__ = None  # type: ignore[assignment]


def top_p_count(total: int, p: float) -> int:
    """``ceil(p * total)`` entries kept (at least one if ``total > 0``), robust to float noise (0.3*10 -> 3)."""
    _check_fraction(p)
    if total <= 0:
        return 0
    return min(total, max(1, math.ceil(round(p * total, 9))))


def _check_fraction(p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 1:
        hint = f" (did you mean {p / 100:g}?)" if isinstance(p, (int, float)) and 1 < p <= 100 else ""
        raise ValueError(f"p is the kept fraction in (0, 1], e.g. 0.1 for Top-10%; got {p!r}{hint}")


def top_p_sparsify(delta: Mapping[str, np.ndarray], p: float) -> dict[str, SparseTensor]:
    """Keep the ``ceil(p * N)`` largest-|x| entries over all ``N`` entries of ``delta``; zero the rest.

    Returns one :class:`SparseTensor` per name (in name order), possibly with no
    entries. Values keep each tensor's dtype. NaN/Inf in ``delta`` is refused.
    """
    _check_fraction(p)
    names = sorted(delta)
    arrays = [np.asarray(delta[n]) for n in names]
    for name, array in zip(names, arrays):
        if array.dtype.kind not in "fiu":
            raise ValueError(f"delta {name!r} has dtype {array.dtype}; expected a real number type")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"delta {name!r} contains NaN or Inf")
    sizes = [a.size for a in arrays]
    total = int(sum(sizes))
    k = top_p_count(total, p)
    if total:
        magnitude = np.concatenate([np.abs(a.reshape(-1).astype(np.float64)) for a in arrays])
        # stable sort of -|x|: among equal magnitudes the earlier (name, index) position wins
        keep = np.sort(np.argsort(-magnitude, kind="stable")[:k])
    else:
        keep = np.zeros(0, dtype=np.int64)
    out: dict[str, SparseTensor] = {}
    offset = 0
    for name, array, size in zip(names, arrays, sizes):
        lo, hi = np.searchsorted(keep, [offset, offset + size])
        local = (keep[lo:hi] - offset).astype(np.uint32)
        out[name] = SparseTensor(array.shape, local, array.reshape(-1)[local.astype(np.int64)].copy())
        offset += size
    return out


def densify(sparse: Mapping[str, SparseTensor]) -> dict[str, np.ndarray]:
    return {name: st.to_dense() for name, st in sparse.items()}
