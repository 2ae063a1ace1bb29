"""``tinyfleet console`` on its own, as a user starts it: a registry service URL, a broker URL, a run's workdir.

Real parts: the registry service as its own process (``python -m ontology.cli serve``), the console
as its own process (``python -m server.cli console``), a private mosquitto and a simulated MCU on its
own MQTT connection. The console proxies the registry's API (its ``/events`` stream too), reads the
broker's retained status and the workdir's ``rounds.jsonl``, and answers bad input with a clear page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edge.profiles import PROFILES
from firmware_sim.addresses import free_port
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet, device_id_of
from ontology.thing_description import device_iri, thing_description
from server.core.round_loop import RoundReport
from server.core.run_dir import ROUNDS_LOG, RoundsLog
from server.transports.broker import BrokerAccounts, LocalBroker

pytestmark = pytest.mark.slow  # two service processes start (about 15 s)
ROOT = Path(__file__).resolve().parents[3]
TOKEN = "standalone-token"


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200", **(env or {})})


def _wait_up(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up: {log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"after {timeout_s} s: {what}")


def _record_rounds(workdir: Path, count: int) -> None:
    """``rounds.jsonl`` as the round loop's RoundsLog observer writes it, from reports of ``count`` rounds."""
    log = RoundsLog(workdir / ROUNDS_LOG)
    for number in range(1, count + 1):
        log(RoundReport(server_round=number, weights={"w": np.zeros(1, np.float32)},
                        metrics={"loss-before": 2.0 / number, "loss-after": 1.0 / number, "bytes-sent": 100.0 * number,
                                 "bytes-received": 200.0, "meta-step-size": 0.5},
                        participant_devices=(device_iri("sine-0"),), replies=1))


@pytest.fixture
def services(tmp_path):
    registry_port, console_port = free_port(), free_port()
    accounts = BrokerAccounts()
    accounts.add_devices([device_id_of(0)])
    workdir = tmp_path / "run"
    workdir.mkdir()
    _record_rounds(workdir, 2)
    with LocalBroker(tmp_path / "broker", accounts) as broker:
        registry_log, console_log = tmp_path / "registry.log", tmp_path / "console.log"
        registry = _start(["ontology.cli", "serve", "--store", str(tmp_path / "store"), "--port", str(registry_port)],
                          registry_log, {"TINYFLEET_REGISTRY_TOKEN": TOKEN})
        registry_url = f"http://127.0.0.1:{registry_port}"
        broker_url = f"mqtt://tinyfleet-server@{broker.host}:{broker.port}"
        console = _start(["server.cli", "console", "--registry", registry_url, "--broker", broker_url,
                          "--workdir", str(workdir), "--port", str(console_port)], console_log,
                         {"TINYFLEET_MQTT_PASSWORD": accounts.server_password})
        try:
            _wait_up(f"{registry_url}/queries", registry, registry_log)
            _wait_up(f"http://127.0.0.1:{console_port}/healthz", console, console_log)
            yield {"registry": registry_url, "console": f"http://127.0.0.1:{console_port}", "broker": broker,
                   "accounts": accounts, "workdir": workdir, "console_process": console, "registry_process": registry,
                   "console_log": console_log}
        finally:
            _stop(console)
            _stop(registry)


def test_the_console_reads_a_registry_service_a_broker_and_a_workdir(services) -> None:
    console, registry = services["console"], services["registry"]
    config = FleetConfig(host=services["broker"].host, port=services["broker"].port)
    with MqttFleet([0], services["accounts"].devices, config) as fleet:
        seen = _wait_for(lambda: [d for d in httpx.get(f"{console}/api/fleet").json()["devices"] if d["online"]], 30,
                         "the device's retained online status")
        assert [d["device_id"] for d in seen] == ["sine-0"] and not seen[0]["registered"]  # announced, not registered
        assert seen[0]["rounds"] == [1, 2]  # from the workdir's rounds.jsonl
        fleet.devices["sine-0"].crash()
        _wait_for(lambda: httpx.get(f"{console}/api/fleet").json()["devices"][0]["online"] is False, 30,
                  "the Last Will's offline")
    # a registration through the registry service shows on the console and on its proxied /events stream
    events: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{console}/api/registry/events", timeout=httpx.Timeout(5, read=20)) as response:
            for line in response.iter_lines():
                opened.set()  # the first line comes once the stream's baseline is taken
                events.append(line)
                if line.startswith("data:"):
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert opened.wait(20), "the proxied /events stream did not open"
    td = thing_description(PROFILES["esp32s3"], "esp-standalone")
    put = httpx.put(f"{registry}/things/esp-standalone", content=json.dumps(td),
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/td+json"})
    assert put.status_code == 201
    reader.join(timeout=20)
    assert "event: thing_created" in events and f'data: {{"id": "{device_iri("esp-standalone")}"}}' in events
    rows = _wait_for(lambda: [d for d in httpx.get(f"{console}/api/fleet").json()["devices"] if d["registered"]], 20,
                     "the registered device on the Fleet page")
    assert rows[0]["device_id"] == "esp-standalone" and rows[0]["ram_bytes"] == PROFILES["esp32s3"].usable_ram_bytes
    run = httpx.get(f"{console}/federations/run")
    assert run.status_code == 200 and 'id="rounds-done">2<' in run.text and "chart-loss" in run.text


def test_bad_input_gets_a_clear_answer_and_no_500(services) -> None:
    console = services["console"]
    wrong = httpx.get(f"{console}/fleet", params={"eligibility": "maybe"})
    assert wrong.status_code == 400 and "eligibility must be" in wrong.text
    missing = httpx.get(f"{console}/federations/nope")
    assert missing.status_code == 404 and "no federation &#x27;nope&#x27;" in missing.text
    garbage = httpx.get(f"{console}/registry", params={"query": "SELEC nonsense"})
    assert garbage.status_code == 200 and "400 invalid SPARQL query" in garbage.text
    unknown = httpx.get(f"{console}/registry", params={"named": "no-such-query"})
    assert unknown.status_code == 200 and "404 no such named query" in unknown.text
    unbound = httpx.get(f"{console}/registry", params={"named": "models-for-device"})
    assert unbound.status_code == 200 and "400 invalid query parameter" in unbound.text
    refused = httpx.post(f"{console}/registry/update", data={"update": "INSERT DATA { <urn:a> <urn:b> 1 }"})
    assert refused.status_code == 401 and "refused by the registry: 401 bearer token required" in refused.text
    proxied = httpx.post(f"{console}/api/registry/sparql", data={"update": "INSERT DATA { <urn:a> <urn:b> 1 }"})
    assert proxied.status_code == 401 and proxied.json()["title"] == "bearer token required"
    _stop(services["registry_process"])  # the registry goes away: the pages say so, the console stays up
    for path in ("/fleet", "/federations", "/registry", "/federations/run"):  # cached answers last FACTS_TTL_S
        page = _wait_for(lambda: (p := httpx.get(f"{console}{path}")).status_code == 200 and "did not answer" in p.text,
                         15, f"{path} saying the registry is down")
        assert page, path
    assert httpx.get(f"{console}/api/registry/things").status_code == 502
    assert services["console_process"].poll() is None
