"""A classifier task through a real Flower deployment: `tinyfleet server --task presence` starts a SuperLink and
submits the run, two `tinyfleet device run --superlink` SuperNodes play presence rooms (the one ClientApp builds
the device of the task the request names), and TinyMetaFed finishes its rounds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from process_tree import spawn, terminate_tree

from firmware_sim.addresses import free_port
from server.core.checkpoint import Checkpointer
from server.core.federation import initial_weights
from server.core.tasks import task_settings
from server.transports.flower_deploy import flower_env

pytestmark = pytest.mark.slow
ROUNDS = 2


def tinyfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def test_two_supernodes_federate_a_presence_task(tmp_path: Path) -> None:
    env, port, work = flower_env(tmp_path / "flwr"), free_port(), tmp_path / "server"
    started: list[subprocess.Popen] = []
    try:
        server = spawn(
            tinyfleet("server", "--task", "presence", "--port", str(port), "--workdir", str(work), "--rounds", str(ROUNDS),
                      "--strategy", "tinymetafed", "--clients-per-round", "2", "--node-timeout", "60",
                      "--run-timeout", "100"),
            env, tmp_path / "server.log",
        )  # fmt: skip
        started.append(server)
        for partition in range(2):
            started.append(spawn(
                tinyfleet("device", "run", "--superlink", f"127.0.0.1:{port}", "--partition-id", str(partition),
                          "--num-partitions", "2", "--workdir", str(tmp_path / "devices"), "--duration", "110"),
                env, tmp_path / f"device-{partition}.log",
            ))  # fmt: skip
        try:
            server.wait(timeout=110)
        except subprocess.TimeoutExpired:
            pytest.fail("the federation did not finish within 110 s:\n" + (tmp_path / "server.log").read_text()[-3000:])
        log = (tmp_path / "server.log").read_text()
        assert server.returncode == 0, log[-3000:]
        assert all(f"round {r}/{ROUNDS}: 2 device(s)" in log.replace("\n", " ") for r in range(1, ROUNDS + 1)), log[-3000:]
    finally:
        for process in reversed(started):
            terminate_tree(process)
    final = Checkpointer(work / "checkpoints").load_latest()
    expected = task_settings("presence", "tinymetafed")
    assert final.server_round == ROUNDS and final.meta["settings"]["device"]["task"] == "presence"
    init = initial_weights(expected)
    assert final.weights["w0"].shape == init["w0"].shape == (expected.layer_sizes[0], expected.layer_sizes[1])
    assert any(not np.array_equal(final.weights[k], init[k]) for k in ("w0", "b0", "w1", "b1"))  # θ moved
    for head in expected.metafed.private_names:
        np.testing.assert_array_equal(final.weights[head], init[head])  # private: never sent, never changed
