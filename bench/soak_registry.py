"""The registry side of the soak (bench/soak.py): the registry service it kills with -9 mid-write, and the
gateway that keeps registering and re-registering devices through it. Each write carries a generation in the
TD's title, so what survives a kill can be checked against what was acknowledged.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from edge.thing_description import thing_description  # noqa: E402,F401
from firmware_sim.addresses import free_port  # noqa: E402

TOKEN_ENV = "TINYFLEET_REGISTRY_TOKEN"
TD_JSON = {"Content-Type": "application/td+json"}


@dataclass(frozen=True)
class SoakConfig:
    devices: int = 1000
    rounds: int = 50
    sample: int = 100  # devices per round
    churn: float = 0.3  # fraction of the fleet that crashes and comes back once
    round_timeout_s: float = 20.0
    quorum: float = 0.9
    writers: int = 2  # registration threads against the registry service
    refresh_interval_s: float = 0.05  # pause between refresh writes when no device is waiting to be registered
    connect_timeout_s: float = 300.0
    run_timeout_s: float = 3600.0
    seed: int = 0



class RegistryService:
    """``tinyfleet registry serve`` on a fixed port (kept across restarts) over one store directory."""

    def __init__(self, store: Path, token: str, log_dir: Path) -> None:
        self.store = store
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = 300.0) -> None:  # after kill -9 on a loaded machine: over 60 s measured
        env = {**os.environ, TOKEN_ENV: self.token, "PYTHONPATH": str(ROOT)}
        log = open(self.log_dir / f"registry-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ontology.cli", "serve", "--store", str(self.store), "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry service exited with {self.proc.returncode}; see {self.log_dir}")
            try:
                httpx.get(f"{self.url}/queries", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError(f"registry service did not come up in {timeout_s} s")

    def kill(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


# ---------------------------------------------------------------- the registration gateway


@dataclass
class Gateway:
    """Registers devices' TDs through the service: ``PUT /things/<id>``, a 201/204 is an acknowledgement."""

    service: RegistryService
    tds: dict[str, dict[str, Any]]  # device id -> its TD (title set per write)
    config: SoakConfig
    jobs: queue.Queue[str] = field(default_factory=queue.Queue)
    acked: dict[str, int] = field(default_factory=dict)  # device id -> newest generation acknowledged
    generation: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # status -> count (non-2xx answers)
    transport_errors: int = 0
    in_flight: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, device_id: str) -> None:
        self.jobs.put(device_id)

    def _next(self, rng: random.Random) -> str | None:
        try:
            return self.jobs.get(timeout=self.config.refresh_interval_s)
        except queue.Empty:
            with self.lock:
                known = sorted(self.acked)
            return rng.choice(known) if known else None  # a refresh: the gateway re-registers a live device

    def run(self, worker: int) -> None:
        rng = random.Random(self.config.seed * 1000 + worker)
        with httpx.Client(base_url=self.service.url, timeout=30.0,
                          headers={"Authorization": f"Bearer {self.service.token}"}) as client:  # fmt: skip
            while not self.stop.is_set():
                device_id = self._next(rng)
                if device_id is None:
                    continue
                with self.lock:
                    generation = self.generation[device_id] = self.generation.get(device_id, 0) + 1
                    self.in_flight += 1
                td = {**self.tds[device_id], "title": title(device_id, generation)}
                try:
                    response = client.put(f"/things/{device_id}", json=td, headers=TD_JSON)
                except httpx.TransportError:  # the service died under us: not acknowledged, try again later
                    with self.lock:
                        self.transport_errors += 1
                        self.in_flight -= 1
                    self.jobs.put(device_id)
                    time.sleep(0.2)
                    continue
                with self.lock:
                    self.in_flight -= 1
                    if response.status_code in (201, 204):
                        self.acknowledged += 1
                        self.acked[device_id] = max(self.acked.get(device_id, 0), generation)
                    else:
                        self.refused[response.status_code] = self.refused.get(response.status_code, 0) + 1
                        if response.status_code >= 500:
                            self.jobs.put(device_id)


def title(device_id: str, generation: int) -> str:
    return f"{device_id} soak generation {generation}"


def generation_of(td: dict[str, Any]) -> int:
    text = str(td.get("title", ""))
    try:
        return int(text.rsplit(" ", 1)[1]) if " soak generation " in text else -1
    except (IndexError, ValueError):
        return -1


def stored_generations(url: str) -> dict[str, int]:
    """Device IRI -> generation in its stored title, read page by page from ``GET /things``."""
    out: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=60.0) as client:
        offset = 0
        while True:
            page = client.get("/things", params={"offset": offset, "limit": 1000})
            page.raise_for_status()
            things = page.json()
            for td in things:
                out[str(td.get("id"))] = generation_of(td)
            if "next" not in page.headers.get("link", ""):
                return out
            offset += len(things)


