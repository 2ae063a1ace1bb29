"""Top-P% sparsification and sparse application: exact math."""

from __future__ import annotations

import numpy as np
import pytest

from edge.wire import SparseTensor, densify, top_p_count, top_p_sparsify


def test_keeps_exactly_the_largest_magnitudes_globally() -> None:
    delta = {
        "a": np.array([0.1, -5.0, 0.2, 3.0], np.float32),
        "b": np.array([[-4.0, 0.05], [0.3, -0.01]], np.float32),
    }
    sparse = top_p_sparsify(delta, 3 / 8)  # 8 entries -> keep 3: -5, -4, 3
    assert list(sparse) == ["a", "b"]
    assert np.array_equal(sparse["a"].indices, [1, 3]) and np.array_equal(sparse["a"].values, [-5.0, 3.0])
    assert np.array_equal(sparse["b"].indices, [0]) and np.array_equal(sparse["b"].values, [-4.0])
    assert sparse["b"].shape == (2, 2) and sparse["a"].values.dtype == np.float32
    dense = densify(sparse)
    assert np.array_equal(dense["a"], [0, -5, 0, 3]) and np.array_equal(dense["b"], [[-4, 0], [0, 0]])


def test_a_tensor_can_receive_no_entries_but_is_still_listed() -> None:
    delta = {"big": np.array([10.0, -20.0], np.float32), "tiny": np.full((3, 2), 1e-6, np.float32)}
    sparse = top_p_sparsify(delta, 0.25)  # 8 entries -> 2 kept, both in "big"
    assert sparse["tiny"].nnz == 0 and sparse["tiny"].shape == (3, 2)
    assert np.array_equal(sparse["big"].indices, [0, 1])


@pytest.mark.parametrize("seed", range(5))
def test_matches_a_brute_force_threshold(seed) -> None:
    rng = np.random.default_rng(seed)
    delta = {f"t{i}": rng.normal(size=tuple(rng.integers(1, 6, size=rng.integers(0, 4)))).astype(np.float32) for i in range(5)}
    total = sum(v.size for v in delta.values())
    for p in (0.01, 0.1, 0.5, 1.0):
        k = top_p_count(total, p)
        sparse = top_p_sparsify(delta, p)
        assert sum(st.nnz for st in sparse.values()) == k
        all_mags = np.sort(np.concatenate([np.abs(v).ravel() for v in delta.values()]))[::-1]
        threshold = all_mags[k - 1]
        for name, st in sparse.items():
            kept = np.zeros(delta[name].size, bool)
            kept[st.indices] = True
            flat = np.abs(delta[name]).ravel()
            assert np.all(flat[kept] >= threshold) and np.all(flat[~kept] <= threshold)
            assert np.array_equal(st.values, delta[name].ravel()[st.indices])


def test_ties_are_broken_by_name_then_index() -> None:
    delta = {"b": np.array([1.0, -1.0, 1.0], np.float32), "a": np.array([0.5, 1.0, -1.0], np.float32)}
    sparse = top_p_sparsify(delta, 3 / 6)  # five entries of magnitude 1, three kept: a[1], a[2], b[0]
    assert np.array_equal(sparse["a"].indices, [1, 2])
    assert np.array_equal(sparse["b"].indices, [0])
    # independent of the insertion order of the mapping
    again = top_p_sparsify({"a": delta["a"], "b": delta["b"]}, 0.5)
    assert all(again[k] == sparse[k] for k in sparse)


def test_all_zero_update_and_p_equal_one() -> None:
    zeros = {"w": np.zeros((2, 2), np.float32)}
    assert np.array_equal(top_p_sparsify(zeros, 0.5)["w"].indices, [0, 1])
    full = {"w": np.arange(6, dtype=np.float32).reshape(2, 3) - 2}
    assert np.array_equal(densify(top_p_sparsify(full, 1.0))["w"], full["w"])


def test_count_rounding() -> None:
    assert top_p_count(10, 0.3) == 3  # not 4 from 0.30000000000000004 * 10
    assert top_p_count(1761, 0.1) == 177
    assert top_p_count(5, 0.01) == 1  # at least one entry
    assert top_p_count(0, 0.5) == 0
    assert top_p_count(7, 1.0) == 7


@pytest.mark.parametrize("p", [0, -0.1, 1.5, float("nan"), True])
def test_refuses_bad_fraction(p) -> None:
    with pytest.raises(ValueError, match="kept fraction"):
        top_p_sparsify({"w": np.ones(3, np.float32)}, p)


def test_percent_given_instead_of_fraction_hints() -> None:
    with pytest.raises(ValueError, match="did you mean 0.1"):
        top_p_sparsify({"w": np.ones(3, np.float32)}, 10)


def test_refuses_non_finite_delta() -> None:
    with pytest.raises(ValueError, match="NaN or Inf"):
        top_p_sparsify({"w": np.array([1.0, np.nan], np.float32)}, 0.5)


def test_integer_deltas_keep_their_dtype() -> None:
    sparse = top_p_sparsify({"q": np.array([3, -7, 1, 0], np.int8)}, 0.5)
    assert sparse["q"].values.dtype == np.int8 and np.array_equal(sparse["q"].values, [3, -7])


@pytest.mark.parametrize(
    "shape, indices, values, match",
    [
        ((3,), [0, 3], [1.0, 2.0], "out of range"),
        ((3,), [2, 1], [1.0, 2.0], "strictly increasing"),
        ((3,), [1, 1], [1.0, 2.0], "strictly increasing"),
        ((3,), [1], [1.0, 2.0], "equal length"),
        ((3,), [-1], [1.0], "out of range"),
        ((-1,), [], [], "negative"),
    ],
)
def test_sparse_tensor_refuses_invalid(shape, indices, values, match) -> None:
    with pytest.raises(ValueError, match=match):
        SparseTensor(shape, np.array(indices, np.int64), np.array(values, np.float32))
