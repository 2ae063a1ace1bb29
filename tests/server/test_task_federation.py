"""The TinyML task families through the federation: a tiny end-to-end run per task, and the real simulation engine.

The benchmark drives the strategies over :class:`server.transports.inprocess_grid.InProcessGrid`;
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
from server.experiments.drift_curves import DriftConfig, online_step
from server.core.federation import run_federation
from server.transports.inprocess_grid import InProcessGrid
from server.core.checkpoint import Checkpointer
from server.experiments.task_bench import (
    CONTROLS,
    LR_GRID,
    METHODS,
    STEP_SIZE_FIELDS,
    TRAINING_SUMMARY,
    TaskBenchConfig,
    _comparable,
    adapted_learner,
    evaluate,
    federation_settings,
    train_federated,
)
from server.experiments.task_report import run_task_bench

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
    assert {(r["method"], r["shots"]) for r in rows} == {(m, k) for m in (*METHODS, *CONTROLS) for k in (1, 2)}
    assert all(0.0 <= r["value"] <= 1.0 and r["n_devices"] == 2 for r in rows)
    assert all(len(r["per_device"]) == 2 and np.isclose(np.mean(r["per_device"]), r["value"]) for r in rows)
    training = written["training"]
    assert set(training) == {"tinymetafed", "tinyreptile", "fedavg", "local-only"}
    metafed, reptile = training["tinymetafed"]["per_device_round"], training["tinyreptile"]["per_device_round"]
    assert 0 < metafed["bytes_up"] < reptile["bytes_up"] / 2  # Top-25 % of the shared part only
    assert metafed["bytes_down"] < reptile["bytes_down"]  # the output layer never travels
    alone = training["local-only"]["per_device_round"]
    assert alone["bytes_up"] == alone["bytes_down"] == 0.0  # booked so by the device itself, not zeroed afterwards
    # the same SGD steps per round as a TinyReptile device, minus the radio: less time and energy
    assert alone["device_time_s"] < reptile["device_time_s"] and alone["device_energy_j"] < reptile["device_energy_j"]
    assert all(t["per_device_round"]["device_time_s"] > 0 and t["per_device_round"]["device_energy_j"] > 0 for t in training.values())
    assert all(t["totals"]["device_rounds"] == 2 * (1 if m == "local-only" else 2) for m, t in training.items())
    model = written["model"]
    assert model["fits"] and model["ram_bytes"]["total"] <= model["profile_usable_ram_bytes"]
    drift = written["drift"]
    assert len(drift["online"]) == len(drift["frozen"]) == 4 and drift["window_end"][-1] == 40
    assert report["adaptation"] == rows


def test_fedavg_rebuilt_head_is_fedavgs_theta_with_the_firmware_output_layer_rebuilt_as_metafed_does(tmp_path):
    config = TaskBenchConfig(task="characters", out_dir=str(tmp_path), **TINY)
    family = task_family("characters")
    control = "fedavg-rebuilt-head"
    report = run_task_bench(config, methods=("tinymetafed", "fedavg"))

    rows = {(r["method"], r["shots"]): r for r in report["adaptation"]}
    assert {m for m, _ in rows} == {"tinymetafed", "fedavg", control}
    for k in config.shots:  # scored on the same devices as the others
        assert rows[(control, k)]["n_devices"] == rows[("fedavg", k)]["n_devices"] == config.n_eval_devices
    # no training of its own: the JSON points at FedAvg's instead of repeating its costs
    assert set(report["training"]) == {"tinymetafed", "fedavg"}
    assert report["controls"] == {control: {"weights_from": "fedavg", "note": report["controls"][control]["note"]}}
    assert "no training of its own" in report["controls"][control]["note"]
    # its rule is the best of the whole grid, or imprinting, on validation devices, as for every method
    selection = report["adaptation_lr_selection"]
    tried = {(r["rule"], r["learning_rate"]): r["value"] for r in selection if r["method"] == control}
    assert list(tried) == [*(("sgd", rate) for rate in LR_GRID), ("imprint", None)]
    assert {r["rule"] for r in selection if r["method"] == "fedavg"} == {"sgd"}  # FedAvg's device keeps its layer
    chosen = report["adaptation_lr"][control]
    assert tried[("imprint", None) if chosen == "imprint" else ("sgd", chosen)] == max(tried.values())

    fedavg_theta = Checkpointer(tmp_path / "characters-work" / "checkpoints" / "fedavg").load_latest().weights
    # every value is TinyMetaFed's new-device rule applied to FedAvg's θ on the very same episodes
    if chosen == "imprint":
        as_metafed = replace(config, imprinting=("tinymetafed",))
    else:
        as_metafed = replace(config, adaptation_lr=(("tinymetafed", chosen),))
    for expected in evaluate(as_metafed, family, {"tinymetafed": fedavg_theta}):
        assert rows[(control, expected["shots"])]["per_device"] == expected["per_device"]

    rate = 0.01  # the SGD rule, whichever was chosen above
    device = config.eval_device_base
    episode = family.episode(device, 2, config.n_query)
    scored = replace(config, adaptation_lr=((control, rate),))
    adapted = adapted_learner(scored, family, control, fedavg_theta, device, episode).get_weights()
    for name, value in fedavg_theta.items():
        if name in family.private_names:
            assert not np.array_equal(adapted[name], value)  # rebuilt on the shots
        else:
            np.testing.assert_array_equal(adapted[name], value)  # FedAvg's hidden layers, frozen
    # FedAvg's output layer plays no part ...
    scrambled = {**fedavg_theta, **{name: fedavg_theta[name] + 1.0 for name in family.private_names}}
    again = adapted_learner(scored, family, control, scrambled, device, episode).get_weights()
    for name, value in adapted.items():
        np.testing.assert_array_equal(again[name], value)
    # ... the device starts from its firmware's zero output layer (a vanishing rate leaves it there)
    frozen = replace(config, adaptation_lr=((control, 1e-30),))
    start = adapted_learner(frozen, family, control, fedavg_theta, device, episode).get_weights()
    for name in family.private_names:
        assert np.abs(start[name]).max() < 1e-20 and np.abs(fedavg_theta[name]).max() > 1e-3


def test_imprinting_writes_the_output_layer_from_class_means_on_the_installed_hidden_layers():
    config = TaskBenchConfig(task="characters", **TINY)
    family = task_family("characters")
    device = config.eval_device_base
    episode = family.episode(device, 3, config.n_query)
    theta = {k: v + 0.01 for k, v in firmware_init(family, 7).items()}  # any trained θ
    firmware = firmware_init(family, device)
    for method, hidden_from in (("fedavg-rebuilt-head", theta), ("from-scratch-rebuilt-head", firmware)):
        imprinting = replace(config, imprinting=(method,))
        adapted = adapted_learner(imprinting, family, method, theta, device, episode).get_weights()
        for name, value in hidden_from.items():
            if name not in family.private_names:
                np.testing.assert_array_equal(adapted[name], value)
        w, b = (adapted[name] for name in family.private_names)
        np.testing.assert_allclose(b, -0.5 * (w**2).sum(axis=0), rtol=1e-5)  # w_c = μ_c, b_c = −½‖μ_c‖²
        assert np.abs(w).sum() > 0
    for whole_model in ("fedavg", "from-scratch"):  # they train every weight, their output layer included
        with pytest.raises(ValueError, match="do not start an output layer"):
            replace(config, imprinting=(whole_model,))


def test_controls_can_be_left_out(tmp_path):
    config = TaskBenchConfig(task="presence", out_dir=str(tmp_path), controls=False, select_lr=False, **TINY)
    report = run_task_bench(config, methods=("fedavg",))
    assert {r["method"] for r in report["adaptation"]} == {"fedavg"} and report["controls"] == {}


def test_a_run_recorded_before_the_step_size_fields_existed_is_reused_while_step_sizes_are_off(tmp_path):
    config = TaskBenchConfig(task="presence", out_dir=str(tmp_path), **TINY)
    family = task_family("presence")
    first = train_federated(config, family, "tinyreptile", tmp_path / "w")
    summary_path = tmp_path / "w" / "checkpoints" / "tinyreptile" / TRAINING_SUMMARY
    summary = json.loads(summary_path.read_text())
    assert summary["settings"]["reptile"]["step_size_learning_rate"] == 0.0
    for name in STEP_SIZE_FIELDS:  # as a run before Meta-SGD recorded it
        del summary["settings"]["reptile"][name]
    summary["wall_s"] = 12345.0  # marks the recorded run
    summary_path.write_text(json.dumps(summary))

    reused = train_federated(replace(config, reuse_training=True), family, "tinyreptile", tmp_path / "w")
    assert reused.wall_s == 12345.0
    for name, value in first.weights.items():
        np.testing.assert_array_equal(reused.weights[name], value)
    # with step-size learning on, the fields matter and such a run is not the same run
    learning = {**summary["settings"], "reptile": {**summary["settings"]["reptile"], "step_size_learning_rate": 0.01}}
    learning["reptile"].update({name: 1 for name in STEP_SIZE_FIELDS[1:]})
    assert _comparable(learning) != _comparable(summary["settings"])
    # and any other change of settings trains again
    other = train_federated(replace(config, reuse_training=True, meta_samples_per_round=9), family, "tinyreptile", tmp_path / "w")
    assert other.wall_s != 12345.0


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

    from server.core.checkpoint import Checkpointer
    from server.core.federation import make_server_app

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


def test_an_imprinted_device_keeps_learning_by_moving_its_class_means_and_freezes_its_hidden_layers():
    config = TaskBenchConfig(task="presence", **TINY)
    family = task_family("presence")
    device = config.eval_device_base
    episode = family.episode(device, 3, config.n_query)
    theta = firmware_init(family, 11)
    imprinting = replace(config, imprinting=("fedavg-rebuilt-head",))
    learner = adapted_learner(imprinting, family, "fedavg-rebuilt-head", theta, device, episode)
    before = learner.get_weights()
    x, y = next(family.drifting(device, 0))
    online_step(imprinting, family, "fedavg-rebuilt-head", learner, episode)(x, y)
    after = learner.get_weights()
    w = family.private_names[0]
    moved = [c for c in range(family.n_way) if not np.array_equal(after[w][:, c], before[w][:, c])]
    assert moved == [int(y)]  # only the sample's class column, by the family's rate (3 shots: 1/4 > 0.05)
    for name, value in before.items():
        if name not in family.private_names:
            np.testing.assert_array_equal(after[name], value)
    sgd = adapted_learner(config, family, "fedavg", theta, device, episode)
    weights = sgd.get_weights()
    online_step(config, family, "fedavg", sgd, episode)(x, y)
    assert not np.array_equal(sgd.get_weights()["w0"], weights["w0"])  # every weight, by cross-entropy SGD


def test_a_tinymetafed_run_recorded_before_the_reconstruction_rule_existed_is_reused_while_it_is_sgd(tmp_path):
    config = TaskBenchConfig(task="presence", out_dir=str(tmp_path), **TINY)
    family = task_family("presence")
    settings = federation_settings(config, family, "tinymetafed", tmp_path / "c").as_dict()
    old = json.loads(json.dumps(settings))
    del old["metafed"]["reconstruction_rule"]  # as a run recorded before the field existed
    assert _comparable(old) == _comparable(json.loads(json.dumps(settings)))
    imprinting = federation_settings(replace(config, reconstruction_rule="imprint"), family, "tinymetafed", tmp_path / "c")
    assert _comparable(old) != _comparable(json.loads(json.dumps(imprinting.as_dict())))
