import numpy as np
import pytest

from edge.mlp import NumpyMLP, mlp_gradients
from edge.validation import InvalidInputError
from gradient_check import assert_gradients_match


def test_mlp_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    mlp = NumpyMLP([2, 5, 4, 1], seed=3)
    weights = {k: v.astype(np.float64) for k, v in mlp.get_weights().items()}
    x = rng.normal(size=(1, 2))
    y = rng.normal(size=(1, 1))
    _, grads = mlp_gradients(weights, x, y, 3)
    assert_gradients_match(lambda w: mlp_gradients(w, x, y, 3)[0], weights, grads)


def test_online_sgd_fits_a_sine():
    rng = np.random.default_rng(0)
    mlp = NumpyMLP([1, 40, 40, 1], seed=0)
    xs = rng.uniform(-5, 5, size=3000).astype(np.float32)
    for x in xs:
        mlp.learn_one([x], [np.sin(x)], 0.02)
    grid = np.linspace(-5, 5, 50, dtype=np.float32).reshape(-1, 1)
    assert mlp.loss(grid, np.sin(grid)) < 0.05


def test_diverging_step_is_refused_and_weights_kept():
    mlp = NumpyMLP([1, 4, 1])
    before = mlp.get_weights()
    with pytest.raises(InvalidInputError, match="diverged"):
        mlp.learn_one([1.0], [1e30], 1e10)
    for name, value in mlp.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


def test_memory_footprint_counts_weights_and_training_buffers():
    mlp = NumpyMLP([1, 40, 40, 1])
    footprint = mlp.memory_footprint()
    assert footprint.weights == (40 + 40 + 1600 + 40 + 40 + 1) * 4
    assert footprint.training >= footprint.weights  # gradients alone are as large as the weights
    assert footprint.total == footprint.weights + footprint.training + footprint.inference
