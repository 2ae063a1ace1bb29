"""Applying Top-P sparse updates on the server: θ + scale · Δ, touching only the listed entries."""

import numpy as np
import pytest

from edge.weights import add
from edge.wire import SparseTensor, top_p_sparsify
from server.strategies.sparse_math import apply_sparse


def test_apply_sparse_is_theta_plus_scaled_dense_delta() -> None:
    rng = np.random.default_rng(3)
    theta = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32), "head": np.ones(2, np.float32)}
    delta = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    sparse = top_p_sparsify(delta, 0.4)
    out = apply_sparse(theta, sparse, scale=0.5)
    for name in ("w", "b"):
        dense = sparse[name].to_dense()
        expected = (theta[name].astype(np.float64) + 0.5 * dense.astype(np.float64)).astype(np.float32)
        assert np.array_equal(out[name], expected) and out[name].dtype == np.float32
        untouched = dense == 0
        assert np.array_equal(out[name][untouched], theta[name][untouched])  # bit-identical outside the indices
    assert np.array_equal(out["head"], theta["head"])  # names not sent are unchanged
    assert out["w"] is not theta["w"] and not np.shares_memory(out["w"], theta["w"])
    full = apply_sparse(theta, top_p_sparsify(delta, 1.0))
    ref = add({k: theta[k] for k in delta}, delta)
    assert all(np.allclose(full[k], ref[k], rtol=0, atol=1e-6) for k in delta)


def test_apply_sparse_accumulates_several_devices() -> None:
    theta = {"w": np.zeros(5, np.float32)}
    first = {"w": SparseTensor((5,), np.array([0, 2], np.uint32), np.array([1.0, 2.0], np.float32))}
    second = {"w": SparseTensor((5,), np.array([2, 4], np.uint32), np.array([4.0, 8.0], np.float32))}
    out = apply_sparse(apply_sparse(theta, first, 0.5), second, 0.5)
    assert np.array_equal(out["w"], [0.5, 0, 3.0, 0, 4.0])


def test_apply_sparse_refuses_mismatches() -> None:
    theta = {"w": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError, match="not in the weights"):
        apply_sparse(theta, {"x": SparseTensor((1,), np.zeros(0, np.uint32), np.zeros(0, np.float32))})
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        apply_sparse(theta, {"w": SparseTensor((4,), np.zeros(0, np.uint32), np.zeros(0, np.float32))})
    with pytest.raises(ValueError, match="finite"):
        apply_sparse(theta, {}, float("inf"))
