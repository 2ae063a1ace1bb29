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


def reference_step(weights, scales, x, y, learning_rate):
    """The SGD step as NumpyMLP wrote it before its flat-vector update: one array at a time, a ** 2, a batch sum."""
    n_layers = len(weights) // 2
    acts, h = [x], x
    for i in range(n_layers):
        z = h @ weights[f"w{i}"] + weights[f"b{i}"]
        h = np.tanh(z) if i < n_layers - 1 else z
        acts.append(h)
    error = acts[-1] - y
    loss = float((error * error).sum()) / error.size
    delta, grads = error * (2.0 / error.size), {}
    for i in reversed(range(n_layers)):
        grads[f"w{i}"] = acts[i].T @ delta
        grads[f"b{i}"] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ weights[f"w{i}"].T) * (1.0 - acts[i] ** 2)
    step = np.float32(learning_rate)
    if scales is None:
        return loss, {k: w - step * grads[k] for k, w in weights.items()}
    return loss, {k: w - step * scales[k] * grads[k] for k, w in weights.items()}


@pytest.mark.parametrize("with_scales", [False, True], ids=["shared-rate", "step-sizes"])
def test_the_flat_step_is_the_per_array_step_bit_for_bit(with_scales):
    """Same operations on the same float32 numbers, only grouped into one array: equal bits, on any machine."""
    rng = np.random.default_rng(1)
    mlp = NumpyMLP([1, 40, 40, 1], seed=2)
    weights = mlp.get_weights()
    scales = None
    if with_scales:
        scales = {k: rng.uniform(0.1, 3.0, size=v.shape).astype(np.float32) for k, v in weights.items()}
        mlp.set_step_sizes(scales)
    for _ in range(200):
        x = rng.uniform(-5, 5, size=(1,)).astype(np.float32)
        y = (3.0 * np.sin(x + 0.4)).astype(np.float32)
        expected_loss, weights = reference_step(weights, scales, x.reshape(1, 1), y.reshape(1, 1), 0.02)
        assert mlp.learn_one(x, y, 0.02) == expected_loss
    for name, value in mlp.get_weights().items():
        assert value.dtype == np.float32 and value.tobytes() == weights[name].tobytes(), name


def test_a_sample_given_as_a_list_or_float64_is_converted_and_a_bad_one_refused():
    mlp, twin = NumpyMLP([1, 4, 1], seed=1), NumpyMLP([1, 4, 1], seed=1)
    assert mlp.learn_one([0.5], [0.25], 0.1) == twin.learn_one(np.float32([0.5]), np.float32([0.25]), 0.1)
    assert mlp.learn_one(np.float64([0.5]), 0.25, 0.1) == twin.learn_one(np.float32([0.5]), np.float32([0.25]), 0.1)
    before = mlp.get_weights()
    with pytest.raises(InvalidInputError, match="non-finite"):
        mlp.learn_one(np.float32([np.nan]), np.float32([0.0]), 0.1)
    with pytest.raises(InvalidInputError, match="shape"):
        mlp.learn_one(np.float32([0.5, 0.5]), np.float32([0.0]), 0.1)
    for name, value in mlp.get_weights().items():
        np.testing.assert_array_equal(value, before[name])
