"""The service as its own process on an Oxigraph directory: data survives a restart and a kill -9 mid-write."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from registry_server import ROOT, ServiceProcess, free_port
from test_registry_service import TD_JSON, TOKEN, td

from ontology.thing_description import device_iri


@pytest.mark.slow  # two service starts, ~6-15 s on a loaded machine
def test_things_persist_across_a_restart(tmp_path: Path) -> None:
    store_dir = tmp_path / "registry"
    with ServiceProcess(store_dir, TOKEN) as service:
        url = service.start()
        for device_id in ("keep-1", "keep-2"):
            assert httpx.put(f"{url}/things/{device_id}", json=td(device_id), headers=TD_JSON).status_code == 201
        before = httpx.get(f"{url}/things").json()
        assert service.stop() == 0
        url = service.start()  # same directory, new process
        assert httpx.get(f"{url}/things").json() == before
        assert [t["id"] for t in before] == [device_iri("keep-1"), device_iri("keep-2")]
        fit = httpx.get(f"{url}/queries/devices-for-model", params={"model": "urn:none"})
        assert fit.status_code == 200


@pytest.mark.slow  # two service starts and a write storm, ~12-20 s
def test_acknowledged_puts_survive_kill_9_mid_write(tmp_path: Path) -> None:
    store_dir = tmp_path / "registry"
    acked: list[str] = []
    stop = threading.Event()

    def writer(worker: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                device_id = f"w{worker}-{n}"
                try:
                    response = client.put(f"/things/{device_id}", json=td(device_id, title=f"title {device_id}"), headers=TD_JSON)
                except httpx.TransportError:
                    return  # the server died under us: this PUT was never acknowledged
                if response.status_code == 201:
                    acked.append(device_id)
                n += 1

    with ServiceProcess(store_dir, TOKEN) as service:
        url = service.start()
        threads = [threading.Thread(target=writer, args=(w, url)) for w in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.kill() == -9  # writes are in flight on every thread now
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        survivors = list(acked)
        assert len(survivors) >= 12
        url = service.start()
        with httpx.Client(base_url=url, timeout=30) as client:
            for device_id in survivors:
                got = client.get(f"/things/{device_id}")
                assert got.status_code == 200, device_id
                assert got.json()["title"] == f"title {device_id}"
            listed = {t["id"] for t in client.get("/things", params={"limit": 1000}).json()}
        assert {device_iri(d) for d in survivors} <= listed


@pytest.mark.slow  # two service processes, ~5 s
def test_the_ready_line_comes_when_the_port_accepts_and_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    """A script that waits for the printed line and connects at once must get through (docs/registry.md does)."""
    port = free_port()
    command = [sys.executable, "-m", "ontology.cli", "serve", "--store", "memory:", "--port", str(port), "--token", TOKEN]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        line = first.stderr.readline()
        assert f"on http://127.0.0.1:{port}" in line, line
        assert httpx.get(f"http://127.0.0.1:{port}/queries", timeout=30).status_code == 200  # no retry needed
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
