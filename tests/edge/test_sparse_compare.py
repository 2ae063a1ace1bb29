"""The near-tie tolerant comparison of sparse updates accepts rounding at the cut and nothing worse."""

from __future__ import annotations

import numpy as np
import pytest

from edge.wire import top_p_sparsify
from tests.edge.sparse_compare import assert_same_sparse_update

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _delta() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"b0": rng.normal(0, 0.1, 40).astype(np.float32), "w0": rng.normal(0, 1, (40, 20)).astype(np.float32)}


def test_the_same_selection_and_a_near_tie_resolved_the_other_way_pass() -> None:
    delta = _delta()
    want = top_p_sparsify(delta, 0.1)
    assert_same_sparse_update(want, want, **TOL)
    flat = np.concatenate([v.ravel() for v in delta.values()])
    k = sum(t.nnz for t in want.values())
    order = np.argsort(-np.abs(flat), kind="stable")
    first_out, last_in = order[k], order[k - 1]  # nudge the first entry left out to a hair above the cut
    nudged = {n: v.copy() for n, v in delta.items()}
    sizes = np.cumsum([0] + [v.size for v in delta.values()])
    for (name, value), start in zip(nudged.items(), sizes):
        if start <= first_out < start + value.size:
            value.flat[first_out - start] = np.sign(flat[first_out]) * abs(flat[last_in]) * (1 + 1e-6)
    mine = top_p_sparsify(nudged, 0.1)
    assert any(not np.array_equal(mine[n].indices, want[n].indices) for n in want)  # the selections differ
    assert_same_sparse_update(mine, want, **TOL)


def test_a_per_tensor_cut_or_another_k_or_a_wrong_value_fails() -> None:
    delta = _delta()
    want = top_p_sparsify(delta, 0.1)
    per_tensor = {n: top_p_sparsify({n: v}, 0.1)[n] for n, v in delta.items()}
    with pytest.raises(AssertionError):
        assert_same_sparse_update(per_tensor, want, **TOL)
    with pytest.raises(AssertionError, match="entries kept"):
        assert_same_sparse_update(top_p_sparsify(delta, 0.12), want, **TOL)
    scaled = top_p_sparsify({n: v * 1.01 for n, v in delta.items()}, 0.1)
    with pytest.raises(AssertionError, match="both kept"):
        assert_same_sparse_update(scaled, want, **TOL)
