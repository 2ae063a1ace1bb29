"""`tinyfleet server --local-broker` and two `tinyfleet device run --accounts` devices federate over MQTT;
bad command lines are refused with a clear message."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from process_tree import spawn, terminate_tree
from typer.testing import CliRunner

from server.core.checkpoint import Checkpointer
from server.cli import app
from server.core.federation import FederationSettings, initial_weights
from server.transports.flower_deploy import APP_DIR, format_run_config, flower_env
from server.core.run_config import known_keys, settings_from_run_config
from server.serve import parse_run_config_items


def tinyfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def wait_for_accounts(server: subprocess.Popen, work: Path, log: Path, timeout_s: float = 15.0) -> None:
    """The server writes accounts.json once its broker is up; devices need it to log in."""
    deadline = time.monotonic() + timeout_s
    while not (work / "accounts.json").exists():
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no accounts.json from the server"
        time.sleep(0.05)


def test_server_with_a_local_broker_and_two_linux_devices_over_mqtt(tmp_path: Path) -> None:
    env = flower_env()
    work, ckpt = tmp_path / "server", tmp_path / "ckpt"
    started: list[subprocess.Popen] = []
    try:
        server = spawn(tinyfleet("server", "--strategy", "tinymetafed", "--local-broker", "--fleet", "2", "--workdir", str(work), "--rounds", "2",
                                 "--clients-per-round", "2", "--checkpoint-dir", str(ckpt), "--node-timeout", "20",
                                 "--round-timeout", "10"), env, tmp_path / "server.log")  # fmt: skip
        started.append(server)
        wait_for_accounts(server, work, tmp_path / "server.log")
        time.sleep(0.1)  # written in one call; let it land
        for i in range(2):
            started.append(spawn(tinyfleet("device", "run", "--accounts", str(work / "accounts.json"), "--id",
                                           f"sine-{i}", "--rounds", "2", "--duration", "40"),
                                 env, tmp_path / f"device-{i}.log"))  # fmt: skip
        for process in started:
            process.wait(timeout=45)
    finally:
        for process in reversed(started):
            terminate_tree(process)
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert [p.returncode for p in started] == [0, 0, 0], logs
    assert "2 round(s) done" in logs["device-0.log"] and "2 round(s) done" in logs["device-1.log"]
    final = Checkpointer(ckpt).load_latest()
    assert final.server_round == 2 and final.meta["strategy"] == "tinymetafed"
    init = initial_weights(FederationSettings())
    assert not np.array_equal(final.weights["w1"], init["w1"])
    np.testing.assert_array_equal(final.weights["w2"], init["w2"])
    assert final.meta["metrics"]["clients"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["server", "-c", "num-round=3"], "unknown run config key 'num-round'"),
        (["server", "--strategy", "tinymetafed", "-c", "top-p=2.0", "--local-broker", "--fleet", "1"], "top_p is the kept fraction"),
        (["server", "--local-broker"], "--fleet N"),
        (["server", "--superlink", "nohost"], "HOST:PORT"),
        (["device", "run", "--mqtt", "127.0.0.1:1883"], "--id"),
        (["device", "run", "--superlink", "127.0.0.1:9"], "--partition-id"),
        (["device", "run", "--mqtt", "127.0.0.1:1883", "--id", "pi-kitchen", "--password", "x"], "<task>-<number>"),
    ],
)
def test_bad_command_lines_are_refused_with_the_reason(monkeypatch, tmp_path, args, message):
    from server import cli

    monkeypatch.setattr(cli.console, "width", 300)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_flower_app_config_table_is_a_valid_run_config():
    config = tomllib.loads((APP_DIR / "pyproject.toml").read_text())
    table = config["tool"]["flwr"]["app"]["config"]
    assert set(table) == known_keys()  # flwr run refuses to override a key the table lacks
    assert settings_from_run_config(table) == FederationSettings()  # the table is the dataclasses' defaults
    assert config["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "server.transports.flower_server_app:app", "clientapp": "firmware_sim.client_app:app",
    }


def test_run_config_items_are_typed_like_toml_and_round_trip_to_flwr():
    items = parse_run_config_items(["num-rounds=3", "top-p=0.2", "anneal=cosine", 'private-names="w2,b2"'])
    assert items == {"num-rounds": 3, "top-p": 0.2, "anneal": "cosine", "private-names": "w2,b2"}
    assert format_run_config(items) == 'num-rounds=3 top-p=0.2 anneal="cosine" private-names="w2,b2"'
    with pytest.raises(ValueError, match="must be a int"):
        settings_from_run_config({"num-rounds": 2.5})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_run_config_items(["num-rounds"])


def test_server_drives_a_simulated_fleet_started_from_the_cli(tmp_path: Path) -> None:
    env = flower_env()
    work, ckpt = tmp_path / "server", tmp_path / "ckpt"
    started: list[subprocess.Popen] = []
    try:
        server = spawn(tinyfleet("server", "--local-broker", "--fleet", "12", "--workdir", str(work), "--rounds", "2",
                                 "--clients-per-round", "10", "--checkpoint-dir", str(ckpt), "--node-timeout", "30",
                                 "--round-timeout", "15"), env, tmp_path / "server.log")  # fmt: skip
        started.append(server)
        wait_for_accounts(server, work, tmp_path / "server.log")
        time.sleep(0.1)
        fleet = spawn(tinyfleet("fleet", "run", "--accounts", str(work / "accounts.json"), "--duration", "60"),
                      env, tmp_path / "fleet.log")
        started.append(fleet)
        server.wait(timeout=60)
    finally:
        for process in reversed(started):
            terminate_tree(process)
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert server.returncode == 0, logs
    assert "12 simulated sine devices online" in logs["fleet.log"], logs
    final = Checkpointer(ckpt).load_latest()
    assert final.server_round == 2 and len(final.meta["metrics"]) > 0
