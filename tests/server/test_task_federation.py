"""The TinyML task families through the federation: a tiny end-to-end run per task, and the real simulation engine.

The benchmark drives the strategies over :class:`server.inprocess_grid.InProcessGrid`;
the last test runs the same ClientApp and ServerApp under Flower's simulation
engine (Ray) and checks both transports produce the same meta-model.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edge import record_keys as keys
from firmware_sim.task_client_app import firmware_init, make_task_client_app
from firmware_sim.task_families import task_family
from firmware_sim.tasks.espeak import espeak_available
from server.drift_curves import DriftConfig
from server.federation import run_federation
from server.inprocess_grid import InProcessGrid
from server.task_bench import METHODS, TaskBenchConfig, federation_settings
from server.task_report import run_task_bench

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (apt-get install espeak-ng)")
TINY = dict(
    n_train_devices=4, n_eval_devices=2, shots=(1, 2), rounds=2, meta_clients_per_round=2, meta_samples_per_round=10,
    reconstruction_samples=4, fedavg_clients_per_round=2, fedavg_samples=6, fedavg_epochs=2,
)  # fmt: skip
TINY_DRIFT = DriftConfig(n_devices=1, samples=40, drift_start=10, window=10)


@pytest.mark.parametrize("task", ["characters", "presence", pytest.param("keywords", marks=needs_espeak)])
def test_every_method_runs_end_to_end_and_the_report_says_what_it_cost(task, tmp_path):
    config = TaskBenchConfig(task=task, out_dir=str(tmp_path), **TINY)
    report = run_task_bench(config, drift=TINY_DRIFT)

    written = json.loads((tmp_path / f"{task}.json").read_text())
    assert written["task"] == task and (tmp_path / f"{task}.png").stat().st_size > 0
    rows = written["adaptation"]
    assert {(r["method"], r["shots"]) for r in rows} == {(m, k) for m in METHODS for k in (1, 2)}
    assert all(0.0 <= r["value"] <= 1.0 and r["n_devices"] == 2 for r in rows)
    training = written["training"]
    assert set(training) == {"tinymetafed", "tinyreptile", "fedavg", "local-only"}
    metafed, reptile = training["tinymetafed"]["per_device_round"], training["tinyreptile"]["per_device_round"]
    assert 0 < metafed["bytes_up"] < reptile["bytes_up"] / 2  # Top-25 % of the shared part only
    assert metafed["bytes_down"] < reptile["bytes_down"]  # the output layer never travels
    assert training["local-only"]["per_device_round"]["bytes_up"] == 0.0
    assert all(t["per_device_round"]["device_time_s"] > 0 and t["per_device_round"]["device_energy_j"] > 0 for t in training.values())
    assert all(t["totals"]["device_rounds"] == 2 * (1 if m == "local-only" else 2) for m, t in training.items())
    model = written["model"]
    assert model["fits"] and model["ram_bytes"]["total"] <= model["profile_usable_ram_bytes"]
    drift = written["drift"]
    assert len(drift["online"]) == len(drift["frozen"]) == 4 and drift["window_end"][-1] == 40
    assert report["adaptation"] == rows


def test_the_benchmark_refuses_settings_it_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="cannot fill rounds"):
        TaskBenchConfig(task="presence", n_train_devices=3, meta_clients_per_round=5)
    with pytest.raises(ValueError, match="is not a method and a rate"):
        TaskBenchConfig(task="presence", adaptation_lr=(("magic", 0.1),))
    with pytest.raises(ValueError, match="is not a method and a rate"):
        TaskBenchConfig(task="presence", adaptation_lr=(("fedavg", 0.0),))
    with pytest.raises(ValueError, match="unknown methods"):
        run_task_bench(TaskBenchConfig(task="presence", out_dir=str(tmp_path), **TINY), methods=["tinymetafed", "magic"])
    with pytest.raises(ValueError, match="unknown task"):
        run_task_bench(TaskBenchConfig(task="weather", out_dir=str(tmp_path), **TINY))


def test_a_metafed_device_keeps_its_output_layer_and_starts_it_empty():
    family = task_family("presence")
    init = firmware_init(family, 7)
    for name in family.private_names:
        assert not init[name].any()
    assert all(init[name].any() for name in init if name.startswith("w") and name not in family.private_names)


@pytest.mark.slow
def test_flower_simulation_and_the_in_process_grid_learn_the_same_meta_model(tmp_path):
    from flwr.simulation import run_simulation

    from server.checkpoint import Checkpointer
    from server.federation import make_server_app

    config = TaskBenchConfig(task="characters", **TINY)
    family = task_family("characters")
    # Ray workers start (and import TensorFlow) while the server waits for the first replies
    simulated = replace(federation_settings(config, family, "tinymetafed", tmp_path / "sim"), node_timeout_s=120.0)
    run_simulation(
        server_app=make_server_app(simulated),
        client_app=make_task_client_app("characters"),
        num_supernodes=config.n_train_devices,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    in_process = federation_settings(config, family, "tinymetafed", tmp_path / "local")
    run_federation(InProcessGrid(make_task_client_app("characters"), config.n_train_devices), in_process)

    a = Checkpointer(simulated.checkpoint_dir).load_latest()
    b = Checkpointer(in_process.checkpoint_dir).load_latest()
    assert a.server_round == b.server_round == config.rounds
    assert a.meta["metrics"][keys.SAMPLES_USED] == b.meta["metrics"][keys.SAMPLES_USED] > 0
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])
