"""W3C WoT Thing Description 1.1 for a device profile, and TD -> RDF.

A device introduces itself to the registry with a TD: the standard part
(title, security, interaction affordances with MQTT forms) lets any WoT
consumer talk to it, and the TinyFleet part (microcontroller memory,
sensors, runtime, transport) sits under the ``tf`` prefix in its own
``@context`` entry so WoT tools ignore what they do not know and our SPARQL
matchmaking finds it. The RDF of a device is *derived from its TD* (one
source of truth), with the TD context inlined from ``contexts/``: nothing is
fetched at run time.

>>> from firmware_sim.profiles import PROFILES
>>> td = thing_description(PROFILES["nano33ble"], "nano-1")
>>> td["tf:hasMicrocontroller"]["tf:ramBytes"]
176128
"""

from __future__ import annotations

import json
import re
from typing import Any

from rdflib import Graph

from edge.wire.topics import DEVICE_ROOT, model_topic, status_topic
from firmware_sim.profiles import DeviceProfile
from ontology.rdf_input import InvalidRDF, inline_contexts
from ontology.vocab import RESOURCE_BASE, RUNTIMES, SENSOR_CLASSES, TF, sensor_class

TD_CONTEXT_URL = "https://www.w3.org/2022/wot/td/v1.1"
#: TinyFleet's own context entry, placed after the TD context.
# ``mqv`` is the namespace the W3C WoT MQTT binding template uses for topic terms.
TF_CONTEXT: dict[str, str] = {"tf": str(TF), "mqv": "http://www.example.org/mqtt-binding#"}
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def device_iri(device_id: str) -> str:
    """IRI of a device in the registry; ``device_id`` is restricted so it cannot break the IRI."""
    if not _DEVICE_ID.match(device_id):
        raise ValueError(f"device id {device_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return f"{RESOURCE_BASE}device/{device_id}"


def thing_description(
    profile: DeviceProfile,
    device_id: str,
    *,
    broker: str = DEFAULT_BROKER,
    flower_node_id: int | None = None,
) -> dict[str, Any]:
    """TD 1.1 of one device of kind ``profile``: telemetry/model-update affordances over MQTT plus tf: facts."""
    iri = device_iri(device_id)
    topic = f"{DEVICE_ROOT}/{device_id}"  # the device's subtree in the wire protocol (docs/protocol.md)
    transports: list[dict[str, Any]] = [
        {
            "@type": "tf:MQTTTransport",
            "tf:mqttTopic": topic,
            "tf:brokerURI": broker,
            "tf:radio": profile.radio,
            "tf:bitrateBps": profile.radio_bitrate_bps,
        }
    ]
    if flower_node_id is not None:
        transports.append({"@type": "tf:FlowerNode", "tf:flowerNodeId": str(flower_node_id)})
    return {
        "@context": [TD_CONTEXT_URL, dict(TF_CONTEXT)],
        "@type": ["Thing", "tf:Device"],
        "id": iri,
        "title": f"{profile.board} ({device_id})",
        "description": f"TinyFleet device of profile '{profile.name}' running {profile.runtime}.",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
        "properties": {
            "status": {
                "title": "Learner status",
                "type": "object",
                "readOnly": True,
                "observable": True,
                "forms": [{"href": f"{broker}", "mqv:topic": status_topic(device_id), "op": ["readproperty", "observeproperty"]}],
            }
        },
        "actions": {
            "updateModel": {
                "title": "Receive model weights for a federation round",
                "forms": [{"href": f"{broker}", "mqv:topic": model_topic(device_id), "op": "invokeaction"}],
            }
        },
        "tf:hasMicrocontroller": {
            "@type": "tf:Microcontroller",
            "tf:architecture": profile.architecture,
            "tf:ramBytes": profile.usable_ram_bytes,
            "tf:flashBytes": profile.usable_flash_bytes,
            "tf:totalRamBytes": profile.ram_bytes,
            "tf:totalFlashBytes": profile.flash_bytes,
            "tf:clockHz": profile.clock_hz,
            "tf:hasFPU": profile.has_fpu,
        },
        "tf:hasSensor": [{"@type": _compact(sensor_class(kind))} for kind in profile.sensors],
        "tf:supportsRuntime": {"@id": f"tf:{RUNTIMES[profile.runtime]}"},
        "tf:hasTransport": transports,
    }


def _compact(iri: str) -> str:
    return "tf:" + iri[len(str(TF)) :]


def td_to_graph(td: dict[str, Any] | str | bytes) -> Graph:
    """RDF of a TD (dict or JSON text) with every known context inlined; InvalidRDF if it cannot be read."""
    if isinstance(td, (str, bytes)):
        try:
            td = json.loads(td)
        except json.JSONDecodeError as exc:
            raise InvalidRDF(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(td, dict):
        raise InvalidRDF("a Thing Description must be a JSON object")
    document = inline_contexts(td)
    graph = Graph()
    try:
        graph.parse(data=json.dumps(document), format="json-ld", base=RESOURCE_BASE)
    except Exception as exc:  # rdflib's JSON-LD errors have no common base class
        raise InvalidRDF(f"invalid JSON-LD in Thing Description: {exc}") from None
    return graph


__all__ = ["TD_CONTEXT_URL", "TF_CONTEXT", "device_iri", "td_to_graph", "thing_description", "SENSOR_CLASSES"]
