"""A real Flower deployment for the tests: `tinyfleet server` starting a SuperLink of its own, with SuperNodes
started by `tinyfleet device run --superlink`, run until the server exits, then every process ended."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from process_tree import spawn, terminate_tree

from server.transports.broker import free_port
from server.transports.flower_deploy import flower_env


def tinyfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def run_with_supernodes(tmp_path: Path, server_args: list[str], *, partitions: int = 2, timeout_s: float = 150.0) -> str:
    """`tinyfleet server --port P SERVER_ARGS` plus ``partitions`` SuperNodes; the server's log, once the server
    exited 0 with every SuperNode still up (FLWR_HOME in ``tmp_path``: no telemetry, no update check)."""
    env, port = flower_env(tmp_path / "flwr"), free_port()
    started: list[subprocess.Popen] = []
    try:
        server = spawn(tinyfleet("server", "--port", str(port), *server_args), env, tmp_path / "server.log")
        started.append(server)
        for partition in range(partitions):
            started.append(spawn(
                tinyfleet("device", "run", "--superlink", f"127.0.0.1:{port}", "--partition-id", str(partition),
                          "--num-partitions", str(partitions), "--workdir", str(tmp_path / "devices"),
                          "--duration", str(int(timeout_s))),
                env, tmp_path / f"device-{partition}.log",
            ))  # fmt: skip
        try:
            server.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the federation did not finish within {timeout_s:.0f} s:\n"
                        + (tmp_path / "server.log").read_text()[-3000:])  # fmt: skip
        log = (tmp_path / "server.log").read_text()
        assert server.returncode == 0, log[-3000:]
        assert all(p.poll() is None for p in started[1:]), "a SuperNode died during the run"
        return log
    finally:
        for process in reversed(started):
            terminate_tree(process)
