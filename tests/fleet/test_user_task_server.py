"""A user's own task end to end, as the README tells a user to run it: the shipped example is written by its
generator, `tinyfleet server --local-broker --fleet 4 --task FOLDER --strategy tinymetafed` federates it, and
`tinyfleet fleet run --accounts W/accounts.json` (no --task: the accounts file says it) plays the four machines
until the federation ends; both exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def end(process: subprocess.Popen) -> None:
    """SIGTERM the process group (the server stops its mosquitto itself), then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=wait_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def test_the_shipped_example_federates_through_server_and_fleet_run(tmp_path: Path) -> None:
    folder, work = tmp_path / "machines", tmp_path / "W"
    made = subprocess.run(command("firmware_sim.tasks.example_task", "--out", str(folder)), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0 and (folder / "task.toml").is_file(), made.stderr
    started: list[subprocess.Popen] = []
    try:
        server = spawn(command("server.cli", "server", "--local-broker", "--fleet", "4", "--task", str(folder),
                               "--strategy", "tinymetafed", "--rounds", "2", "--clients-per-round", "4",
                               "--workdir", str(work)), tmp_path / "server.log")  # fmt: skip
        started.append(server)
        deadline = time.monotonic() + 60
        while not (work / "accounts.json").exists():
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        time.sleep(0.1)  # written in one call; let it land
        started.append(spawn(command("server.cli", "fleet", "run", "--accounts", str(work / "accounts.json"),
                                     "--duration", "120"), tmp_path / "fleet.log"))  # fmt: skip
        for process in started:
            process.wait(timeout=150)
    finally:
        for process in reversed(started):
            end(process)
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert [p.returncode for p in started] == [0, 0], logs
    assert "round 2/2" in logs["server.log"], logs["server.log"]
    assert "4 simulated machines devices online" in logs["fleet.log"], logs["fleet.log"]
    assert "4 devices, 8 device-rounds done" in logs["fleet.log"], logs["fleet.log"]


def test_a_task_folder_s_method_table_sets_the_server_s_defaults(tmp_path: Path) -> None:
    """`[method]` in task.toml overrides the server's method for that task; a key that is not a method setting is
    refused naming it."""
    from firmware_sim.user_task import load_user_task
    from server.core.tasks import task_settings

    folder = tmp_path / "machines"
    made = subprocess.run(command("firmware_sim.tasks.example_task", "--out", str(folder)), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    text = (folder / "task.toml").read_text()
    (folder / "task.toml").write_text(text + "\n[method]\nmeta_samples_per_round = 30\ntop_p = 0.5\n")
    task = load_user_task(folder)
    settings = task_settings(task.name, "tinymetafed")
    assert settings.metafed.top_p == 0.5 and settings.device.task == task.name
    assert settings.device.stream_samples == 30 - settings.metafed.reconstruction_samples
    assert settings.device.inner_learning_rate == 0.05  # the task's own rate

    bad = tmp_path / "bad"
    subprocess.run(command("firmware_sim.tasks.example_task", "--out", str(bad)), cwd=ROOT, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    toml = (bad / "task.toml").read_text().replace('name = "machines"', 'name = "machines2"')
    (bad / "task.toml").write_text(toml + "\n[method]\nsamples = 3\n")
    with pytest.raises(ValueError, match=r"\[method\] keys \['samples'\]"):
        task_settings(load_user_task(bad).name, "tinymetafed")
