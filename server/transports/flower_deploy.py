"""Start and drive a Flower deployment on this machine: SuperLink, SuperNodes, ``flwr run``.

Why this module: ``tinyfleet server``, ``tinyfleet device run --superlink`` and
the end-to-end test all need the same things done carefully — start Flower's
own executables as subprocesses, know when they are ready, submit the
TinyFleet Flower App, follow the run to its end, and stop every process,
children included. Each wait has a deadline and each process is started in
its own session so :meth:`FlowerProcess.stop` can end its whole tree (the
SuperLink and SuperNodes fork SuperExec and app processes).

Flower 1.42 serves the Fleet, Control and Runtime APIs of a SuperLink on one
HTTP port (``--host``/``--port``); a SuperNode connects to that address and
opens its own Runtime API port for its ClientApp processes, so two SuperNodes
on one host need different ``--port`` values. ``flwr`` reads connections from
``$FLWR_HOME/config.toml``. Telemetry and update checks are switched off in
the environment these helpers build: a fleet server must not phone home.

The SuperNode half (:class:`FlowerProcess`, :func:`flower_env`,
:func:`supernode_args`, :class:`FlowerError`) is the device side of the Flower
transport and lives in :mod:`firmware_sim.supernode`, HOST:PORT parsing and
free ports in :mod:`firmware_sim.addresses`; they are re-exported here for the
server's code and tests.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from firmware_sim.addresses import free_port, parse_address
from firmware_sim.supernode import FlowerError, FlowerProcess, flower_env, flower_executable, supernode_args

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[1] / "flower_app"  # the Flower App `flwr run` packs into a FAB
FINISHED = "finished"

__all__ = [
    "APP_DIR", "FINISHED", "FlowerError", "FlowerProcess", "flower_env", "flower_executable", "format_run_config",
    "free_port", "is_loopback", "parse_address", "run_status", "start_superlink", "submit_run", "superlink_healthy",
    "supernode_args", "wait_for_run", "wait_until", "write_connection",
]


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def wait_until(check: object, timeout_s: float, what: str, process: FlowerProcess | None = None) -> None:
    """Poll ``check()`` until true; FlowerError after ``timeout_s`` or if ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if process is not None and not process.running:
            raise FlowerError(f"{process.name} exited with {process.process.returncode}:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{process.log_tail()}" if process is not None else ""
            raise FlowerError(f"{what} not within {timeout_s:.0f} s{tail}")
        time.sleep(0.1)


def superlink_healthy(address: str) -> bool:
    host, port = parse_address(address)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=0.5) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def start_superlink(
    workdir: Path, host: str = "127.0.0.1", port: int | None = None, env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0, certificates: tuple[str, str, str] | None = None,
) -> tuple[FlowerProcess, str]:
    """A SuperLink on ``host:port`` (a free port if None); returns it and its address once healthy.

    Without ``certificates`` (CA, cert, key) it runs ``--insecure``, which is
    only allowed on loopback. Runtime dependency installation (``uv sync``)
    is off: the App's code is the installed tinyfleet package.
    """
    if certificates is None and not is_loopback(host):
        raise ValueError(f"refusing an insecure SuperLink on {host}; pass TLS certificates or bind to 127.0.0.1")
    port = port or free_port()
    address = f"{host}:{port}"
    args = [flower_executable("flower-superlink"), "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation"]  # fmt: skip
    if certificates is None:
        args.append("--insecure")
    else:
        ca, cert, key = certificates
        args += ["--ssl-ca-certfile", ca, "--ssl-certfile", cert, "--ssl-keyfile", key]
    process = FlowerProcess("flower-superlink", args, env or flower_env(), workdir / "superlink.log")
    try:
        if certificates is None:
            wait_until(lambda: superlink_healthy(address), timeout_s, f"SuperLink healthy on {address}", process)
        else:
            wait_until(lambda: _accepts(host, port), timeout_s, f"SuperLink listening on {address}", process)
    except BaseException:
        process.stop()
        raise
    return process, address


def _accepts(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def write_connection(flwr_home: Path, name: str, address: str, root_certificates: str | None = None) -> Path:
    """Add (or replace) the SuperLink connection ``name`` in ``$FLWR_HOME/config.toml`` and make it default."""
    import tomllib
    import tomli_w

    parse_address(address)
    path = Path(flwr_home) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = tomllib.loads(path.read_text()) if path.exists() else {}
    superlink = config.setdefault("superlink", {})
    entry: dict[str, object] = {"address": address}
    if root_certificates:
        entry["root-certificates"] = root_certificates
    else:
        entry["insecure"] = True
    superlink[name] = entry
    superlink.setdefault("default", name)
    path.write_text(tomli_w.dumps(config))
    return path


def _flwr(args: Sequence[str], env: Mapping[str, str], timeout_s: float) -> dict:
    """Run ``flwr ARGS --format json`` and return its JSON; FlowerError with its output otherwise."""
    command = [flower_executable("flwr"), *args, "--format", "json"]
    try:
        done = subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FlowerError(f"{' '.join(command[1:3])} did not answer within {timeout_s:.0f} s") from None
    try:
        answer = json.loads(done.stdout[done.stdout.find("{"):])
    except ValueError:
        answer = {}
    if done.returncode != 0 or not answer.get("success", False):
        raise FlowerError(f"flwr {' '.join(args)} failed ({done.returncode}): {done.stdout.strip()} {done.stderr.strip()}")
    return answer


def format_run_config(overrides: Mapping[str, object]) -> str:
    """``{"num-rounds": 3, "strategy": "tinymetafed"}`` -> ``num-rounds=3 strategy="tinymetafed"`` (TOML values)."""
    parts = []
    for key, value in overrides.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        elif isinstance(value, str):
            text = json.dumps(value)  # a TOML basic string
        else:
            raise ValueError(f"run config {key!r}: {value!r} is not a bool, number or string")
        parts.append(f"{key}={text}")
    return " ".join(parts)


def submit_run(
    connection: str, env: Mapping[str, str], overrides: Mapping[str, object] | None = None,
    app_dir: Path = APP_DIR, timeout_s: float = 60.0,
) -> int:
    """``flwr run APP_DIR CONNECTION --run-config ...``; the run id."""
    args = ["run", str(app_dir), connection]
    if overrides:
        args += ["--run-config", format_run_config(overrides)]
    return int(_flwr(args, env, timeout_s)["run-id"])


def run_status(connection: str, run_id: int, env: Mapping[str, str], timeout_s: float = 30.0) -> str:
    """The run's status as ``flwr ls`` reports it, e.g. ``running`` or ``finished:completed``."""
    answer = _flwr(["ls", connection, "--run-id", str(run_id)], env, timeout_s)
    runs = answer.get("runs") or []
    if not runs:
        raise FlowerError(f"run {run_id} is unknown to the SuperLink of connection {connection!r}")
    return str(runs[0].get("status", ""))


def wait_for_run(
    connection: str, run_id: int, env: Mapping[str, str], timeout_s: float, poll_s: float = 1.0,
    on_poll: Callable[[], None] | None = None,
) -> str:
    """Poll until the run finishes; its final status (``finished:completed`` on success).

    ``on_poll`` runs at every poll (e.g. to show the rounds the ServerApp has recorded so far).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if on_poll is not None:
            on_poll()
        status = run_status(connection, run_id, env)
        if status.startswith(FINISHED):
            return status
        if time.monotonic() > deadline:
            raise FlowerError(f"run {run_id} still {status!r} after {timeout_s:.0f} s")
        time.sleep(poll_s)
