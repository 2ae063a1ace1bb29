"""Imprinting a classifier's output layer from class means, one sample at a time."""

import numpy as np
import pytest

from edge.imprinting import Imprinter, imprint_output_layer
from edge.mlp import NumpyMLP, mlp_forward
from edge.mlp_classifier import MLPClassifier
from edge.reconstruction import reconstruct_and_adapt, split_weights
from edge.validation import InvalidInputError

SIZES = (6, 8, 4)  # the output layer is w1, b1
HEAD = {"w1", "b1"}


def _samples(seed: int, count: int, classes: int = 3) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, size=(classes, SIZES[0]))
    labels = rng.integers(0, classes, size=count)
    return [((centres[y] + rng.normal(0, 0.3, SIZES[0])).astype(np.float32), int(y)) for y in labels]


def _hidden(learner: MLPClassifier, x: np.ndarray) -> np.ndarray:
    return mlp_forward(learner.get_weights(), np.atleast_2d(x), learner.n_layers)[-2]


def test_the_layer_holds_class_means_and_classifies_by_nearest_mean():
    # Prepare
    learner = MLPClassifier(SIZES, seed=1)
    hidden_before = {k: v for k, v in learner.get_weights().items() if k not in HEAD}
    samples = _samples(0, 30)
    # Execute
    losses = imprint_output_layer(learner, iter(samples), len(samples), HEAD)
    # Assert: columns are the means of the seen classes, biases −½‖μ‖², hidden layers untouched
    weights = learner.get_weights()
    features = _hidden(learner, np.stack([x for x, _ in samples]))
    labels = np.array([y for _, y in samples])
    for c in np.unique(labels):
        mean = features[labels == c].mean(axis=0)
        np.testing.assert_allclose(weights["w1"][:, c], mean, atol=1e-5)
        assert weights["b1"][c] == pytest.approx(-0.5 * float(mean @ mean), abs=1e-5)
    for name, value in hidden_before.items():
        np.testing.assert_array_equal(weights[name], value)
    assert len(losses) == 30 and all(np.isfinite(losses))
    # nearest class mean, computed directly, is what the imprinted classifier predicts
    query = np.stack([x for x, _ in _samples(0, 40)[30:]])
    seen = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in seen])
    distances = ((_hidden(learner, query)[:, None, :] - means[None]) ** 2).sum(axis=2)
    two = np.sort(distances, axis=1)[:, :2]  # a near-tie may go either way under another CPU's float32 sums
    decided = two[:, 1] - two[:, 0] > 1e-4 * np.maximum(two[:, 0], 1.0)
    assert decided.sum() >= len(query) // 2
    np.testing.assert_array_equal(learner.predict_labels(query)[decided], seen[distances.argmin(axis=1)][decided])


def test_an_unseen_class_keeps_its_firmware_column_and_the_loss_is_taken_before_each_update():
    learner = MLPClassifier(SIZES, seed=2)
    learner.set_weights({**learner.get_weights(), "w1": np.zeros((8, 4), np.float32), "b1": np.zeros(4, np.float32)})
    x, y = _samples(3, 1)[0]
    expected_loss = learner.loss(x.reshape(1, -1), np.array([y]))
    losses = imprint_output_layer(learner, iter([(x, y)]), 1, HEAD)
    assert losses == [pytest.approx(expected_loss, rel=1e-5)]  # zero logits: log(4)
    weights = learner.get_weights()
    untouched = [c for c in range(4) if c != y]
    assert not weights["w1"][:, untouched].any() and not weights["b1"][untouched].any()


def test_the_running_mean_does_not_depend_on_arrival_order():
    samples = _samples(4, 20)
    a, b = MLPClassifier(SIZES, seed=5), MLPClassifier(SIZES, seed=5)
    imprint_output_layer(a, iter(samples), 20, HEAD)
    imprint_output_layer(b, iter(samples[::-1]), 20, HEAD)
    np.testing.assert_allclose(a.get_weights()["w1"], b.get_weights()["w1"], atol=1e-6)


def test_refuses_a_regressor_another_subset_or_a_bad_label_and_keeps_the_weights():
    with pytest.raises(ValueError, match="needs a classifier"):
        imprint_output_layer(NumpyMLP((6, 8, 1)), iter([]), 0, HEAD)
    learner = MLPClassifier(SIZES, seed=6)
    with pytest.raises(ValueError, match=r"output layer \['w1', 'b1'\]"):
        imprint_output_layer(learner, iter([]), 0, {"w0", "b0"})
    before = learner.get_weights()
    imprinter = Imprinter(learner)
    with pytest.raises(InvalidInputError, match="0..3"):
        imprinter.learn_one(np.zeros(6, np.float32), 7)
    with pytest.raises(InvalidInputError, match="sample x contains"):
        imprinter.learn_one(np.full(6, np.nan, np.float32), 1)
    for name, value in before.items():
        np.testing.assert_array_equal(learner.get_weights()[name], value)
    assert not imprinter.counts.any()  # nothing counted for a refused sample


def test_reconstruction_can_imprint_the_private_head_and_refuses_an_unknown_rule():
    theta = MLPClassifier(SIZES, seed=7).get_weights()
    shared, private = split_weights(theta, HEAD)
    samples = _samples(8, 30)
    learner = MLPClassifier(SIZES)
    phi, report = reconstruct_and_adapt(
        learner, shared, private, iter(samples),
        reconstruction_samples=15, reconstruction_lr=0.0, shots=15, learning_rate=0.05, rule="imprint",
    )  # fmt: skip
    assert sorted(phi) == ["b0", "w0"] and report.samples_used == 30
    assert np.isfinite(report.reconstruction_loss) and np.isfinite(report.prequential_loss)
    with pytest.raises(ValueError, match="not one of"):
        reconstruct_and_adapt(learner, shared, private, iter(samples), reconstruction_samples=1,
                              reconstruction_lr=0.1, shots=0, learning_rate=0.1, rule="closed-form")  # fmt: skip


def test_a_rate_floor_turns_the_mean_into_a_moving_average_that_follows_drift():
    learner = MLPClassifier(SIZES, seed=9)
    samples = _samples(10, 12, classes=1)  # all class 0
    imprint_output_layer(learner, iter(samples[:2]), 2, HEAD)
    resumed = Imprinter(learner, counts=[2, 0, 0, 0], min_rate=0.25)
    before = learner.get_weights()["w1"][:, 0].copy()
    x, y = samples[2]
    resumed.learn_one(x, y)
    h = _hidden(learner, x)[0]
    # n = 3 gives 1/3 > 0.25: still the exact mean of three samples
    np.testing.assert_allclose(learner.get_weights()["w1"][:, 0], before + (h - before) / 3, atol=1e-6)
    for x, y in samples[3:]:
        before = learner.get_weights()["w1"][:, 0].copy()
        resumed.learn_one(x, y)
    np.testing.assert_allclose(learner.get_weights()["w1"][:, 0], before + 0.25 * (_hidden(learner, x)[0] - before), atol=1e-6)
    with pytest.raises(ValueError, match="min_rate"):
        Imprinter(learner, min_rate=2.0)
    with pytest.raises(ValueError, match="4 non-negative class counts"):
        Imprinter(learner, counts=[1, 2])
