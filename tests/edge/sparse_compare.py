"""Comparing a C device's top-P% sparse update with its Python twin's, on every machine.

The C firmware and numpy compute the same dense delta to within float32 rounding
(different summation orders; numpy's BLAS kernel differs between AMD and Intel).
The top-P% cut then keeps the ``k`` largest magnitudes over all tensors together
(``edge.wire.sparse``), and an entry within rounding of the cut may fall on either
side. So indices need not be identical: what must hold is that

- both keep the same number of entries (``k`` is fixed by P and the sizes);
- every entry both kept has the same value (``rtol``/``atol``);
- an entry only one side kept sits at the cut: its magnitude is within ``cut_rtol``
  of the smallest magnitude the other side kept, or the other side would have kept
  it too, and only a few entries swap (``max_swapped`` of ``k``).

A wrong selection (a wrong magnitude, per-tensor instead of global cut, an
off-by-one in ``k``) breaks one of these; a near-tie resolved differently does not.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edge.wire import SparseTensor


def assert_same_update_tensors(mine: Mapping[str, object], want: Mapping[str, object], *, rtol: float, atol: float,
                               label: str = "") -> float:
    """An UPDATE's tensors against its twin's: the sparse ones as one selection (one global cut, near-ties
    allowed), the dense ones allclose. Returns the largest |mine - want| over the dense ones."""
    sparse = [n for n, v in want.items() if isinstance(v, SparseTensor)]
    assert all(isinstance(mine[n], SparseTensor) for n in sparse), label
    if sparse:
        assert_same_sparse_update({n: mine[n] for n in sparse}, {n: want[n] for n in sparse},  # type: ignore[misc]
                                  rtol=rtol, atol=atol, label=label)
    worst = 0.0
    for name, value in want.items():
        if name not in sparse:
            np.testing.assert_allclose(mine[name], value, rtol=rtol, atol=atol, err_msg=f"{label} {name}")
            worst = max(worst, float(np.max(np.abs(np.asarray(mine[name]) - np.asarray(value)), initial=0.0)))
    return worst


def assert_same_sparse_update(mine: Mapping[str, SparseTensor], want: Mapping[str, SparseTensor], *, rtol: float,
                              atol: float, cut_rtol: float = 1e-3, max_swapped: float = 0.02, label: str = "") -> None:
    """Raise AssertionError (naming the tensor) unless ``mine`` and ``want`` are the same selection up to near-ties."""
    assert list(mine) == list(want), (label, list(mine), list(want))
    kept_mine = sum(t.nnz for t in mine.values())
    kept_want = sum(t.nnz for t in want.values())
    assert kept_mine == kept_want, f"{label}: {kept_mine} entries kept, want {kept_want}"
    cut_mine = min((float(np.min(np.abs(t.values))) for t in mine.values() if t.nnz), default=0.0)
    cut_want = min((float(np.min(np.abs(t.values))) for t in want.values() if t.nnz), default=0.0)
    swapped = 0
    for name, ref in want.items():
        got = mine[name]
        assert got.shape == ref.shape, (label, name, got.shape, ref.shape)
        common, got_at, ref_at = np.intersect1d(got.indices, ref.indices, return_indices=True)
        np.testing.assert_allclose(got.values[got_at], ref.values[ref_at], rtol=rtol, atol=atol,
                                   err_msg=f"{label} {name}: entries both kept")
        only_got = np.setdiff1d(np.arange(got.nnz), got_at)
        only_ref = np.setdiff1d(np.arange(ref.nnz), ref_at)
        for values, other_cut, side in ((got.values[only_got], cut_want, "only mine"),
                                        (ref.values[only_ref], cut_mine, "only the twin's")):
            beyond = np.abs(values) > other_cut * (1 + cut_rtol) + atol
            assert not beyond.any(), (f"{label} {name}: {int(beyond.sum())} entries kept by {side} are well above the "
                                      f"other side's cut {other_cut:.6g}: {np.abs(values[beyond])[:5]}")
        swapped += only_got.size
        assert common.size + only_got.size == got.nnz
    assert swapped <= max(1, max_swapped * kept_want), f"{label}: {swapped} of {kept_want} entries swapped at the cut"
