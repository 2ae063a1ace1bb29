from edge.wire.topics import DEVICE_ROOT, model_topic, status_topic
from edge.profiles import PROFILES
from ontology.thing_description import thing_description


def test_a_devices_td_names_the_topics_the_wire_protocol_uses():
    td = thing_description(PROFILES["nano33ble"], "sine-7")
    assert td["tf:hasTransport"][0]["tf:mqttTopic"] == f"{DEVICE_ROOT}/sine-7"
    assert td["properties"]["status"]["forms"][0]["mqv:topic"] == status_topic("sine-7")
    assert td["actions"]["updateModel"]["forms"][0]["mqv:topic"] == model_topic("sine-7")
