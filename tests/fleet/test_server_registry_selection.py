"""`tinyfleet server --local-broker --registry DIR` picks its devices by SPARQL: it registers the Thing Description each
device announces, and rounds sample only the devices `eligible-devices` returns (a real mosquitto, simulated MCUs on
their own connections). Boards whose RAM cannot hold the model's on-device training are never sent a task and never
appear in a registered version; a device announcing a malformed TD is refused with a reason while the run goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from rdflib import URIRef

from edge.wire import Channel, device_topic
from edge.wire.topics import STATUS_ONLINE
from firmware_sim.fleet import profile_for
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet, device_id_of
from ontology.named_queries import run_named_query
from ontology.store import open_store
from ontology.thing_description import device_iri, thing_description
from test_server_registry import wait_for_accounts

LAYERS = (1, 64, 64, 1)  # its TFLite training needs more RAM than a Nano 33 BLE or a Pico W has free
FLEET = 8  # sine-0 .. sine-6 are simulated MCUs, sine-7 announces a malformed Thing Description
BAD = FLEET - 1
ROUNDS = 2
PER_ROUND = 2
FEDERATION = "https://w3id.org/tinyfleet/id/federation/mqtt-tinyreptile"
TRAINING_RAM = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?model ?ram WHERE { ?model tf:hasOnDeviceTraining ?t . ?t tf:trainingRamBytes ?ram }"""


def server_command(work: Path, registry: Path) -> list[str]:
    return [sys.executable, "-m", "server.cli", "server", "--local-broker", "--fleet", str(FLEET),
            "--strategy", "tinyreptile", "--rounds", str(ROUNDS), "--clients-per-round", str(PER_ROUND),
            "--workdir", str(work), "--checkpoint-dir", str(work / "ckpt"), "--node-timeout", "30",
            "--round-timeout", "15", "-c", "layer-sizes=" + ",".join(map(str, LAYERS)),
            "--registry", str(registry)]  # fmt: skip


def announce_malformed(accounts: dict, device_id: str) -> mqtt.Client:
    """A device whose firmware announces a TD the registry must refuse (no @context, a property without forms)."""
    td = thing_description(profile_for(BAD), device_id)
    td.pop("@context")
    td["properties"] = {"temperature": {"type": "number"}}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(device_id, accounts["devices"][device_id])
    client.connect(accounts["host"], accounts["port"])
    client.loop_start()
    client.publish(device_topic(device_id, Channel.ANNOUNCE), json.dumps(td).encode(), qos=1, retain=True).wait_for_publish(5)
    client.publish(device_topic(device_id, Channel.STATUS), STATUS_ONLINE, qos=1, retain=True).wait_for_publish(5)
    return client


def test_only_devices_the_registry_finds_eligible_are_asked(tmp_path):
    work, registry, log = tmp_path / "server", tmp_path / "registry", tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(server_command(work, registry), stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "COLUMNS": "300"})  # rich: one line per message
    bad = None
    try:
        accounts = wait_for_accounts(server, work / "accounts.json", log, timeout_s=60)
        bad = announce_malformed(accounts, device_id_of(BAD))
        config = FleetConfig(host=accounts["host"], port=accounts["port"], layer_sizes=LAYERS)
        with MqttFleet(range(BAD), accounts["devices"], config) as fleet:
            server.wait(timeout=90)
            devices = {device_id: (d.seed, d.rounds_done, list(d.refused)) for device_id, d in fleet.devices.items()}
    finally:
        if bad is not None:
            bad.loop_stop()
            bad.disconnect()
        if server.poll() is None:
            server.kill()
            server.wait()
    output = log.read_text()
    assert server.returncode == 0, output

    with open_store(str(registry)) as store:  # the server has closed it
        (model, training_ram), = store.query(TRAINING_RAM).rows
        eligible = set(map(str, (row[2] for row in run_named_query(
            store, "eligible-devices", {"model": model, "task": URIRef("https://w3id.org/tinyfleet/id/task/sine")}).rows)))
        lineage = run_named_query(store, "model-lineage", {"version": URIRef(f"{FEDERATION}/version/{ROUNDS}")})
        rows = [dict(zip(lineage.variables, row)) for row in lineage.rows]
        bad_registered = store.query("ASK { GRAPH ?g { ?s ?p ?o } }", {"g": URIRef(device_iri(device_id_of(BAD)))}).boolean

    # the registry's answer, checked against the boards' own numbers: RAM decides, and it leaves some out
    fits = {device_id_of(s) for s in range(BAD) if profile_for(s).usable_ram_bytes >= int(training_ram)}
    assert eligible == {device_iri(d) for d in fits}, (eligible, int(training_ram))
    assert 2 <= len(fits) < BAD
    for device_id, (seed, rounds_done, refused) in devices.items():
        if device_id in fits:
            continue
        assert rounds_done == 0 and refused == [], (device_id, rounds_done, refused)  # never sent a task
        assert f"device {device_id} excluded: usable RAM {profile_for(seed).usable_ram_bytes:,} B" in output, output
    assert sum(rounds_done for _, rounds_done, _ in devices.values()) == ROUNDS * PER_ROUND

    # every registered version lists only eligible devices
    assert [int(r["number"]) for r in rows] == list(range(ROUNDS, -1, -1)), rows
    trained = {device for r in rows for device in str(r["devices"] or "").split()}
    assert trained and trained <= eligible, (trained, eligible)

    # the malformed TD: refused with the registry's reason, never registered, and the run went on
    assert f"device {device_id_of(BAD)} excluded: Thing Description refused" in output, output
    assert "@context" in output
    assert not bad_registered
    assert f"round {ROUNDS}/{ROUNDS}" in output
