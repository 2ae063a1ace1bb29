"""A user's own model in the real TFLite interpreter: a `.tflite` training graph, or an int8 backbone plus a head,
named by task.toml, runs device rounds over the user's data; a model that does not match the data is refused.
The .tflite files are built here by the project's exporters (TensorFlow: test-side only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge import record_keys as keys
from edge.device_round import run_device_round
from edge.mlp import init_mlp_weights
from edge.round_contract import RoundRequest
from edge.tflite_learner import BackboneHeadLearner, TFLiteTrainer
from firmware_sim.tasks.example_task import write_csv_task
from firmware_sim.user_task import TaskFileError, load_user_task

pytest.importorskip("tensorflow")
from server.models.backbone_head import export_int8_backbone  # noqa: E402
from server.models.sine_mlp import export_training_model  # noqa: E402


def with_model(folder: Path, model: str) -> Path:
    text = (folder / "task.toml").read_text()
    start, end = text.index("[model]"), text.index("[training]")
    (folder / "task.toml").write_text(text[:start] + "[model]\n" + model + "\n\n" + text[end:])
    return folder


def test_a_tflite_training_graph_is_the_devices_learner_and_theta_at_round_0(tmp_path: Path) -> None:
    folder = write_csv_task(tmp_path / "machines")
    trained = init_mlp_weights((5, 16, 3), seed=4)  # stands for the user's trained model
    export_training_model(folder / "model.tflite", layer_sizes=(5, 16, 3), weights=trained)
    task = load_user_task(with_model(folder, 'kind = "tflite"\npath = "model.tflite"'))
    assert task.layer_sizes == (5, 16, 3) and task.private_names == ("w1", "b1")
    assert all(np.array_equal(task.theta0(0)[k], trained[k]) for k in trained)  # read back from the graph: exact
    device = task.device(1, 0)
    assert isinstance(device.learner, TFLiteTrainer) and device.requirements.flash_bytes == device.learner.flash_bytes
    x, target = next(device.stream)
    assert target.tolist() in ([1, 0, 0], [0, 1, 0], [0, 0, 1])  # a class is its one-hot target for an MSE graph
    request = RoundRequest(round_id=0, shots=30, probe=10, learning_rate=0.05)
    reply = run_device_round(device, request, task.theta0(0), received_bytes=0)
    assert reply.num_examples == 30 and reply.weights.keys() == trained.keys()
    assert reply.metrics[keys.LOSS_AFTER] < reply.metrics[keys.LOSS_BEFORE]  # 30 steps on the machine's rows help
    private = task.firmware_init(1)
    assert not private["w1"].any() and np.array_equal(private["w0"], trained["w0"])
    # a TinyMetaFed round in the interpreter: the output layer rebuilt from the firmware's zeros, Top-P of the rest
    metafed = RoundRequest(round_id=1, shots=20, probe=5, learning_rate=0.05, private_names=task.private_names,
                           reconstruction_samples=10, reconstruction_lr=0.1, top_p=0.25)  # fmt: skip
    shared = {k: v for k, v in task.theta0(0).items() if k not in task.private_names}
    reply = run_device_round(task.device(1, 1), metafed, shared, received_bytes=0, private_init=private)
    assert set(reply.sparse_delta) == {"w0", "b0"} and np.isfinite(reply.metrics[keys.RECONSTRUCTION_LOSS])


def test_an_int8_backbone_with_a_head_federates_the_head(tmp_path: Path) -> None:
    folder = write_csv_task(tmp_path / "machines")
    weights = init_mlp_weights((5, 24, 24, 3), seed=2)
    calibration = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)  # standardised features: ~N(0, 1)
    export_int8_backbone(weights, folder / "backbone.tflite", calibration, n_layers=3)
    task = load_user_task(with_model(folder, 'kind = "backbone"\npath = "backbone.tflite"\nhead_size = 3'))
    assert task.layer_sizes == (5, 24, 3) and task.private_names == ()
    assert task.theta0(0).keys() == {"head_w", "head_b"}
    device = task.device(0, 0)
    assert isinstance(device.learner, BackboneHeadLearner) and device.learner.backbone.quantized
    request = RoundRequest(round_id=0, shots=40, probe=10, learning_rate=0.1)
    reply = run_device_round(device, request, task.theta0(0), received_bytes=0)
    assert reply.weights.keys() == {"head_w", "head_b"} and reply.metrics[keys.LOSS_AFTER] < reply.metrics[keys.LOSS_BEFORE]
    with pytest.raises(TaskFileError, match=r"head_size is 4 but the data has 3 labels"):
        load_user_task(with_model(folder, 'kind = "backbone"\npath = "backbone.tflite"\nhead_size = 4'))


def test_a_model_that_does_not_match_the_data_is_refused(tmp_path: Path) -> None:
    folder = write_csv_task(tmp_path / "machines")
    export_training_model(folder / "wide.tflite", layer_sizes=(7, 8, 3))
    with pytest.raises(TaskFileError, match=r"wide.tflite maps 7 inputs to 3 outputs; the data has 5 features and 3 labels"):
        load_user_task(with_model(folder, 'kind = "tflite"\npath = "wide.tflite"'))
    (folder / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(TaskFileError, match=r"task.toml: \[model\] .*junk.tflite"):
        load_user_task(with_model(folder, 'kind = "tflite"\npath = "junk.tflite"'))
