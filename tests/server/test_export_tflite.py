"""`export tflite`: a run's θ and step sizes as the training graph a device installs, run in the real interpreter.

Weights read back from the graph equal θ bit for bit (the converter stores the float32 values as they
are). A step inside the graph and the numpy step agree to 1e-5: the same float32 maths in another
summation order (the interpreter's kernels against numpy's BLAS, which differs between CPUs).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.mlp import NumpyMLP, init_mlp_weights
from edge.mlp_classifier import mlp_cross_entropy_gradients
from edge.tflite_learner import TFLiteTrainer
from server.export_run import RunModel, load_run
from server.export_tflite import write_tflite
from server.core.federation import DeviceRoundConfig
from tests.server.test_export_run import SMALL, make_run

TOLERANCE = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def reptile_model(tmp_path_factory: pytest.TempPathFactory) -> RunModel:
    return load_run(make_run(tmp_path_factory.mktemp("tflite_run")))


def test_the_graph_of_a_run_holds_theta_and_steps_by_its_step_sizes(reptile_model: RunModel, tmp_path: Path) -> None:
    model_path, manifest = write_tflite(reptile_model, tmp_path)
    assert model_path.name == "sine_train.tflite"
    trainer = TFLiteTrainer(model_path, backend="ai_edge_litert")
    for name, value in reptile_model.theta.items():
        np.testing.assert_array_equal(trainer.get_weights()[name], value, err_msg=name)
    reference = NumpyMLP(reptile_model.layer_sizes)
    reference.set_weights(reptile_model.theta)
    reference.set_step_sizes(reptile_model.step_sizes)
    x, y = np.array([0.7], np.float32), np.array([1.3], np.float32)
    assert trainer.learn_one(x, y, 0.02) == pytest.approx(reference.learn_one(x, y, 0.02), rel=1e-5)
    for name, value in reference.get_weights().items():
        np.testing.assert_allclose(trainer.get_weights()[name], value, **TOLERANCE, err_msg=name)
    assert json.loads(manifest.read_text())["y"].startswith("regression")


def test_a_classifier_task_gets_a_cross_entropy_graph(tmp_path: Path) -> None:
    sizes = (5, 8, 3)
    theta = init_mlp_weights(sizes, 1)
    steps = {k: np.full_like(v, 0.5 + 0.1 * i) for i, (k, v) in enumerate(sorted(theta.items()))}
    model = RunModel(theta, steps, "presence", sizes, 4, "tinymetafed", ("w1", "b1"), tmp_path)
    model_path, manifest = write_tflite(model, tmp_path)
    trainer = TFLiteTrainer(model_path, backend="ai_edge_litert")
    x = np.linspace(-1.0, 1.0, 5, dtype=np.float32)
    label = 2
    loss, grads = mlp_cross_entropy_gradients(theta, x.reshape(1, -1), np.array([label]), 2)
    assert trainer.learn_one(x, np.eye(3, dtype=np.float32)[label], 0.1) == pytest.approx(loss, rel=1e-5)
    for name, value in theta.items():
        expected = value - np.float32(0.1) * steps[name] * grads[name]
        np.testing.assert_allclose(trainer.get_weights()[name], expected, **TOLERANCE, err_msg=name)
    assert json.loads(manifest.read_text())["y"].startswith("one-hot")
    assert json.loads(manifest.read_text())["private_names"] == ["w1", "b1"]


def test_devices_train_with_the_exported_graph_as_their_learner(reptile_model: RunModel, tmp_path: Path) -> None:
    """What a device installs: the exported graph is the learner of every device of a further federation (the
    ClientApp's TFLiteTrainer, the server's θ installed in it each round). Without step-size learning: a
    TFLiteTrainer device refuses a round that asks it for a step-size hypergradient (only the numpy regressor
    measures one), so the graph adapts with the step sizes it was exported with but cannot learn them further."""
    from firmware_sim.client_app import _tflite_trainer
    from server.core.federation import initial_weights

    model_path, _ = write_tflite(reptile_model, tmp_path / "model")
    device = DeviceRoundConfig(stream_samples=6, device_seeds=SMALL.device.device_seeds, learner="tflite", model_path=str(model_path))
    _tflite_trainer.cache_clear()
    reptile = replace(SMALL.reptile, step_size_learning_rate=0.0)
    after = load_run(make_run(tmp_path / "run", rounds=2, device=device, reptile=reptile))
    assert _tflite_trainer.cache_info().currsize == 1  # the devices ran the exported graph (in this process)
    assert after.server_round == 2
    start = initial_weights(SMALL)
    assert all(np.isfinite(v).all() for v in after.theta.values())
    assert max(float(np.abs(after.theta[k] - start[k]).max()) for k in after.theta) > 0  # θ moved by their updates
