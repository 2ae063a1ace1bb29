"""Federations through Flower's real simulation engine (Ray): slow, kept tiny."""

import numpy as np
import pytest
from flwr.simulation import run_simulation

from edge import weights as W
from edge.wire import encoded_size
from firmware_sim.client_app import app as client_app
from server.core.checkpoint import Checkpointer
from server.core.federation import DeviceRoundConfig, FederationSettings, initial_weights, make_server_app
from server.strategies.tiny_reptile import TinyReptileConfig

pytestmark = pytest.mark.slow
BACKEND = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}


def simulate(settings: FederationSettings, n_devices: int = 2) -> list[tuple[int, dict]]:
    rounds: list[tuple[int, dict]] = []
    app = make_server_app(settings, on_round=lambda r, _w, m: rounds.append((r, m)))
    run_simulation(server_app=app, client_app=client_app, num_supernodes=n_devices, backend_config=BACKEND)
    return rounds


def test_tinyreptile_two_devices_two_rounds_then_resumes_from_checkpoint(tmp_path):
    settings = FederationSettings(
        strategy="tinyreptile",
        num_rounds=2,
        checkpoint_dir=str(tmp_path),
        reptile=TinyReptileConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant"),
        device=DeviceRoundConfig(stream_samples=8, probe_samples=4, inner_learning_rate=0.01),
    )
    rounds = simulate(settings)
    assert [r for r, _ in rounds] == [1, 2]
    metrics = rounds[-1][1]
    assert metrics["clients"] == 2 and metrics["samples-used"] == 16
    theta = initial_weights(settings)
    # bytes are the wire payloads': each device received the MODEL and sent an UPDATE naming it and its 5 metrics
    assert metrics["bytes-received"] == 2 * encoded_size(theta)
    names = dict.fromkeys(["loss-before", "loss-after", "prequential-loss", "device-time-s", "device-energy-j"], 0.0)
    assert metrics["bytes-sent"] == sum(encoded_size(theta, device_id=f"sine-{i}", metrics=names) for i in range(2))
    assert metrics["device-energy-j"] > 0 and np.isfinite(metrics["loss-after"])
    after_two = Checkpointer(tmp_path).load_latest()
    assert after_two.server_round == 2
    assert W.l2_distance(after_two.weights, initial_weights(settings)) > 0

    resumed = simulate(FederationSettings(**{**settings.__dict__, "num_rounds": 3}))
    assert [r for r, _ in resumed] == [3]  # rounds 1-2 are not redone
    after_three = Checkpointer(tmp_path).load_latest()
    assert after_three.server_round == 3
    assert W.l2_distance(after_three.weights, after_two.weights) > 0


def test_fedavg_baseline_runs_the_same_devices(tmp_path):
    settings = FederationSettings(
        strategy="fedavg",
        num_rounds=2,
        checkpoint_dir=str(tmp_path),
        fedavg_clients_per_round=2,
        device=DeviceRoundConfig(stream_samples=5, probe_samples=2, local_epochs=2),
    )
    rounds = simulate(settings)
    assert [r for r, _ in rounds] == [1, 2]
    assert rounds[-1][1]["samples-used"] == 5  # Flower averages client metrics, weighted by examples
    assert np.isfinite(rounds[-1][1]["loss-after"])
    assert Checkpointer(tmp_path).load_latest().meta["strategy"] == "fedavg"


def test_devices_train_through_the_tflite_interpreter_in_simulation(tmp_path):
    from server.models.sine_mlp import export_training_model

    model = export_training_model(tmp_path / "train.tflite")
    settings = FederationSettings(
        strategy="tinyreptile",
        num_rounds=1,
        checkpoint_dir=str(tmp_path / "ckpt"),
        reptile=TinyReptileConfig(clients_per_round=2, meta_step_size=1.0, anneal="constant"),
        device=DeviceRoundConfig(stream_samples=6, probe_samples=3, learner="tflite", model_path=str(model)),
    )
    rounds = simulate(settings)
    assert [r for r, _ in rounds] == [1] and rounds[0][1]["clients"] == 2
    assert np.isfinite(rounds[0][1]["loss-after"]) and np.isfinite(rounds[0][1]["prequential-loss"])
    assert W.l2_distance(Checkpointer(tmp_path / "ckpt").load_latest().weights, initial_weights(settings)) > 0
