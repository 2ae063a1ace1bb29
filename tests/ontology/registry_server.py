"""Run the registry service for real: uvicorn on a free loopback port, in a thread or a child process.

A thread is enough (and fast) for driving endpoints; the restart and kill -9
tests need a process of its own, started exactly as a user would
(``python -m ontology.cli serve``), so that killing it is a real crash.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, deadline_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers; fail early if the child process died."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not come up in {deadline_s} s")


class ThreadServer:
    """``with ThreadServer(app) as base_url:`` serves ``app`` with uvicorn on a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ServiceProcess:
    """The service as a child process on ``store_dir``: start, stop gracefully, or kill -9."""

    def __init__(self, store_dir: Path, token: str, extra_args: tuple[str, ...] = ()) -> None:
        self.store_dir = store_dir
        self.token = token
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        env = {**os.environ, "TINYFLEET_REGISTRY_TOKEN": self.token}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ontology.cli", "serve", "--store", str(self.store_dir), "--port", str(self.port),
             *self.extra_args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until_up(f"{self.url}/queries", proc=self.proc)
        return self.url

    def stop(self) -> int:
        """SIGTERM and wait: uvicorn shuts down, the CLI closes the store."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs at all."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
