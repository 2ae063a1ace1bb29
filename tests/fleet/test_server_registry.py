"""`tinyfleet server --local-broker --registry DIR`: every round's meta-model version lands in the registry with
exactly the devices that trained it (a real mosquitto, simulated MCUs on their own connections, the model-lineage
named query on the Oxigraph directory afterwards); a bad registry is refused before anything starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from rdflib import URIRef
from typer.testing import CliRunner

from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet, device_id_of
from ontology.named_queries import run_named_query
from ontology.store import open_store
from ontology.thing_description import device_iri
from server.core.checkpoint import Checkpointer
from server.cli import app
from server.registry.registry_link import PARTICIPANT_DEVICES, weights_digest

FLEET = 6
PER_ROUND = 3
ROUNDS = 3
FEDERATION = "https://w3id.org/tinyfleet/id/federation/mqtt-tinyreptile"


def server_command(work: Path, ckpt: Path, registry: Path) -> list[str]:
    return [sys.executable, "-m", "server.cli", "server", "--local-broker", "--fleet", str(FLEET),
            "--strategy", "tinyreptile", "--rounds", str(ROUNDS), "--clients-per-round", str(PER_ROUND),
            "--workdir", str(work), "--checkpoint-dir", str(ckpt), "--node-timeout", "30", "--round-timeout", "15",
            "--registry", str(registry)]  # fmt: skip


def wait_for_accounts(server: subprocess.Popen, path: Path, log: Path, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no accounts.json from the server"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # caught mid-write
        time.sleep(0.05)


def invoke(monkeypatch, args: list[str]):
    from server import cli

    monkeypatch.setattr(cli.console, "width", 300)
    return CliRunner().invoke(app, args)


def test_server_registers_every_round_with_the_devices_that_trained(tmp_path, monkeypatch):
    work, ckpt, registry = tmp_path / "server", tmp_path / "ckpt", tmp_path / "registry"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(server_command(work, ckpt, registry), stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "COLUMNS": "300"})  # rich: one line per message
    try:
        accounts = wait_for_accounts(server, work / "accounts.json", log)
        config = FleetConfig(host=accounts["host"], port=accounts["port"])
        with MqttFleet(range(FLEET), accounts["devices"], config) as fleet:
            server.wait(timeout=90)
            trained = Counter({device_iri(d.device_id): d.rounds_done for d in fleet.devices.values() if d.rounds_done})
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = log.read_text()
    assert server.returncode == 0, output
    assert f"versions of federation {FEDERATION}" in output

    final = Checkpointer(ckpt).load_latest()
    assert final.server_round == ROUNDS
    with open_store(str(registry)) as store:  # the server has closed it: one process owns a directory
        result = run_named_query(store, "model-lineage", {"version": URIRef(f"{FEDERATION}/version/{ROUNDS}")})
        rows = [dict(zip(result.variables, row)) for row in result.rows]
        digest = store.query("PREFIX schema: <https://schema.org/> SELECT ?v ?id WHERE { ?v schema:identifier ?id }",
                             {"v": URIRef(f"{FEDERATION}/version/{ROUNDS}")}).rows
        # every version registered is a version of a model the store describes (layers, memory, training)
        undescribed = store.query(
            "PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?v WHERE { ?v a tf:ModelVersion ; tf:versionOf ?m . "
            "FILTER NOT EXISTS { ?m a tf:Model ; tf:hasLayer ?layer ; tf:hasOnDeviceTraining ?training } }").rows
        versions = store.query("PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?v WHERE { ?v a tf:ModelVersion }").rows
    assert len(versions) == ROUNDS + 1 and undescribed == []
    assert [int(r["number"]) for r in rows] == list(range(ROUNDS, -1, -1))  # every round's version, back to θ0
    devices = {int(r["number"]): set(str(r["devices"] or "").split()) for r in rows}
    fleet_iris = {device_iri(device_id_of(s)) for s in range(FLEET)}
    assert devices[0] == set() and rows[-1]["round_number"] is None  # the initial θ: no round, no device
    for number in range(1, ROUNDS + 1):
        assert len(devices[number]) == PER_ROUND and devices[number] <= fleet_iris, devices
        metrics = dict(item.split("=", 1) for item in str(rows[ROUNDS - number]["metrics"]).split())
        assert float(metrics["clients"]) == PER_ROUND and float(metrics["loss-after"]) >= 0, metrics
    # exactly the devices that trained: each listed as often as its own firmware counted rounds
    assert Counter(iri for number in range(1, ROUNDS + 1) for iri in devices[number]) == trained
    # the newest version is the checkpointed θ, and the checkpoint names the same devices
    assert str(digest[0][1]) == f"sha256:{weights_digest(final.weights)}"
    assert set(final.meta["metrics"][PARTICIPANT_DEVICES]) == devices[ROUNDS]

    # a fresh run (new checkpoint dir) must not overwrite that federation's versions: refused, nothing started
    again = tmp_path / "again"
    result = invoke(monkeypatch, server_command(again, tmp_path / "ckpt2", registry)[3:])
    assert result.exit_code == 2, result.output
    assert "already holds version 0 of federation 'mqtt-tinyreptile'" in result.output
    assert not (again / "accounts.json").exists() and not (again / "broker").exists()


@pytest.mark.parametrize("case", ["file", "locked", "flower"])
def test_a_bad_registry_is_refused_before_anything_starts(tmp_path, monkeypatch, case):
    work = tmp_path / "server"
    registry = tmp_path / "registry"
    args = ["server", "--workdir", str(work), "--rounds", "1", "--registry", str(registry)]
    if case != "flower":
        args += ["--local-broker", "--fleet", "2"]
    if case == "file":
        registry.write_text("not a store")
        message = "exists and is not a directory"
    elif case == "locked":
        holder = open_store(str(registry))  # e.g. `tinyfleet registry serve` owns the directory
        message = "is another process using it?"
    else:  # the ServerApp of an attached SuperLink runs on its host: this path means nothing there
        args += ["--superlink", "127.0.0.1:9"]
        message = "--registry with --superlink"
    try:
        result = invoke(monkeypatch, args)
    finally:
        if case == "locked":
            holder.close()
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output, result.output
    if case != "flower":
        assert f"--registry {registry}" in result.output  # which option was wrong
    assert not (work / "accounts.json").exists() and not (work / "broker").exists() and not (work / "flwr").exists()
