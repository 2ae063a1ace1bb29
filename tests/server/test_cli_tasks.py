"""Every task over MQTT from the command line: `tinyfleet server --task T --local-broker --fleet 8` plus
`tinyfleet fleet run --accounts W/accounts.json` (which learns the task from the accounts' device ids) finish
two TinyMetaFed rounds, and both processes exit 0."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from process_tree import spawn, terminate_tree

from server.core.checkpoint import Checkpointer
from server.core.federation import initial_weights
from server.core.tasks import task_settings
from server.transports.flower_deploy import flower_env


def tinyfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def wait_for_accounts(server: subprocess.Popen, work: Path, log: Path, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no accounts.json from the server"
        try:
            return json.loads((work / "accounts.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or half written
            time.sleep(0.05)


@dataclass
class Federated:
    accounts: dict
    server_log: str
    fleet_log: str
    returncodes: list[int | None]


def federate(tmp_path: Path, server_args: list[str], fleet_args: list[str], timeout_s: float,
             before_fleet: Callable[[subprocess.Popen, Path], None] | None = None) -> Federated:
    """`tinyfleet server --local-broker SERVER_ARGS --workdir W`, then, once its accounts are written (and
    ``before_fleet(server, server_log)`` has run), `tinyfleet fleet run --accounts W/accounts.json FLEET_ARGS`;
    both waited for, and every process they started ended whatever happens."""
    env, work = {**flower_env(), "COLUMNS": "500"}, tmp_path / "work"  # wide: rich wraps nothing
    started: list[subprocess.Popen] = []
    try:
        server = spawn(tinyfleet("server", "--local-broker", *server_args, "--workdir", str(work)), env,
                       tmp_path / "server.log")  # fmt: skip
        started.append(server)
        accounts = wait_for_accounts(server, work, tmp_path / "server.log")
        if before_fleet is not None:
            before_fleet(server, tmp_path / "server.log")
        started.append(spawn(tinyfleet("fleet", "run", "--accounts", str(work / "accounts.json"), *fleet_args),
                             env, tmp_path / "fleet.log"))  # fmt: skip
        for process in started:
            process.wait(timeout=timeout_s)
    finally:
        for process in reversed(started):
            terminate_tree(process)
    return Federated(accounts, (tmp_path / "server.log").read_text(), (tmp_path / "fleet.log").read_text(),
                     [p.returncode for p in started])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("task", ["characters", "keywords", "presence"])
def test_a_task_federates_over_mqtt_with_a_simulated_fleet(tmp_path: Path, task: str) -> None:
    work = tmp_path / "work"
    run = federate(tmp_path, ["--fleet", "8", "--task", task, "--strategy", "tinymetafed", "--rounds", "2",
                              "--clients-per-round", "4", "--node-timeout", "60", "--round-timeout", "60"],
                   ["--duration", "170"], timeout_s=180)  # fmt: skip
    server_log, fleet_log = run.server_log, run.fleet_log
    assert run.accounts["task"] == task and sorted(run.accounts["devices"]) == sorted(f"{task}-{i}" for i in range(8))
    assert run.returncodes == [0, 0], server_log + fleet_log
    assert "round 2/2" in server_log, server_log
    assert "summary: round 2/2; 8 device-rounds" in server_log and f"--run {work}" in server_log, server_log
    assert f"8 simulated {task} devices online" in fleet_log and "the server's federation has ended" in fleet_log
    final = Checkpointer(work / "checkpoints").load_latest()
    expected = task_settings(task, "tinymetafed")
    assert final.server_round == 2 and final.meta["settings"]["device"]["task"] == task
    init = initial_weights(expected)
    assert final.weights["w0"].shape == init["w0"].shape == (expected.layer_sizes[0], expected.layer_sizes[1])
    shared = [name for name in init if name not in expected.metafed.private_names]
    # the shared part learned (Top-P keeps the largest entries of the whole update, so not every tensor moves)
    assert any(not np.array_equal(final.weights[name], init[name]) for name in shared)
    for name in expected.metafed.private_names:  # the output layer stays on the devices: θ keeps its init
        np.testing.assert_array_equal(final.weights[name], init[name])
    assert final.meta["metrics"]["clients"] == 4


def test_demo_and_bench_take_a_task(tmp_path: Path) -> None:
    """`tinyfleet demo --task presence` is that task's method comparison (the bench without its drift run)."""
    from typer.testing import CliRunner

    from server.cli import app

    result = CliRunner().invoke(app, ["demo", "--task", "presence", "--reptile-rounds", "2", "--train-devices", "6",
                                      "--unseen-devices", "2", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "presence.json").read_text())
    assert {row["method"] for row in report["adaptation"]} >= {"tinymetafed", "tinyreptile", "fedavg", "local-only", "from-scratch"}
    assert report["task"] == "presence" and set(report["training"]) == {"tinymetafed", "tinyreptile", "fedavg", "local-only"}
    refused = CliRunner().invoke(app, ["demo", "--task", "nope", "--out", str(tmp_path)])
    assert refused.exit_code == 2 and "unknown" in refused.output


def test_a_task_the_registry_cannot_describe_yet_is_refused_with_a_registry(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from server.cli import app

    result = CliRunner().invoke(app, ["server", "--task", "keywords", "--local-broker", "--fleet", "2",
                                      "--registry", str(tmp_path / "store"), "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert result.exit_code == 2 and "only the sine MLP" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "store").exists()  # refused before anything was created



@pytest.mark.slow
def test_fleet_run_puts_some_devices_under_qemu(tmp_path: Path) -> None:
    """`tinyfleet fleet run --accounts FILE --qemu 1`: the last device runs as C firmware under QEMU behind its own
    serial gateway, beside the simulated ones, and every round hears from all three."""
    run = federate(tmp_path, ["--fleet", "3", "--strategy", "tinymetafed", "--rounds", "2", "--clients-per-round", "3",
                              "--node-timeout", "90"],
                   ["--qemu", "1", "--qemu-dir", str(tmp_path / "qemu"), "--duration", "150"], timeout_s=160)  # fmt: skip
    server_log, fleet_log = run.server_log, run.fleet_log
    assert run.returncodes == [0, 0], server_log + fleet_log
    assert "under QEMU (mps2-an386), each behind its own serial gateway: sine-2" in fleet_log, fleet_log
    assert "round 1/2: 3 device(s)" in server_log and "round 2/2: 3 device(s)" in server_log, server_log
    assert "3 devices, 6 device-rounds done" in fleet_log, fleet_log


def test_server_serves_its_console_during_the_run(tmp_path: Path) -> None:
    """`tinyfleet server --console 0`: the console answers while the MQTT federation runs, and its rounds feed has
    the run's rounds; in Flower mode the option is refused with the reason."""
    import re
    import urllib.request

    def open_the_console(server: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"console on (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.1)
        with urllib.request.urlopen(found.group(1) + "/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()

    run = federate(tmp_path, ["--fleet", "2", "--rounds", "2", "--clients-per-round", "2", "--console", "0",
                              "--node-timeout", "60"], ["--duration", "90"], timeout_s=100,
                   before_fleet=open_the_console)  # fmt: skip
    assert run.returncodes == [0, 0] and "round 2/2" in run.server_log, run.server_log

    from typer.testing import CliRunner

    from server.cli import app

    refused = CliRunner().invoke(app, ["server", "--console", "0", "--workdir", str(tmp_path / "flower")])
    assert refused.exit_code == 2 and "MQTT federation" in " ".join(refused.output.split())
