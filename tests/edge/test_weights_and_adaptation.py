import numpy as np
import pytest

from edge import weights as W
from edge.adaptation import adapt_online
from edge.mlp import NumpyMLP


def test_interpolate_is_reptile_outer_step():
    theta = {"a": np.array([0.0, 2.0], np.float32)}
    phi = {"a": np.array([1.0, 0.0], np.float32)}
    np.testing.assert_allclose(W.interpolate(theta, phi, 0.25)["a"], [0.25, 1.5])


def test_weighted_mean_and_name_mismatch():
    a, b = {"w": np.ones(2, np.float32)}, {"w": np.full(2, 4.0, np.float32)}
    np.testing.assert_allclose(W.mean([a, b], counts=[3, 1])["w"], [1.75, 1.75])
    with pytest.raises(ValueError, match="differ"):
        W.mean([a, {"v": np.ones(2, np.float32)}])


def test_adapt_online_uses_each_sample_once_and_scores_on_held_back_probe():
    samples = [(np.array([float(i)], np.float32), np.array([1.0], np.float32)) for i in range(8)]
    mlp = NumpyMLP([1, 3, 1], seed=0)
    seen = []
    original = mlp.learn_one

    def spy(x, y, lr):
        seen.append(float(x[0]))
        return original(x, y, lr)

    mlp.learn_one = spy
    report = adapt_online(mlp, iter(samples), shots=5, learning_rate=0.05, probe=2)
    assert seen == [2.0, 3.0, 4.0, 5.0, 6.0]  # probe samples 0, 1 held back, never trained on
    assert report.samples_used == 5
    assert report.loss_after < report.loss_before
