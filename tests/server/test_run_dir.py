"""A workdir holds one run: a second start is refused unless told --resume or --fresh, and every round is recorded."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from process_tree import spawn, terminate_tree
from test_cli_fleet import tinyfleet, wait_for_accounts

from server.core.checkpoint import Checkpointer
from server.core.round_loop import RoundReport
from server.core.run_dir import RoundsLog, check_rounds_left, prepare_run, read_rounds, round_line
from server.transports.flower_deploy import flower_env


def checkpoint_at(directory: Path, server_round: int) -> None:
    Checkpointer(directory).save(server_round, {"w": np.zeros(2, np.float32)}, {"strategy": "tinyreptile"}, None)


def test_checkpoints_go_under_the_workdir_unless_named(tmp_path):
    assert prepare_run(tmp_path, {}, resume=False, fresh=False)["checkpoint-dir"] == str((tmp_path / "checkpoints").resolve())
    named = str(tmp_path / "elsewhere")
    assert prepare_run(tmp_path, {"checkpoint-dir": named}, resume=False, fresh=False)["checkpoint-dir"] == named


def test_a_workdir_with_a_run_is_refused_without_resume_or_fresh(tmp_path):
    checkpoint_at(tmp_path / "checkpoints", 3)
    with pytest.raises(ValueError, match=r"round 3 .*--resume.*--fresh"):
        prepare_run(tmp_path, {}, resume=False, fresh=False)
    assert prepare_run(tmp_path, {}, resume=True, fresh=False)  # continues: the checkpoint stays
    assert Checkpointer(tmp_path / "checkpoints").load_latest().server_round == 3
    (tmp_path / "rounds.jsonl").write_text("{}\n")
    prepare_run(tmp_path, {}, resume=False, fresh=True)  # starts over: the old run is gone
    assert Checkpointer(tmp_path / "checkpoints").load_latest() is None and not (tmp_path / "rounds.jsonl").exists()


def test_resume_needs_a_run_and_both_flags_at_once_are_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no checkpoint"):
        prepare_run(tmp_path, {}, resume=True, fresh=False)
    with pytest.raises(ValueError, match="choose one"):
        prepare_run(tmp_path, {}, resume=True, fresh=True)


def test_a_finished_run_is_never_resumed_silently_into_zero_rounds(tmp_path):
    checkpoint_at(tmp_path, 5)
    with pytest.raises(ValueError, match="already at round 5 of 5: nothing to do"):
        check_rounds_left(tmp_path, 5)
    check_rounds_left(tmp_path, 6)


def test_every_round_is_appended_to_rounds_jsonl_and_shown_in_one_line(tmp_path):
    log = RoundsLog(tmp_path / "rounds.jsonl")
    for r in (1, 2):
        log(RoundReport(r, {}, {"loss-before": 2.0, "loss-after": 1.5, "bytes-sent": 1234.0, "meta-step-size": 0.8},
                        participant_devices=("d1", "d2"), replies=2))  # fmt: skip
    records = read_rounds(tmp_path / "rounds.jsonl")
    assert [r["round"] for r in records] == [1, 2] and records[0]["participants"] == ["d1", "d2"]
    line = round_line(records[1], 2)
    assert line.startswith("round 2/2: 2 device(s), loss 2.0000 → 1.5000, bytes up 1,234") and "ε 0.800" in line


def run_server(work: Path, log: Path, *extra: str) -> subprocess.Popen:
    return spawn(tinyfleet("server", "--local-broker", "--fleet", "2", "--workdir", str(work), "--clients-per-round", "2",
                           "--node-timeout", "20", "--round-timeout", "10", *extra), flower_env(), log)  # fmt: skip


def federate(work: Path, tmp_path: Path, name: str, rounds: int, *extra: str) -> str:
    """One server run in ``work`` with two devices; the server's output."""
    log = tmp_path / f"{name}.log"
    (work / "accounts.json").unlink(missing_ok=True)  # the server removes it too, but only once it has started
    started = [run_server(work, log, "--rounds", str(rounds), *extra)]
    try:
        wait_for_accounts(started[0], work, log)
        time.sleep(0.1)
        for i in range(2):
            started.append(spawn(tinyfleet("device", "run", "--accounts", str(work / "accounts.json"), "--id", f"sine-{i}",
                                           "--duration", "40"), flower_env(), tmp_path / f"{name}-device-{i}.log"))  # fmt: skip
        started[0].wait(timeout=60)
        for device in started[1:]:  # the server's "finished" lets the devices leave on their own, long before 40 s
            device.wait(timeout=15)
    finally:
        for process in reversed(started):
            terminate_tree(process)
    assert started[0].returncode == 0, log.read_text()
    for i in range(2):
        device_log = (tmp_path / f"{name}-device-{i}.log").read_text()
        assert started[1 + i].returncode == 0 and "federation has ended" in device_log, device_log
    return log.read_text()


def test_a_second_run_in_the_same_workdir_is_refused_then_resumed(tmp_path):
    work = tmp_path / "server"
    first = federate(work, tmp_path, "first", 1)
    assert "round 1/1: 2 device(s)" in first and (work / "checkpoints").is_dir()

    again = subprocess.run(tinyfleet("server", "--local-broker", "--fleet", "2", "--workdir", str(work), "--rounds", "2"),
                           capture_output=True, text=True, timeout=60, env=flower_env())  # fmt: skip
    assert again.returncode == 2 and "--resume" in again.stdout and "--fresh" in again.stdout, again.stdout
    assert not (work / "broker" / "passwords.new").exists()

    # resuming starts a new broker (a fresh config, new ports) and does the one round left
    second = federate(work, tmp_path, "second", 2, "--resume")
    assert "round 2/2: 2 device(s)" in second and "round 1/" not in second
    assert [r["round"] for r in read_rounds(work / "rounds.jsonl")] == [1, 2]
    assert Checkpointer(work / "checkpoints").load_latest().server_round == 2
    assert json.loads((work / "rounds.jsonl").read_text().splitlines()[-1])["replies"] == 2
