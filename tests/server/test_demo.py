"""`tinyfleet demo` end to end at a tiny scale: the report's shape, the plot, the device models."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from server.experiments.demo import DemoConfig, run_demo
from server.core.federation import DeviceRoundConfig
from server.strategies.tiny_reptile import TinyReptileConfig

pytestmark = pytest.mark.slow


def tiny_demo(out_dir, **changes) -> DemoConfig:
    config = DemoConfig(
        n_train_devices=3,
        n_unseen_devices=4,
        reptile_rounds=2,
        reptile=TinyReptileConfig(clients_per_round=2, anneal="cosine", outer_momentum=0.9, nesterov=True,
                                  step_size_learning_rate=0.05, step_size_shots=2, step_size_query=3),
        reptile_device=DeviceRoundConfig(stream_samples=5, probe_samples=2),
        fedavg_rounds=2,
        fedavg_clients_per_round=2,
        fedavg_device=DeviceRoundConfig(stream_samples=4, probe_samples=2, local_epochs=2),
        out_dir=str(out_dir),
        lapsed_devices=2,
    )
    return replace(config, **changes)


def test_demo_writes_report_and_plot(tmp_path):
    config = tiny_demo(tmp_path)
    progress = []
    run_demo(config, lambda method, r, n, _m: progress.append((method, r, n)))
    assert progress == [("tinyreptile", 1, 2), ("tinyreptile", 2, 2), ("fedavg", 1, 2), ("fedavg", 2, 2)]

    report = json.loads((tmp_path / "report.json").read_text())
    rows = report["adaptation"]
    assert {(r["method"], r["shots"]) for r in rows} == {
        (m, k) for m in ("tinyreptile", "fedavg", "random", "tinyreptile-theta-only") for k in (1, 2, 5, 10, 20)
    }
    assert all(r["metric"] == "mse" and r["n_devices"] == 4 and math.isfinite(r["value"]) and r["value"] > 0 for r in rows)
    assert report["config"]["reptile_rounds"] == 2
    # the interpreter-run learner, with the learned step sizes inside the graph, reproduces the numpy one
    numpy_rows = {r["shots"]: r["value"] for r in rows if r["method"] == "tinyreptile"}
    tflite_rows = {r["shots"]: r["value"] for r in report["adaptation_on_device_learners"] if r["method"] == "tinyreptile/tflite-trainer"}
    assert tflite_rows == pytest.approx(numpy_rows, rel=1e-3)
    assert {r["method"]: r["step_sizes"] for r in report["adaptation_on_device_learners"]} == {
        "tinyreptile/tflite-trainer": True, "tinyreptile/int8-backbone+head": True}
    theta_only = {r["shots"]: r["value"] for r in rows if r["method"] == "tinyreptile-theta-only"}
    assert theta_only != numpy_rows  # two Adam steps moved the step sizes off one
    with np.load(report["step_sizes"]["file"]) as stored:
        assert set(stored.files) == {"w0", "b0", "w1", "b1", "w2", "b2"}
        assert all(np.all(stored[k] > 0) for k in stored.files)
    assert report["device_models"]["int8-backbone+head"]["fits"]["nano33ble"] == "fits"
    assert (tmp_path / "adaptation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    registry = report["registry"]  # SPARQL chose the fleet; every version is registered with its lineage
    assert registry["selected_devices"] == ["sine-0", "sine-1", "sine-2"]
    assert registry["excluded_devices"] == ["sine-3", "sine-4"]  # their leases lapsed
    assert registry["versions_registered"] == {"tinyreptile": 3, "fedavg": 3}
    newest = registry["lineage"]["tinyreptile"]["lineage_newest_first"]
    assert [row["number"] for row in newest] == ["2", "1", "0"]
    assert "sine-" in newest[0]["devices"] and "loss-after=" in newest[0]["metrics"]


def test_sine_meta_bench_selects_the_adaptation_rate_on_validation_devices_only():
    """bench/sine_meta.py --select-lr: the rate of the grid with the lowest MSE on validation devices 0…n-1."""
    import importlib.util
    from pathlib import Path

    from edge.mlp import init_mlp_weights
    from firmware_sim.meta_eval import unseen_device_mse

    path = Path(__file__).resolve().parents[2] / "bench" / "sine_meta.py"
    spec = importlib.util.spec_from_file_location("sine_meta_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    sizes = (1, 8, 8, 1)
    theta = init_mlp_weights(sizes, 3)
    # the slice scorer is the shared unseen-device scorer when it starts at the first validation device
    assert bench.validation_mse(theta, sizes, first=0, n_devices=3, shots=2, learning_rate=0.01) == pytest.approx(
        unseen_device_mse(theta, sizes, shots=2, learning_rate=0.01, n_devices=3)
    )
    grid = (0.001, 0.01, 0.03)
    rate, scores = bench.select_learning_rate(theta, sizes, grid, n_devices=3)
    assert set(scores) == {str(lr) for lr in grid}
    assert scores == {str(lr): bench.validation_mse(theta, sizes, first=0, n_devices=3, shots=5, learning_rate=lr) for lr in grid}
    assert rate == min(grid, key=lambda lr: scores[str(lr)])


def test_flowers_simulation_engine_and_the_in_process_grid_give_the_same_demo(tmp_path):
    """The demo trains on the in-process grid by default; Flower's engine (--engine flower) must learn the same."""
    reports = {}
    for engine in ("inprocess", "flower"):
        run_demo(tiny_demo(tmp_path / engine, engine=engine))
        reports[engine] = json.loads((tmp_path / engine / "report.json").read_text())
    values = {e: [(r["method"], r["shots"], r["value"]) for r in rep["adaptation"]] for e, rep in reports.items()}
    assert values["inprocess"] == values["flower"]  # one process each, the same calls: equal bit for bit
    assert reports["inprocess"]["step_sizes"]["multiplier_quantiles_5_50_95"] == \
        reports["flower"]["step_sizes"]["multiplier_quantiles_5_50_95"]
