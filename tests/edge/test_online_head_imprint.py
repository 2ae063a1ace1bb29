"""Imprinting the TinyOL head (OnlineHead.imprint_one): class means written into the output columns, the EMA
floor, classes added at run time, refusals, mixing with SGD; and the firmware C (tinyol_imprint_one through
CHead) equal to it."""

from __future__ import annotations

import numpy as np
import pytest

from edge.c_head import BAD_ARGUMENT, DIVERGED, NONFINITE_SAMPLE, CHead, CHeadError, find_c_compiler
from edge.imprinting import Imprinter
from edge.mlp_classifier import MLPClassifier
from edge.online_head import COUNT_BYTES, OnlineHead
from edge.validation import InvalidInputError

needs_cc = pytest.mark.skipif(find_c_compiler() is None, reason="no C compiler")


def clusters(n_features: int, n_classes: int, n: int, seed: int, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, size=(n_classes, n_features))
    labels = rng.integers(0, n_classes, n)
    return (centres[labels] + rng.normal(0.0, spread, size=(n, n_features))).astype(np.float32), labels


def snapshot(head: OnlineHead | CHead) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return head.get_weights(), head.imprint_counts


def assert_unchanged(head: OnlineHead | CHead, before: tuple[dict[str, np.ndarray], np.ndarray]) -> None:
    weights, counts = snapshot(head)
    for name in ("head_w", "head_b"):
        np.testing.assert_array_equal(weights[name], before[0][name], err_msg=name)
    np.testing.assert_array_equal(counts, before[1])


def test_imprinted_head_is_the_nearest_class_mean_classifier():
    xs, labels = clusters(6, 4, 80, seed=0)
    head = OnlineHead(6, 4, "classification", seed=3)
    for x, y in zip(xs, labels):
        head.imprint_one(x, int(y))
    means = np.stack([xs[labels == c].astype(np.float64).mean(axis=0) for c in range(4)])
    weights = head.get_weights()
    np.testing.assert_allclose(weights["head_w"], means.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights["head_b"], -0.5 * (means**2).sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(head.imprint_counts, np.bincount(labels, minlength=4))
    queries, _ = clusters(6, 4, 200, seed=0, spread=3.0)  # wide spread: many queries near a class boundary
    distances = ((queries[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    # a query whose two nearest means are within float32 rounding of a tie may go either way on another CPU
    decided = clear_margin(distances)
    assert decided.sum() > 150
    nearest = np.argmin(distances, axis=1)
    np.testing.assert_array_equal(head.predict(queries).argmax(axis=1)[decided], nearest[decided])


def clear_margin(distances: np.ndarray, relative: float = 1e-4) -> np.ndarray:
    """Rows whose nearest and second-nearest squared distances differ by more than ``relative`` of the nearest:
    float32 logits (summed in whatever order BLAS picks) then agree with a float64 argmin on every CPU."""
    two = np.sort(distances, axis=1)[:, :2]
    return two[:, 1] - two[:, 0] > relative * np.maximum(two[:, 0], 1.0)


def test_imprinting_matches_edge_imprinting_on_the_same_layer():
    """A one-layer MLPClassifier's output layer sees the input itself as its features: the same rule, two codes."""
    xs, labels = clusters(5, 3, 60, seed=1)
    reference = MLPClassifier((5, 3), seed=2)
    head = OnlineHead(5, 3, "classification")
    head.set_weights({"head_w": reference.get_weights()["w0"], "head_b": reference.get_weights()["b0"]})
    imprinter = Imprinter(reference, min_rate=0.1)
    for x, y in zip(xs, labels):
        assert head.imprint_one(x, int(y), min_rate=0.1) == pytest.approx(imprinter.learn_one(x, int(y)), rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(head.get_weights()["head_w"], reference.get_weights()["w0"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.get_weights()["head_b"], reference.get_weights()["b0"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(head.imprint_counts, imprinter.counts)


def test_the_loss_returned_is_the_loss_before_the_update():
    xs, labels = clusters(4, 3, 20, seed=2)
    head = OnlineHead(4, 3, "classification", seed=1)
    for x, y in zip(xs, labels):
        before = head.loss(x[None, :], np.array([y]))
        assert head.imprint_one(x, int(y)) == pytest.approx(before, rel=1e-5, abs=1e-6)  # float32 softmax near p = 1


def test_the_floor_turns_the_mean_into_an_exponential_moving_average():
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(40, 3)).astype(np.float32)
    head = OnlineHead(3, 2, "classification")
    mean = np.zeros(3)
    for n, x in enumerate(xs, start=1):
        head.imprint_one(x, 1, min_rate=0.25)
        mean += (x - mean) * max(1.0 / n, 0.25)  # exact mean for n ≤ 4, then EMA with rate 0.25
    np.testing.assert_allclose(head.get_weights()["head_w"][:, 1], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.get_weights()["head_b"][1], -0.5 * mean @ mean, rtol=1e-5)
    assert head.imprint_counts.tolist() == [0, 40]


def test_the_floor_follows_a_drifting_class_the_exact_mean_does_not():
    rng = np.random.default_rng(4)
    before, after = np.zeros(4), np.full(4, 3.0)
    stream = [(before if i < 200 else after) + rng.normal(0, 0.2, 4) for i in range(260)]
    exact, ema = OnlineHead(4, 1, "classification"), OnlineHead(4, 1, "classification")
    for x in stream:
        exact.imprint_one(x, 0)
        ema.imprint_one(x, 0, min_rate=0.1)
    assert np.linalg.norm(ema.get_weights()["head_w"][:, 0] - after) < 0.2
    assert np.linalg.norm(exact.get_weights()["head_w"][:, 0] - after) > 3.0  # 60 of 260 samples: still near (60/260)·3 per feature


def test_a_class_added_at_run_time_starts_at_count_zero_and_is_imprinted_by_its_first_sample():
    xs, labels = clusters(5, 2, 30, seed=5)
    head = OnlineHead(5, 2, "classification")
    for x, y in zip(xs, labels):
        head.imprint_one(x, int(y))
    old = head.get_weights()
    assert head.add_class() == 2
    assert head.imprint_counts.tolist() == [*np.bincount(labels, minlength=2).tolist(), 0]
    new_sample = np.full(5, 4.0, np.float32)
    head.imprint_one(new_sample, 2)
    weights = head.get_weights()
    np.testing.assert_array_equal(weights["head_w"][:, :2], old["head_w"])  # the known classes are untouched
    np.testing.assert_array_equal(weights["head_b"][:2], old["head_b"])
    np.testing.assert_array_equal(weights["head_w"][:, 2], new_sample)
    assert weights["head_b"][2] == pytest.approx(-0.5 * 16.0 * 5)
    assert head.imprint_counts.tolist()[2] == 1
    assert head.predict(new_sample).argmax() == 2


def test_counters_are_counted_in_ram_once_the_head_imprints_and_grow_with_classes():
    head = OnlineHead(8, 3, "classification")
    sgd_only = head.memory_footprint()
    head.imprint_one(np.ones(8, np.float32), 0)
    assert head.memory_footprint().training == sgd_only.training + 3 * COUNT_BYTES
    assert head.memory_footprint().weights == sgd_only.weights
    head.add_class()
    grown = OnlineHead(8, 4, "classification").memory_footprint()
    assert head.memory_footprint().training == grown.training + 4 * COUNT_BYTES


def test_sgd_may_fine_tune_an_imprinted_column_and_the_next_imprint_averages_into_it():
    xs, labels = clusters(4, 3, 30, seed=6)
    head = OnlineHead(4, 3, "classification")
    for x, y in zip(xs, labels):
        head.imprint_one(x, int(y))
    counts = head.imprint_counts
    for x, y in zip(xs[:10], labels[:10]):
        head.learn_one(x, int(y), 0.05)
    np.testing.assert_array_equal(head.imprint_counts, counts)  # SGD steps are not imprinted samples
    tuned = head.get_weights()["head_w"][:, 0].astype(np.float64)
    x = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    head.imprint_one(x, 0)
    expected = tuned + (x - tuned) / (counts[0] + 1)
    np.testing.assert_allclose(head.get_weights()["head_w"][:, 0], expected, rtol=1e-5, atol=1e-6)
    assert head.get_weights()["head_b"][0] == pytest.approx(-0.5 * expected @ expected, rel=1e-5)


def test_set_weights_resets_the_counts_and_set_imprint_counts_resumes():
    xs, labels = clusters(4, 2, 40, seed=7)
    whole = OnlineHead(4, 2, "classification")
    for x, y in zip(xs, labels):
        whole.imprint_one(x, int(y))
    first = OnlineHead(4, 2, "classification")
    for x, y in zip(xs[:20], labels[:20]):
        first.imprint_one(x, int(y))
    resumed = OnlineHead(4, 2, "classification")
    resumed.imprint_one(xs[0], 0)  # counters allocated, so set_weights has something to reset
    resumed.set_weights(first.get_weights())
    assert resumed.imprint_counts.tolist() == [0, 0]
    resumed.set_imprint_counts(first.imprint_counts)
    for x, y in zip(xs[20:], labels[20:]):
        resumed.imprint_one(x, int(y))
    np.testing.assert_allclose(resumed.get_weights()["head_w"], whole.get_weights()["head_w"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(resumed.imprint_counts, whole.imprint_counts)
    for bad in ([1, 2, 3], [-1, 2], [1.5, 2.0], [2**32, 0]):
        with pytest.raises(InvalidInputError, match="imprint counts"):
            resumed.set_imprint_counts(np.array(bad))


@pytest.mark.parametrize(
    "x,y,min_rate,message",
    [
        (np.array([1.0, np.nan, 0.0], np.float32), 0, 0.0, "non-finite"),
        (np.array([1.0, np.inf, 0.0], np.float32), 0, 0.0, "non-finite"),
        (np.zeros(4, np.float32), 0, 0.0, "shape"),
        (np.zeros(3, np.float32), 3, 0.0, "add_class"),
        (np.zeros(3, np.float32), -1, 0.0, "outside"),
        (np.zeros(3, np.float32), True, 0.0, "one integer"),
        (np.zeros(3, np.float32), 1.5, 0.0, "one integer"),
        (np.zeros(3, np.float32), 0, -0.1, "min_rate"),
        (np.zeros(3, np.float32), 0, 1.5, "min_rate"),
        (np.zeros(3, np.float32), 0, float("nan"), "min_rate"),
        (np.zeros(3, np.float32), 0, "fast", "min_rate"),
        (np.full(3, 3e19, np.float32), 2, 0.0, "overflow"),  # finite, but ‖x‖² is not: the bias would be -inf
    ],
)
def test_refused_imprints_leave_weights_and_counts_exactly_as_they_were(x, y, min_rate, message):
    head = OnlineHead(3, 3, "classification", seed=1)
    head.imprint_one(np.array([1.0, 2.0, 3.0], np.float32), 0)
    weights = head.get_weights()
    weights["head_w"][:, 2] = 0.0  # class 2 never imprinted: its logit ignores x, so only the mean overflows
    head.set_weights(weights)
    before = snapshot(head)
    with pytest.raises(InvalidInputError, match=message):
        head.imprint_one(x, y, min_rate)
    assert_unchanged(head, before)


def test_a_regression_head_refuses_to_imprint():
    head = OnlineHead(3, 2, "regression")
    with pytest.raises(ValueError, match="classification head"):
        head.imprint_one(np.zeros(3, np.float32), 0)


# --- the firmware C: tinyol_imprint_one through CHead ---


def assert_same(c: CHead, reference: OnlineHead, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    got, want = c.get_weights(), reference.get_weights()
    for name in ("head_w", "head_b"):
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)
    np.testing.assert_array_equal(c.imprint_counts, reference.imprint_counts)


@needs_cc
@pytest.mark.parametrize("shape", [(64, 5), (8, 2), (1, 1), (7, 3), (33, 4)])
@pytest.mark.parametrize("min_rate", [0.0, 0.2])
def test_c_imprinting_matches_online_head_over_a_stream_with_a_class_added(shape, min_rate):
    n_features, n_outputs = shape
    xs, labels = clusters(n_features, n_outputs + 1, 240, seed=n_features)
    reference = OnlineHead(n_features, n_outputs, "classification", seed=n_outputs)
    c = CHead.from_head(reference)
    for i, (x, y) in enumerate(zip(xs, labels)):
        if i == 120:  # a new class at run time, on both sides
            assert c.add_class() == reference.add_class() == n_outputs
            assert_same(c, reference)
        label = int(y) if i >= 120 else int(y) % n_outputs
        if i % 7 == 3:  # SGD steps mixed in (imprinted logits are large: learn_one's unshifted exp may overflow, then redo)
            with np.errstate(over="ignore"):
                want = reference.learn_one(x, label, 0.05)
            assert c.learn_one(x, label, 0.05) == pytest.approx(want, rel=1e-4, abs=1e-5)
        else:
            want = reference.imprint_one(x, label, min_rate)
            assert c.imprint_one(x, label, min_rate) == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert_same(c, reference)
    assert c.imprint_counts[n_outputs] > 0


@needs_cc
def test_c_head_carries_step_sizes_and_counts_through_add_class():
    reference = OnlineHead(6, 2, "classification", seed=2)
    scales = {"head_w": np.full((6, 2), 0.5, np.float32), "head_b": np.full(2, 2.0, np.float32)}
    reference.set_step_sizes(scales)
    c = CHead.from_head(reference)
    c.set_step_sizes(scales)
    xs, labels = clusters(6, 3, 60, seed=8)
    for i, (x, y) in enumerate(zip(xs, labels)):
        if i == 20:
            reference.add_class()
            c.add_class()
        label = int(y) if i >= 20 else int(y) % 2
        if i % 2:
            reference.learn_one(x, label, 0.1)
            c.learn_one(x, label, 0.1)
        else:
            reference.imprint_one(x, label)
            c.imprint_one(x, label)
    assert_same(c, reference, rtol=1e-4)


@needs_cc
def test_c_head_from_an_imprinted_head_continues_its_means_and_set_weights_resets_them():
    xs, labels = clusters(5, 3, 40, seed=9)
    reference = OnlineHead(5, 3, "classification")
    for x, y in zip(xs[:20], labels[:20]):
        reference.imprint_one(x, int(y))
    c = CHead.from_head(reference)
    assert_same(c, reference, rtol=0, atol=0)
    for x, y in zip(xs[20:], labels[20:]):
        reference.imprint_one(x, int(y))
        c.imprint_one(x, int(y))
    assert_same(c, reference)
    c.set_weights(c.get_weights())
    assert c.imprint_counts.tolist() == [0, 0, 0]


@needs_cc
@pytest.mark.parametrize(
    "x,y,min_rate,status",
    [
        (np.array([1.0, np.nan, 0.0], np.float32), 0, 0.0, NONFINITE_SAMPLE),
        (np.array([np.inf, 0.0, 0.0], np.float32), 2, 0.0, NONFINITE_SAMPLE),
        (np.zeros(3, np.float32), 3, 0.0, BAD_ARGUMENT),
        (np.zeros(3, np.float32), -1, 0.0, BAD_ARGUMENT),
        (np.zeros(3, np.float32), 0, -0.1, BAD_ARGUMENT),
        (np.zeros(3, np.float32), 0, 1.5, BAD_ARGUMENT),
        (np.zeros(3, np.float32), 0, float("nan"), BAD_ARGUMENT),
        (np.full(3, 3e19, np.float32), 2, 0.0, DIVERGED),
    ],
)
def test_c_refusals_leave_weights_and_counts_exactly_as_they_were(x, y, min_rate, status):
    reference = OnlineHead(3, 3, "classification", seed=1)
    reference.imprint_one(np.array([1.0, 2.0, 3.0], np.float32), 0)
    weights = reference.get_weights()
    weights["head_w"][:, 2] = 0.0
    c = CHead(3, 3, "classification", weights)
    c.imprint_one(np.array([1.0, 2.0, 3.0], np.float32), 0)
    before = snapshot(c)
    with pytest.raises(CHeadError) as refused:
        c.imprint_one(x, y, min_rate)
    assert refused.value.status == status
    assert_unchanged(c, before)


@needs_cc
def test_c_regression_head_refuses_to_imprint_and_the_timing_loop_imprints():
    with pytest.raises(ValueError, match="classification head"):
        CHead(3, 2, "regression").imprint_one(np.zeros(3, np.float32), 0)
    xs, labels = clusters(8, 3, 12, seed=10)
    c, reference = CHead(8, 3), OnlineHead(8, 3, "classification")
    reference.set_weights(c.get_weights())
    assert c.time_imprints(xs, labels, steps=36, min_rate=0.1) > 0
    for _ in range(3):
        for x, y in zip(xs, labels):
            reference.imprint_one(x, int(y), 0.1)
    assert_same(c, reference)


def test_sgd_on_an_imprinted_head_with_large_logits_steps_quietly_and_matches_the_gradient():
    import warnings

    xs, labels = clusters(16, 3, 30, seed=8, spread=3.0)
    xs = xs * 20.0  # ½‖x‖² in the thousands: exp of the raw logits overflows float32
    head = OnlineHead(16, 3, "classification")
    for x, y in zip(xs, labels):
        head.imprint_one(x, int(y))
    x, y = xs[0], int(labels[0])
    loss, gradients = head.gradients(x, y)
    before = head.get_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the step takes the shifted path directly: no overflow warning
        stepped = head.learn_one(x, y, 1e-4)
    assert stepped == pytest.approx(loss, rel=1e-4, abs=1e-6)
    after = head.get_weights()
    for name in ("head_w", "head_b"):
        np.testing.assert_allclose(after[name], before[name] - 1e-4 * gradients[name], rtol=1e-4, atol=1e-3)
