"""The server's arithmetic on Top-P sparse updates: sum many devices' deltas, apply the sum to θ.

Why on the server side: a device only *makes* a sparse update
(:func:`edge.wire.sparse.top_p_sparsify`) and sends it; adding them up and
applying them to the meta-model is the aggregation's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from edge.wire.sparse import SparseTensor


def apply_sparse(
    theta: Mapping[str, np.ndarray], sparse: Mapping[str, SparseTensor], scale: float = 1.0
) -> dict[str, np.ndarray]:
    """Return ``theta + scale * densify(sparse)``, touching only the listed entries.

    Names absent from ``sparse`` are copied unchanged; a sparse name that is not in
    ``theta`` or whose shape differs is refused. Each updated entry is computed in
    float64 and cast back to the dtype of ``theta``.
    """
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    unknown = sorted(set(sparse) - set(theta))
    if unknown:
        raise ValueError(f"sparse update names not in the weights: {unknown}")
    for name, st in sparse.items():
        if tuple(np.shape(theta[name])) != st.shape:
            raise ValueError(f"sparse update {name!r} has shape {st.shape}; weights have {np.shape(theta[name])}")
    out: dict[str, np.ndarray] = {}
    for name, array in theta.items():
        result = np.array(array, copy=True)
        st = sparse.get(name)
        if st is not None and st.nnz:
            flat = result.reshape(-1)
            idx = st.indices.astype(np.int64)
            flat[idx] = (flat[idx].astype(np.float64) + scale * st.values.astype(np.float64)).astype(result.dtype)
        out[name] = result
    return out


def sum_sparse(updates: list[Mapping[str, SparseTensor]]) -> dict[str, SparseTensor]:
    """Entry-wise sum of sparse updates over the union of their indices, in float64.

    The server adds many devices' Top-P updates this way and applies the sum
    once with :func:`apply_sparse`, so the result does not depend on the order
    replies arrived in and costs O(total entries), never a dense pass per
    device. Every update must have the same names and shapes.
    """
    if not updates:
        return {}
    names = set(updates[0])
    for update in updates[1:]:
        if set(update) != names:
            raise ValueError(f"sparse updates differ in names: {sorted(names ^ set(update))}")
    out: dict[str, SparseTensor] = {}
    for name in sorted(names):
        shape = updates[0][name].shape
        if any(u[name].shape != shape for u in updates):
            raise ValueError(f"sparse updates disagree on the shape of {name!r}")
        indices = np.concatenate([u[name].indices.astype(np.int64) for u in updates])
        values = np.concatenate([u[name].values.astype(np.float64) for u in updates])
        unique, inverse = np.unique(indices, return_inverse=True)
        out[name] = SparseTensor(shape, unique.astype(np.uint32), np.bincount(inverse, weights=values, minlength=unique.size))
    return out
