"""Per-weight step sizes: the learner applies them, the hypergradient is right, bad ones are refused."""

import numpy as np
import pytest

from edge.mlp import NumpyMLP, init_mlp_weights, regression_gradients
from edge.step_sizes import LOG_SCALE_BOUND, LogScaleAdam, check_scales, log_scale_hypergradient, unit_scales
from edge.validation import InvalidInputError

SIZES = (1, 8, 8, 1)


def samples(seed: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-5, 5, size=(n, 1)).astype(np.float32)
    return [(x, (3.0 * np.sin(x + 0.5)).astype(np.float32)) for x in xs]


def adapted_query_loss(theta, scales, rate, support, query) -> float:
    """The objective the hypergradient differentiates, computed forward only (float64 for the check)."""
    gradient = regression_gradients(SIZES)
    phi = {k: v.astype(np.float64) for k, v in theta.items()}
    for x, y in support:
        _, g = gradient(phi, x, y)
        phi = {k: phi[k] - rate * scales[k] * g[k] for k in phi}
    loss, _ = gradient(phi, *query)
    return loss


def test_unit_step_sizes_change_nothing_and_doubled_ones_double_the_rate():
    theta = init_mlp_weights(SIZES, 1)
    plain, unit, doubled, fast = (NumpyMLP(SIZES) for _ in range(4))
    for learner in (plain, unit, doubled, fast):
        learner.set_weights(theta)
    unit.set_step_sizes(unit_scales(theta))
    doubled.set_step_sizes({k: np.full_like(v, 2.0) for k, v in theta.items()})
    for x, y in samples(0, 4):
        plain.learn_one(x, y, 0.02)
        unit.learn_one(x, y, 0.02)
        doubled.learn_one(x, y, 0.02)
        fast.learn_one(x, y, 0.04)
    for name in theta:
        np.testing.assert_array_equal(unit.get_weights()[name], plain.get_weights()[name])
        np.testing.assert_allclose(doubled.get_weights()[name], fast.get_weights()[name], rtol=1e-6, atol=1e-7)


def test_a_weight_with_a_tiny_step_size_barely_moves():
    learner = NumpyMLP(SIZES)
    before = learner.get_weights()
    scales = unit_scales(before)
    scales["w0"] = np.full_like(scales["w0"], 1e-6)
    learner.set_step_sizes(scales)
    for x, y in samples(1, 3):
        learner.learn_one(x, y, 0.02)
    after = learner.get_weights()
    assert np.abs(after["w0"] - before["w0"]).max() < 1e-6
    assert np.abs(after["w2"] - before["w2"]).max() > 1e-3


def test_hypergradient_matches_finite_differences_of_the_adapted_query_loss():
    theta = init_mlp_weights(SIZES, 2)
    rng = np.random.default_rng(3)
    scales = {k: np.exp(rng.normal(0, 0.3, v.shape)).astype(np.float32) for k, v in theta.items()}
    support = samples(4, 5)
    query_samples = samples(5, 20)
    query = (np.concatenate([x for x, _ in query_samples]), np.concatenate([y for _, y in query_samples]))
    hyper, loss = log_scale_hypergradient(theta, scales, 0.02, support, query, regression_gradients(SIZES))
    assert loss == pytest.approx(adapted_query_loss(theta, scales, 0.02, support, query), rel=1e-4)
    for trial in range(3):  # directional derivatives along random directions in log-scale space
        direction = {k: rng.normal(size=v.shape) for k, v in theta.items()}
        h = 1e-4
        up = {k: scales[k] * np.exp(h * direction[k]) for k in theta}
        down = {k: scales[k] * np.exp(-h * direction[k]) for k in theta}
        numeric = (adapted_query_loss(theta, up, 0.02, support, query)
                   - adapted_query_loss(theta, down, 0.02, support, query)) / (2 * h)  # fmt: skip
        analytic = sum(float((hyper[k] * direction[k]).sum()) for k in theta)
        assert analytic == pytest.approx(numeric, rel=0.02, abs=1e-4), trial


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("w0"), "the model's weights are"),
        (lambda s: s.__setitem__("w0", np.ones((2, 2), np.float32)), "shape"),
        (lambda s: s.__setitem__("b1", np.full(8, np.nan, np.float32)), "finite and positive"),
        (lambda s: s.__setitem__("b1", np.zeros(8, np.float32)), "finite and positive"),
        (lambda s: s.__setitem__("b1", np.ones(8, np.int32)), "dtype"),
    ],
)
def test_bad_step_sizes_are_refused_and_the_old_ones_kept(change, message):
    learner = NumpyMLP(SIZES)
    good = {k: np.full_like(v, 0.5) for k, v in learner.get_weights().items()}
    learner.set_step_sizes(good)
    bad = {k: v.copy() for k, v in good.items()}
    change(bad)
    with pytest.raises(InvalidInputError, match=message):
        learner.set_step_sizes(bad)
    assert all(np.array_equal(learner.step_sizes[k], good[k]) for k in good)
    with pytest.raises(InvalidInputError):
        check_scales(bad, learner.get_weights())


def test_a_learner_with_its_own_step_refuses_step_sizes_rather_than_ignore_them():
    from edge.mlp_classifier import MLPClassifier

    classifier = MLPClassifier((4, 3, 2))
    with pytest.raises(NotImplementedError, match="does not apply step sizes"):
        classifier.set_step_sizes(unit_scales(classifier.get_weights()))


def test_adam_state_round_trips_and_log_scales_stay_bounded():
    weights = {"w": np.zeros(3, np.float32)}
    adam = LogScaleAdam(0.5)
    adam.start(weights)
    for _ in range(40):
        adam.step({"w": np.array([1.0, -1.0, 0.0])})
    assert adam.log_scales["w"][0] == -LOG_SCALE_BOUND and adam.log_scales["w"][1] == LOG_SCALE_BOUND
    assert adam.log_scales["w"][2] == 0.0
    restored = LogScaleAdam(0.5)
    restored.restore(adam.state("s/"), "s/")
    adam.step({"w": np.array([0.3, 0.2, -0.1])})
    restored.step({"w": np.array([0.3, 0.2, -0.1])})
    np.testing.assert_array_equal(restored.log_scales["w"], adam.log_scales["w"])
    assert restored.steps == adam.steps == 41


def test_the_tinyol_head_applies_step_sizes_and_keeps_them_when_a_class_is_added():
    from edge.online_head import OnlineHead

    rng = np.random.default_rng(8)
    samples_ = [(rng.normal(size=6).astype(np.float32), rng.normal(size=2).astype(np.float32)) for _ in range(5)]
    plain, unit, doubled, fast = (OnlineHead(6, 2, seed=3) for _ in range(4))
    unit.set_step_sizes(unit_scales(unit.get_weights()))
    doubled.set_step_sizes({k: np.full_like(v, 2.0) for k, v in doubled.get_weights().items()})
    for x, y in samples_:
        plain.learn_one(x, y, 0.01)
        unit.learn_one(x, y, 0.01)
        doubled.learn_one(x, y, 0.01)
        fast.learn_one(x, y, 0.02)
    for name in plain.get_weights():
        np.testing.assert_array_equal(unit.get_weights()[name], plain.get_weights()[name])
        np.testing.assert_allclose(doubled.get_weights()[name], fast.get_weights()[name], rtol=1e-5, atol=1e-6)
    assert doubled.memory_footprint().training == plain.memory_footprint().training + 14 * 4

    classifier = OnlineHead(4, 2, task="classification")
    scales = {"head_w": np.full((4, 2), 0.5, np.float32), "head_b": np.full(2, 0.25, np.float32)}
    classifier.set_step_sizes(scales)
    classifier.add_class()
    grown = classifier.step_sizes
    np.testing.assert_array_equal(grown["head_w"], np.hstack([scales["head_w"], np.ones((4, 1), np.float32)]))
    np.testing.assert_array_equal(grown["head_b"], [0.25, 0.25, 1.0])
    with pytest.raises(InvalidInputError, match="step sizes 'head_b' have shape"):
        classifier.set_step_sizes({"head_w": np.ones((4, 3), np.float32), "head_b": np.ones(2, np.float32)})
    np.testing.assert_array_equal(classifier.step_sizes["head_b"], [0.25, 0.25, 1.0])  # refused: kept


def reference_hypergradient(theta, scales, base_rate, support, query, gradient):
    """log_scale_hypergradient as it was written one weight array at a time, before its flat vectors."""
    import math

    rates = {k: np.float32(base_rate) * np.asarray(scales[k], dtype=np.float32) for k in theta}
    phis = [{k: np.asarray(v, dtype=np.float32) for k, v in theta.items()}]
    step_gradients = []
    for x, y in support:
        _, g = gradient(phis[-1], x, y)
        step_gradients.append(g)
        phis.append({k: phis[-1][k] - rates[k] * g[k] for k in g})
    query_loss, v = gradient(phis[-1], *query)
    hyper = {k: np.zeros_like(a) for k, a in rates.items()}
    for t in reversed(range(len(support))):
        for k in hyper:
            hyper[k] -= v[k] * rates[k] * step_gradients[t][k]
        probe = {k: rates[k] * v[k] for k in v}
        size = math.sqrt(sum(float(np.vdot(p, p)) for p in probe.values()))
        if size == 0.0 or not math.isfinite(size):
            break
        h = 1e-3 / size
        x, y = support[t]
        _, plus = gradient({k: phis[t][k] + np.float32(h) * probe[k] for k in probe}, x, y)
        _, minus = gradient({k: phis[t][k] + np.float32(-h) * probe[k] for k in probe}, x, y)
        v = {k: v[k] - (plus[k] - minus[k]) / np.float32(2 * h) for k in v}
    return hyper, float(query_loss)


@pytest.mark.parametrize("sizes", [(1, 40, 40, 1), (1, 8, 8, 1)])
def test_the_flat_hypergradient_is_the_per_array_one_bit_for_bit(sizes):
    """The same float32 operations on the same numbers, grouped into one vector: equal bits (constructed)."""
    theta = init_mlp_weights(sizes, 5)
    rng = np.random.default_rng(6)
    scales = {k: np.exp(rng.normal(0, 0.5, v.shape)).astype(np.float32) for k, v in theta.items()}
    support, query_samples = samples(7, 5), samples(8, 20)
    query = (np.concatenate([x for x, _ in query_samples]), np.concatenate([y for _, y in query_samples]))
    gradient = regression_gradients(sizes)
    hyper, loss = log_scale_hypergradient(theta, scales, 0.02, support, query, gradient)
    expected, expected_loss = reference_hypergradient(theta, scales, 0.02, support, query, gradient)
    assert loss == expected_loss and hyper.keys() == expected.keys()
    for name in expected:
        assert hyper[name].dtype == np.float32 and hyper[name].tobytes() == expected[name].tobytes(), name
