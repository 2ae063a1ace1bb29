"""W3C WoT Thing Description 1.1 of a device, as plain JSON.

A device introduces itself to the registry with a TD: the standard part
(title, security, interaction affordances with MQTT forms) lets any WoT
consumer talk to it, and the TinyFleet part (microcontroller memory,
sensors, runtime, transport) sits under the ``tf`` prefix in its own
``@context`` entry so WoT tools ignore what they do not know and the
registry's SPARQL matchmaking finds it.

This module lives on the device side because a device announces its own TD:
building it needs no RDF library. Only turning a TD into RDF
(``ontology.thing_description.td_to_graph``) does.

>>> from edge.profiles import PROFILES
>>> td = thing_description(PROFILES["nano33ble"], "nano-1")
>>> td["tf:hasMicrocontroller"]["tf:ramBytes"]
176128
"""

from __future__ import annotations

from typing import Any

from edge.identity import device_iri
from edge.profiles import DeviceProfile
from edge.wire.topics import DEVICE_ROOT, model_topic, status_topic

#: The TinyFleet ontology's namespace (``ontology.vocab.TF`` is the rdflib view of it).
TF_NAMESPACE = "https://w3id.org/tinyfleet#"
TD_CONTEXT_URL = "https://www.w3.org/2022/wot/td/v1.1"
#: TinyFleet's own context entry, placed after the TD context.
# ``mqv`` is the namespace the W3C WoT MQTT binding template uses for topic terms.
TF_CONTEXT: dict[str, str] = {"tf": TF_NAMESPACE, "mqv": "http://www.example.org/mqtt-binding#"}
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"

#: Ontology class (local name under tf:) of each sensor kind a profile may list.
SENSOR_CLASSES: dict[str, str] = {
    "microphone": "Microphone",
    "camera": "Camera",
    "accelerometer": "Accelerometer",
    "gyroscope": "Gyroscope",
    "magnetometer": "Magnetometer",
    "temperature": "TemperatureSensor",
    "humidity": "HumiditySensor",
    "pressure": "PressureSensor",
    "light": "LightSensor",
    "proximity": "ProximitySensor",
    "gesture": "GestureSensor",
    "co2": "CO2Sensor",
    "pir": "PIRSensor",
}

#: Ontology individual (local name under tf:) of each runtime a profile may name.
RUNTIMES: dict[str, str] = {"tflite-micro": "TFLiteMicro", "litert": "LiteRT"}


def sensor_class(kind: str) -> str:
    """Ontology class IRI for a sensor kind ('microphone' -> tf:Microphone).

    Unknown kinds raise KeyError listing the known ones: a device claiming a
    sensor the ontology cannot name could never be matched to a task.
    """
    try:
        return TF_NAMESPACE + SENSOR_CLASSES[kind]
    except KeyError:
        raise KeyError(f"unknown sensor kind {kind!r}; known: {', '.join(sorted(SENSOR_CLASSES))}") from None


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
        "tf:hasSensor": [{"@type": "tf:" + sensor_class(kind)[len(TF_NAMESPACE):]} for kind in profile.sensors],
        "tf:supportsRuntime": {"@id": f"tf:{RUNTIMES[profile.runtime]}"},
        "tf:hasTransport": transports,
    }
