"""End to end on localhost: `tinyfleet server` starts a real SuperLink and submits the Flower App with
`flwr run`; two `tinyfleet device run --superlink` start real SuperNodes; TinyMetaFed runs 3 rounds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from server.broker import free_port
from server.checkpoint import Checkpointer
from server.federation import FederationSettings, initial_weights
from server.flower_deploy import flower_env
from process_tree import spawn, terminate_tree

pytestmark = pytest.mark.slow
ROUNDS = 3


def tinyfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def test_two_supernodes_run_a_tinymetafed_federation_submitted_with_flwr_run(tmp_path: Path) -> None:
    env = flower_env(tmp_path / "flwr")  # FLWR_HOME in tmp_path; no telemetry, no update check
    port = free_port()
    ckpt = tmp_path / "ckpt"
    started: list[subprocess.Popen] = []
    try:
        server = spawn(
            tinyfleet("server", "--port", str(port), "--workdir", str(tmp_path / "server"), "--rounds", str(ROUNDS),
                      "--strategy", "tinymetafed", "--clients-per-round", "2", "--top-p", "0.1",
                      "--checkpoint-dir", str(ckpt), "--node-timeout", "60", "--run-timeout", "75",
                      "-c", "stream-samples=8", "-c", "probe-samples=4"),
            env, tmp_path / "server.log",
        )  # fmt: skip
        started.append(server)
        for partition in range(2):
            started.append(spawn(
                tinyfleet("device", "run", "--superlink", f"127.0.0.1:{port}", "--partition-id", str(partition),
                          "--num-partitions", "2", "--workdir", str(tmp_path / "devices"), "--duration", "85"),
                env, tmp_path / f"device-{partition}.log",
            ))  # fmt: skip
        try:
            server.wait(timeout=85)
        except subprocess.TimeoutExpired:
            pytest.fail("the federation did not finish within 85 s:\n" + (tmp_path / "server.log").read_text()[-3000:])
        log = (tmp_path / "server.log").read_text()
        assert server.returncode == 0, log[-3000:]
        assert "finished:completed" in log
        assert all(p.poll() is None for p in started[1:]), "a SuperNode died during the run"
    finally:
        for process in reversed(started):
            terminate_tree(process)

    final = Checkpointer(ckpt).load_latest()
    assert final is not None and final.server_round == ROUNDS and final.meta["strategy"] == "tinymetafed"
    init = initial_weights(FederationSettings())
    assert any(not np.array_equal(final.weights[k], init[k]) for k in ("w0", "b0", "w1", "b1"))  # θ moved
    for head in ("w2", "b2"):
        np.testing.assert_array_equal(final.weights[head], init[head])  # private: never sent, never changed
    metrics = final.meta["metrics"]
    assert metrics["clients"] == 2 and 0.09 <= metrics["uplink-density"] <= 0.11
