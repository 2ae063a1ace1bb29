import numpy as np
import pytest

from edge.mlp import NumpyMLP
from edge.mlp_classifier import MLPClassifier, mlp_cross_entropy_gradients
from edge.validation import InvalidInputError
from gradient_check import assert_gradients_match


def test_cross_entropy_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    clf = MLPClassifier([3, 5, 4], seed=2)
    weights = {k: v.astype(np.float64) for k, v in clf.get_weights().items()}
    x = rng.normal(size=(2, 3))
    labels = np.array([1, 3])
    _, grads = mlp_cross_entropy_gradients(weights, x, labels, 2)
    assert_gradients_match(lambda w: mlp_cross_entropy_gradients(w, x, labels, 2)[0], weights, grads)


def test_same_weight_table_as_the_regressor():
    """Strategies and the firmware's local init treat both alike: same names, shapes, init."""
    clf, mlp = MLPClassifier([6, 8, 3], seed=4), NumpyMLP([6, 8, 3], seed=4)
    assert clf.weight_spec == mlp.weight_spec
    for name, value in mlp.get_weights().items():
        np.testing.assert_array_equal(clf.get_weights()[name], value)
    assert clf.memory_footprint() == mlp.memory_footprint()


def test_online_sgd_separates_three_blobs():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 3, size=(3, 4)).astype(np.float32)
    clf = MLPClassifier([4, 16, 3], seed=0)
    for _ in range(600):
        label = int(rng.integers(3))
        clf.learn_one(centres[label] + rng.normal(0, 0.5, 4).astype(np.float32), label, 0.05)
    labels = rng.integers(3, size=200)
    x = centres[labels] + rng.normal(0, 0.5, size=(200, 4)).astype(np.float32)
    assert (clf.predict_labels(x) == labels).mean() > 0.95
    assert clf.loss(x, labels) < 0.2


@pytest.mark.parametrize(
    "label, message",
    [(3, "in 0..2"), (-1, "in 0..2"), (1.5, "whole numbers"), (float("nan"), "whole numbers"), ("a", "integers"), ([0, 1], "2 labels")],
)
def test_bad_labels_are_refused_and_weights_kept(label, message):
    clf = MLPClassifier([2, 4, 3])
    before = clf.get_weights()
    with pytest.raises(InvalidInputError, match=message):
        clf.learn_one(np.ones(2, np.float32), label, 0.1)
    for name, value in before.items():
        np.testing.assert_array_equal(clf.get_weights()[name], value)


def test_bad_samples_and_divergence_are_refused_and_weights_kept():
    clf = MLPClassifier([2, 4, 3])
    before = clf.get_weights()
    with pytest.raises(InvalidInputError):
        clf.learn_one(np.array([np.nan, 1.0], np.float32), 0, 0.1)
    with pytest.raises(InvalidInputError):
        clf.learn_one(np.ones(5, np.float32), 0, 0.1)
    with pytest.raises(InvalidInputError, match="diverged"):
        clf.learn_one(np.ones(2, np.float32), 0, 1e39)
    for name, value in before.items():
        np.testing.assert_array_equal(clf.get_weights()[name], value)


def test_a_classifier_needs_two_classes():
    with pytest.raises(ValueError, match=">= 2 outputs"):
        MLPClassifier([3, 4, 1])
