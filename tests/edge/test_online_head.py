import numpy as np
import pytest

from edge.online_head import OnlineHead
from edge.validation import InvalidInputError


def numeric_gradient(head: OnlineHead, x: np.ndarray, y: object, name: str, eps: float = 1e-3) -> np.ndarray:
    weights = head.get_weights()
    grad = np.zeros_like(weights[name], dtype=np.float64)
    for index in np.ndindex(weights[name].shape):
        for sign in (+1, -1):
            shifted = {k: v.astype(np.float64).copy() for k, v in weights.items()}
            shifted[name][index] += sign * eps
            probe = OnlineHead(head.n_features, head.n_outputs, head.task)
            probe.set_weights({k: v.astype(np.float32) for k, v in shifted.items()})
            grad[index] += sign * probe.gradients(x, y)[0]
    return grad / (2 * eps)


@pytest.mark.parametrize("task,label", [("regression", np.array([0.7, -1.2], np.float32)), ("classification", 1)])
def test_head_gradients_match_finite_differences(task, label):
    rng = np.random.default_rng(0)
    head = OnlineHead(6, 2 if task == "regression" else 3, task=task, seed=1)
    x = rng.normal(size=6).astype(np.float32)
    _, analytic = head.gradients(x, label)
    for name in ("head_w", "head_b"):
        np.testing.assert_allclose(analytic[name], numeric_gradient(head, x, label, name), rtol=2e-2, atol=2e-3)


def test_regression_head_learns_a_linear_map_online():
    rng = np.random.default_rng(0)
    true_w = rng.normal(size=(4, 1)).astype(np.float32)
    head = OnlineHead(4, 1)
    losses = [head.learn_one(x, x @ true_w, 0.05) for x in rng.normal(size=(400, 4)).astype(np.float32)]
    assert np.mean(losses[-50:]) < 0.01 * np.mean(losses[:50])


def test_new_class_is_learned_without_forgetting_old_ones():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=3.0, size=(3, 5)).astype(np.float32)
    head = OnlineHead(5, 2, task="classification")
    for _ in range(300):
        c = int(rng.integers(2))
        head.learn_one(centres[c] + rng.normal(scale=0.3, size=5), c, 0.1)
    before = head.predict(centres[:2]).argmax(axis=1)
    assert before.tolist() == [0, 1]
    assert head.add_class() == 2
    np.testing.assert_array_equal(head.predict(centres[:2]).argmax(axis=1), before)  # growing changes nothing
    for _ in range(300):
        c = int(rng.integers(3))
        head.learn_one(centres[c] + rng.normal(scale=0.3, size=5), c, 0.1)
    assert head.predict(centres).argmax(axis=1).tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "x,y,message",
    [
        (np.full(4, np.nan, np.float32), [1.0], "non-finite"),
        (np.zeros(3, np.float32), [1.0], "shape"),
        (np.array(["a"] * 4), [1.0], "dtype"),
        (np.zeros(4, np.float32), [np.inf], "non-finite"),
    ],
)
def test_bad_samples_are_refused_and_weights_kept(x, y, message):
    head = OnlineHead(4, 1)
    before = head.get_weights()
    with pytest.raises(InvalidInputError, match=message):
        head.learn_one(x, y, 0.1)
    for name, value in head.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


def test_unknown_class_label_is_refused_with_hint():
    head = OnlineHead(3, 2, task="classification")
    with pytest.raises(InvalidInputError, match="add_class"):
        head.learn_one(np.zeros(3, np.float32), 5, 0.1)


@pytest.mark.parametrize("label", [True, 0.5, np.float32(np.nan), "1", [0, 1]])
def test_labels_that_are_not_one_integer_are_refused(label):
    head = OnlineHead(3, 2, task="classification")
    before = head.get_weights()
    with pytest.raises(InvalidInputError, match="one integer"):
        head.learn_one(np.zeros(3, np.float32), label, 0.1)
    for name, value in head.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize(
    "weights,message",
    [
        ({"head_w": np.zeros((3, 2), np.float32)}, "missing"),
        ({"head_w": np.zeros((2, 2), np.float32), "head_b": np.zeros(2, np.float32)}, "shape"),
        ({"head_w": np.zeros((3, 2), np.float64), "head_b": np.zeros(2, np.float32)}, "dtype"),
        ({"head_w": np.full((3, 2), np.nan, np.float32), "head_b": np.zeros(2, np.float32)}, "non-finite"),
    ],
)
def test_bad_weights_are_refused_and_weights_kept(weights, message):
    head = OnlineHead(3, 2)
    before = head.get_weights()
    with pytest.raises(InvalidInputError, match=message):
        head.set_weights(weights)
    for name, value in head.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


def reference_step(head: OnlineHead, x: np.ndarray, y: object, lr: float) -> tuple[float, dict[str, np.ndarray]]:
    """The step learn_one must take, from the batch-path gradients (checked against finite differences above)."""
    loss, grads = head.gradients(x, y)
    weights = head.get_weights()
    return loss, {name: weights[name] - np.float32(lr) * grads[name] for name in weights}


@pytest.mark.parametrize(
    "task,n_outputs,label",
    [("regression", 2, np.array([0.7, -1.2], np.float32)), ("regression", 1, [0.3]), ("classification", 3, 2)],
)
def test_learn_one_takes_the_gradient_step_in_place(task, n_outputs, label):
    rng = np.random.default_rng(2)
    head = OnlineHead(6, n_outputs, task=task, seed=3)
    for x in rng.normal(size=(5, 6)).astype(np.float32):
        want_loss, want = reference_step(head, x, label, 0.05)
        got_loss = head.learn_one(x, label, 0.05)
        assert got_loss == pytest.approx(want_loss, rel=1e-5)
        for name, value in head.get_weights().items():
            assert value.dtype == np.float32
            np.testing.assert_allclose(value, want[name], rtol=1e-6, atol=1e-7)


def test_large_logits_take_the_stable_softmax_path():
    # Logits near 1e3 overflow float32's exp; the step must still be the exact softmax gradient step.
    head = OnlineHead(2, 2, task="classification")
    head.set_weights({"head_w": np.array([[500.0, 0.0], [0.0, 0.0]], np.float32), "head_b": np.zeros(2, np.float32)})
    x = np.array([2.0, 1.0], np.float32)
    want_loss, want = reference_step(head, x, 1, 0.1)
    with np.errstate(over="ignore"):
        got_loss = head.learn_one(x, 1, 0.1)
    assert got_loss == pytest.approx(want_loss, rel=1e-5) and np.isfinite(got_loss)
    for name, value in head.get_weights().items():
        np.testing.assert_allclose(value, want[name], rtol=1e-6)


def test_samples_of_other_types_are_converted_like_float32_arrays():
    reference, head = OnlineHead(3, 2, "classification", seed=4), OnlineHead(3, 2, "classification", seed=4)
    reference.learn_one(np.array([0.5, -1.0, 2.0], np.float32), 1, 0.1)
    head.learn_one([0.5, -1.0, 2.0], np.int64(1), 0.1)  # a list and a numpy integer label
    for name, value in head.get_weights().items():
        np.testing.assert_array_equal(value, reference.get_weights()[name])


@pytest.mark.parametrize("task,label", [("regression", [1.0]), ("classification", 0)])
def test_refused_steps_leave_the_head_exactly_as_it_was(task, label):
    # A NaN sample, an Inf sample, a diverging step and a bad learning rate in a row: nothing changes, and the
    # next good step is the one an untouched twin takes (no scratch buffer leaks into the weights).
    head, twin = OnlineHead(4, 1, task, seed=5), OnlineHead(4, 1, task, seed=5)
    good = np.array([0.1, 0.2, -0.3, 0.4], np.float32)
    bad = [
        (np.array([0.0, np.nan, 0.0, 0.0], np.float32), 0.1, "non-finite"),
        (np.array([np.inf, 0.0, 0.0, 0.0], np.float32), 0.1, "non-finite"),
        (np.full(4, 3e38, np.float32), 3e38, "may overflow float32"),
        (good, "fast", "learning rate"),
        (good, np.nan, "diverged"),
    ]
    for x, lr, message in bad:
        with pytest.raises(InvalidInputError, match=message), np.errstate(all="ignore"):
            head.learn_one(x, label, lr)
        for name, value in head.get_weights().items():
            np.testing.assert_array_equal(value, twin.get_weights()[name])
    assert head.learn_one(good, label, 0.1) == twin.learn_one(good, label, 0.1)
    for name, value in head.get_weights().items():
        np.testing.assert_array_equal(value, twin.get_weights()[name])


def test_weights_handed_out_are_copies():
    head = OnlineHead(3, 2, "classification")
    weights = head.get_weights()
    weights["head_w"][:] = 7.0
    head.learn_one(np.ones(3, np.float32), 0, 0.1)
    assert not np.any(head.get_weights()["head_w"] == 7.0)
    head.set_weights({"head_w": np.zeros((3, 2), np.float32), "head_b": np.zeros(2, np.float32)})
    assert head.add_class() == 2 and head.get_weights()["head_w"].shape == (3, 3)
    head.learn_one(np.ones(3, np.float32), 2, 0.5)
    assert head.predict(np.ones((1, 3), np.float32)).argmax() == 2


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_overflow_refusal_does_not_depend_on_the_summation_order(task):
    # x·w is 0 exactly ([3e38, 3e38]·[1, -1]), but summed left to right after the bias the first partial sum
    # is 3e38 + 3e38 = inf: whether a BLAS kernel overflows depends on its order, so the head refuses by the
    # order-free bound ‖[x, 1]‖·‖[W; b]‖ (here 4.2e38·1.4 > 1e38), on every CPU.
    head = OnlineHead(2, 1, task, seed=0)
    head.set_weights({"head_w": np.array([[1.0], [-1.0]], np.float32), "head_b": np.zeros(1, np.float32)})
    before = head.get_weights()
    label = 0 if task == "classification" else np.zeros(1, np.float32)
    with pytest.raises(InvalidInputError, match="may overflow float32"):
        head.learn_one(np.full(2, 3e38, np.float32), label, 0.1)
    for name, value in head.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


def test_a_large_sample_inside_the_bound_is_learned_from():
    # ‖[x, 1]‖ ≈ 2e18 and ‖[W; b]‖ = 1: the bound is 2e18, far inside 1e38, so the step is taken everywhere.
    head = OnlineHead(4, 1, "regression")
    head.set_weights({"head_w": np.full((4, 1), 0.5, np.float32), "head_b": np.zeros(1, np.float32)})
    loss = head.learn_one(np.full(4, 1e18, np.float32), np.zeros(1, np.float32), 1e-40)
    assert loss == pytest.approx(4e36, rel=1e-6)  # (4 · 0.5 · 1e18)²; the float32 rounding of one sum is ~1e-7


def test_a_one_class_softmax_head_learns_nothing_until_a_class_is_added():
    # A softmax over one class is exactly 1: the loss is 0 and the gradient exactly zero, so the step is a no-op
    # (TinyOL may start from one class and grow); the head learns once a second class exists.
    head = OnlineHead(3, 1, "classification", seed=2)
    before = head.get_weights()
    x = np.array([0.5, -1.0, 2.0], np.float32)
    assert head.learn_one(x, 0, 0.5) == 0.0
    for name, value in head.get_weights().items():
        np.testing.assert_array_equal(value, before[name])
    assert head.add_class() == 1
    first = head.learn_one(x, 1, 0.5)
    assert head.learn_one(x, 1, 0.5) < first
