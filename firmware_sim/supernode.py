"""The device side of the Flower transport: run Flower's ``flower-supernode`` as a child process.

A Linux-class device joins a Flower federation as a SuperNode, which runs the
TinyFleet ClientApp (:mod:`firmware_sim.client_app`) that comes with the run.
Starting it needs no Flower import, only Flower's console script next to this
interpreter (``pip install 'tinyfleet[supernode]'``), so this module imports
nothing but the standard library.

:class:`FlowerProcess` starts an executable in its own session so
:meth:`FlowerProcess.stop` can end its whole tree (a SuperNode forks app
processes). The server starts its SuperLink with the same class
(:mod:`server.transports.flower_deploy` imports it from here); telemetry and update
checks are off in :func:`flower_env`: neither side may phone home.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class FlowerError(RuntimeError):
    """A Flower process or command failed or missed its deadline; the message says which and why."""


def flower_executable(name: str) -> str:
    """Flower's console script from this interpreter's environment (where `tinyfleet` is installed)."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    raise FlowerError(f"{name} not found next to {sys.executable}; install tinyfleet[supernode] or tinyfleet[full]")


def flower_env(flwr_home: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Flower processes: our venv first on PATH (SuperLink/SuperNode spawn Flower
    executables by name), no telemetry, no update check, and ``FLWR_HOME`` if given."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


class FlowerProcess:
    """One Flower executable in its own session; :meth:`stop` ends it and everything it started."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                list(args), env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        log.info("%s started (pid %d), log %s", name, self.process.pid, log_path)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout_s``; idempotent.

        Processes it started in sessions of their own (a SuperLink's ``flwr-serverapp``) are not in the
        group, so they are found first, through their parent ids, and ended with it.
        """
        descendants = descendant_pids(self.process.pid) if self.process.poll() is None else []
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=timeout_s)
        self._signal_group(signal.SIGKILL)  # children left in the group (app processes) go too
        for pid in descendants:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def descendant_pids(root: int) -> list[int]:
    """Every live process below ``root`` (children, grandchildren, ...), from /proc/<pid>/task/*/children; [] off Linux."""
    found: list[int] = []
    stack = [root]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found


def supernode_args(
    superlink: str, partition_id: int, num_partitions: int, runtime_port: int, root_certificates: str | None = None
) -> list[str]:
    """``flower-supernode`` command line for the device with this ``partition-id``."""
    if partition_id < 0 or num_partitions < 1:
        raise ValueError("partition_id must be >= 0 and num_partitions >= 1")
    args = [flower_executable("flower-supernode"), "--superlink", superlink, "--port", str(runtime_port),
            "--node-config", f"partition-id={partition_id} num-partitions={num_partitions}"]  # fmt: skip
    if root_certificates:
        args += ["--root-certificates", root_certificates]
    else:
        args.append("--insecure")
    return args
