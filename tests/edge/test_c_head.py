"""The TinyOL head step in firmware C (edge/c/tinyol_head.c) is OnlineHead.learn_one: same weights over a
stream, same refusals, weights untouched when it refuses. Compiled for real (skipped without a compiler)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from edge import c_head
from edge.c_head import CCompilerNotFoundError, CHead, CHeadError, build_library, find_c_compiler
from edge.online_head import OnlineHead
from edge.validation import InvalidInputError

needs_cc = pytest.mark.skipif(find_c_compiler() is None, reason="no C compiler")

# characters (64 features, 5-way), keywords (64, 10), presence (8, 2), and odd sizes that leave loop tails
CLASSIFIER_SHAPES = [(64, 5), (64, 10), (8, 2), (1, 1), (7, 3), (33, 4)]


def stream(n_features: int, n_outputs: int, n: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, n_features)) * scale).astype(np.float32), rng.integers(0, n_outputs, n)


def assert_same_weights(c: CHead, reference: OnlineHead, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    got, want = c.get_weights(), reference.get_weights()
    for name in ("head_w", "head_b"):
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)


@needs_cc
@pytest.mark.parametrize("shape", CLASSIFIER_SHAPES)
def test_classification_stream_matches_online_head(shape: tuple[int, int]) -> None:
    n_features, n_outputs = shape
    reference = OnlineHead(n_features, n_outputs, "classification", seed=n_features + n_outputs)
    c = CHead.from_head(reference)
    assert_same_weights(c, reference, rtol=0, atol=0)
    xs, labels = stream(n_features, n_outputs, 300, seed=n_features)
    for x, label in zip(xs, labels):
        want = reference.learn_one(x, int(label), 0.05)
        got = c.learn_one(x, int(label), 0.05)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert_same_weights(c, reference)
    moved = np.abs(c.get_weights()["head_w"] - OnlineHead(n_features, n_outputs, "classification",
                                                          seed=n_features + n_outputs).get_weights()["head_w"])  # fmt: skip
    if n_outputs > 1:  # one class: softmax is 1 whatever the weights, so nothing moves (on both sides)
        assert moved.max() > 1e-3  # the stream really trained the head


@needs_cc
def test_large_logits_use_the_stable_softmax() -> None:
    """Logits near 200 overflow an unshifted float32 exp; both sides must still take the same finite step."""
    reference = OnlineHead(4, 3, "classification", seed=1)
    weights = reference.get_weights()
    weights["head_b"] = np.array([200.0, 150.0, -30.0], np.float32)
    reference.set_weights(weights)
    c = CHead.from_head(reference)
    xs, labels = stream(4, 3, 20, seed=2)
    for x, label in zip(xs, labels):
        with np.errstate(over="ignore"):
            want = reference.learn_one(x, int(label), 0.1)
        assert c.learn_one(x, int(label), 0.1) == pytest.approx(want, rel=1e-4)
    assert_same_weights(c, reference)
    assert np.all(np.isfinite(c.get_weights()["head_w"]))


@needs_cc
@pytest.mark.parametrize("shape", [(8, 1), (5, 3), (64, 2)])
def test_regression_stream_matches_online_head(shape: tuple[int, int]) -> None:
    n_features, n_outputs = shape
    reference = OnlineHead(n_features, n_outputs, "regression", seed=3)
    c = CHead.from_head(reference)
    rng = np.random.default_rng(4)
    for _ in range(200):
        x = rng.normal(size=n_features).astype(np.float32)
        y = rng.normal(size=n_outputs).astype(np.float32)
        assert c.learn_one(x, y, 0.01) == pytest.approx(reference.learn_one(x, y, 0.01), rel=1e-4, abs=1e-6)
    assert_same_weights(c, reference)


@needs_cc
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_step_sizes_in_c_match_online_head(task: str) -> None:
    """Per-weight step sizes (meta-learned, edge/step_sizes.py) scale the C step exactly as OnlineHead's."""
    n_features, n_outputs = 9, 3
    reference = OnlineHead(n_features, n_outputs, task, seed=5)
    c = CHead.from_head(reference)
    rng = np.random.default_rng(6)
    scales = {"head_w": np.exp(rng.normal(0, 0.8, (n_features, n_outputs))).astype(np.float32),
              "head_b": np.exp(rng.normal(0, 0.8, n_outputs)).astype(np.float32)}  # fmt: skip
    reference.set_step_sizes(scales)
    c.set_step_sizes(scales)
    for _ in range(100):
        x = rng.normal(size=n_features).astype(np.float32)
        y = int(rng.integers(0, n_outputs)) if task == "classification" else rng.normal(size=n_outputs).astype(np.float32)
        assert c.learn_one(x, y, 0.02) == pytest.approx(reference.learn_one(x, y, 0.02), rel=1e-4, abs=1e-6)
    assert_same_weights(c, reference)
    c.set_step_sizes(None)  # back to the shared rate: a NULL pointer
    reference.set_step_sizes(None)
    x = rng.normal(size=n_features).astype(np.float32)
    y = 1 if task == "classification" else rng.normal(size=n_outputs).astype(np.float32)
    c.learn_one(x, y, 0.02)
    reference.learn_one(x, y, 0.02)
    assert_same_weights(c, reference)
    with pytest.raises(InvalidInputError, match="step sizes 'head_w' must be finite and positive"):
        c.set_step_sizes({"head_w": -np.ones((n_features, n_outputs), np.float32), "head_b": np.ones(n_outputs, np.float32)})


def _refused_by_both(c: CHead, reference: OnlineHead, x: object, y: object, lr: float, status: int) -> None:
    before_c, before_ref = c.get_weights(), reference.get_weights()
    with pytest.raises(InvalidInputError):
        with np.errstate(all="ignore"):
            reference.learn_one(x, y, lr)
    with pytest.raises(CHeadError) as refused:
        c.learn_one(x, y, lr)
    assert refused.value.status == status, str(refused.value)
    for name in ("head_w", "head_b"):
        np.testing.assert_array_equal(c.get_weights()[name], before_c[name])
        np.testing.assert_array_equal(reference.get_weights()[name], before_ref[name])


@needs_cc
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_sample_is_refused_and_weights_kept(bad: float) -> None:
    reference = OnlineHead(64, 5, "classification", seed=5)
    c = CHead.from_head(reference)
    x = stream(64, 5, 1, seed=6)[0][0]
    x[17] = bad
    _refused_by_both(c, reference, x, 2, 0.05, c_head.NONFINITE_SAMPLE)
    clean = stream(64, 5, 1, seed=7)[0][0]  # the head still learns afterwards, identically
    assert c.learn_one(clean, 1, 0.05) == pytest.approx(reference.learn_one(clean, 1, 0.05), rel=1e-4)
    assert_same_weights(c, reference)


@needs_cc
def test_diverging_steps_are_refused_and_weights_kept() -> None:
    reference = OnlineHead(8, 2, "classification", seed=8)
    c = CHead.from_head(reference)
    x = np.full(8, 3.0, np.float32)
    _refused_by_both(c, reference, x, 1, 1e30, c_head.DIVERGED)  # new weights' squared norm overflows float32
    overflow = np.sign(reference.get_weights()["head_w"][:, 0]).astype(np.float32) * np.float32(3e38)
    _refused_by_both(c, reference, overflow, 1, 0.01, c_head.DIVERGED)  # a finite sample whose logit overflows
    regression = OnlineHead(3, 2, "regression", seed=9)
    c_regression = CHead.from_head(regression)
    _refused_by_both(c_regression, regression, np.ones(3, np.float32), np.array([np.nan, 0.0], np.float32), 0.01,
                     c_head.NONFINITE_LABEL)  # fmt: skip
    _refused_by_both(c_regression, regression, np.ones(3, np.float32), np.array([1e30, 0.0], np.float32), 0.01,
                     c_head.DIVERGED)  # fmt: skip


@needs_cc
def test_bad_arguments_are_refused_with_weights_kept() -> None:
    c = CHead(8, 2)
    c.set_weights({"head_w": np.ones((8, 2), np.float32), "head_b": np.zeros(2, np.float32)})
    before = c.get_weights()
    x = np.ones(8, np.float32)
    for label, lr in ((2, 0.1), (-1, 0.1), (0, float("nan")), (0, float("inf"))):
        with pytest.raises(CHeadError) as refused:
            c.learn_one(x, label, lr)
        assert refused.value.status == c_head.BAD_ARGUMENT
    for label in (1.5, "a", [0, 1], True):
        with pytest.raises(InvalidInputError, match="class label"):
            c.learn_one(x, label, 0.1)
    with pytest.raises(InvalidInputError, match="shape"):
        c.learn_one(np.ones(7, np.float32), 0, 0.1)
    with pytest.raises(InvalidInputError, match="non-finite"):
        c.set_weights({"head_w": np.full((8, 2), np.nan, np.float32), "head_b": np.zeros(2, np.float32)})
    for name in ("head_w", "head_b"):
        np.testing.assert_array_equal(c.get_weights()[name], before[name])
    assert c.learn_one(x, 1.0, 0.1) > 0  # an integer-valued float label is a label, as for OnlineHead


@needs_cc
def test_timed_loop_runs_the_real_step() -> None:
    """The benchmark's C-side loop takes exactly the steps learn_one would (cycling over the buffer)."""
    reference = OnlineHead(64, 10, "classification", seed=10)
    c = CHead.from_head(reference)
    xs, labels = stream(64, 10, 16, seed=11)
    elapsed = c.time_steps(xs, labels, 40, 0.05)
    assert elapsed > 0
    for step in range(40):
        reference.learn_one(xs[step % 16], int(labels[step % 16]), 0.05)
    assert_same_weights(c, reference)
    with pytest.raises(InvalidInputError):
        c.time_steps(xs[:, :63], labels, 1, 0.05)


@needs_cc
def test_c_source_is_warning_free_c99_and_allocates_nothing(tmp_path) -> None:
    source = c_head.SOURCE.read_text() + c_head.HEADER.read_text()
    assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", source)
    for defines in ([], ["-DTINYOL_NO_TIMING"]):  # the firmware build leaves the POSIX timing helper out
        subprocess.run([find_c_compiler(), "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", *defines,
                        "-c", str(c_head.SOURCE), "-o", str(tmp_path / "head.o")], check=True)  # fmt: skip


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv("CC", raising=False)
    assert find_c_compiler() is None
    with pytest.raises(CCompilerNotFoundError, match="no C compiler found"):
        build_library(tmp_path / "cache")


def test_edge_imports_without_a_compiler_on_path(tmp_path) -> None:
    """Compilation is lazy: importing the binding needs no compiler (a device has none)."""
    script = "import edge.c_head, edge.online_head; print(edge.c_head.find_c_compiler())"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={"PATH": str(tmp_path)},
                            cwd=c_head.SOURCE_DIR.parents[1])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"
