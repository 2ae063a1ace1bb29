"""MQTT topic layout: pure string functions and the device id validator."""

from __future__ import annotations

import pytest

from edge.wire import Channel, WireFormatError, check_device_id, device_subscriptions, last_will, parse_device_topic, parse_status, server_subscriptions
from edge.wire.topics import (
    DEVICE_PUBLISHES,
    QOS,
    RETAINED,
    SERVER_STATUS,
    announce_topic,
    model_topic,
    mosquitto_acl_patterns,
    server_last_will,
    status_topic,
    task_topic,
    telemetry_topic,
    update_topic,
)


def test_per_device_topics() -> None:
    assert announce_topic("sine-1") == "tinyfleet/v1/dev/sine-1/announce"
    assert status_topic("sine-1") == "tinyfleet/v1/dev/sine-1/status"
    assert telemetry_topic("sine-1") == "tinyfleet/v1/dev/sine-1/telemetry"
    assert update_topic("sine-1") == "tinyfleet/v1/dev/sine-1/update"
    assert task_topic("sine-1") == "tinyfleet/v1/dev/sine-1/task"
    assert model_topic("sine-1") == "tinyfleet/v1/dev/sine-1/model"
    assert RETAINED == {Channel.ANNOUNCE, Channel.STATUS}
    assert QOS[Channel.TELEMETRY] == 0 and QOS[Channel.UPDATE] == 1


def test_last_will_is_retained_offline_status() -> None:
    will = last_will("mcu-7")
    assert (will.topic, will.payload, will.qos, will.retain) == ("tinyfleet/v1/dev/mcu-7/status", b"offline", 1, True)
    assert server_last_will().topic == SERVER_STATUS
    assert parse_status(b"online") is True and parse_status(b"offline") is False
    with pytest.raises(WireFormatError, match="neither"):
        parse_status(b"OFFLINE")


def test_subscriptions() -> None:
    assert device_subscriptions("d1") == [("tinyfleet/v1/dev/d1/task", 1), ("tinyfleet/v1/dev/d1/model", 1)]
    assert server_subscriptions() == [
        ("tinyfleet/v1/dev/+/announce", 1),
        ("tinyfleet/v1/dev/+/status", 1),
        ("tinyfleet/v1/dev/+/telemetry", 0),
        ("tinyfleet/v1/dev/+/update", 1),
    ]


def topic_matches(filter_: str, topic: str) -> bool:
    f, t = filter_.split("/"), topic.split("/")
    return len(f) == len(t) and all(a in ("+", b) for a, b in zip(f, t))


def test_server_filters_match_exactly_the_device_outgoing_topics() -> None:
    filters = [f for f, _ in server_subscriptions()]
    for channel in Channel:
        topic = f"tinyfleet/v1/dev/x.1/{channel.value}"
        assert any(topic_matches(f, topic) for f in filters) == (channel in DEVICE_PUBLISHES)


def test_parse_device_topic_round_trips() -> None:
    for channel in Channel:
        assert parse_device_topic(f"tinyfleet/v1/dev/urn:dev:42/{channel.value}") == ("urn:dev:42", channel)


@pytest.mark.parametrize(
    "topic",
    [
        "tinyfleet/v2/dev/a/update",
        "tinyfleet/v1/dev/a/b/update",
        "tinyfleet/v1/dev//update",
        "tinyfleet/v1/dev/a/firmware",
        "tinyfleet/v1/dev/a",
        "tinyfleet/v1/dev/+/update",
        "tinyfleet/v1/dev/#",
        "tinyfleet/v1/dev/a b/update",
        "tinyfleet/v1/server/status",
    ],
)
def test_parse_device_topic_refuses(topic) -> None:
    with pytest.raises(WireFormatError) as info:
        parse_device_topic(topic)
    assert info.value.code == WireFormatError.BAD_TOPIC


@pytest.mark.parametrize(
    "device_id", ["a/b", "+", "dev#1", "dev\x00", "dev\n", "tab\t", "sp ace", "$SYS", "caf\u00e9", "", "x" * 65, "\x7f"]
)
def test_device_id_validator_refuses(device_id) -> None:
    with pytest.raises(WireFormatError) as info:
        check_device_id(device_id)
    assert info.value.code == WireFormatError.BAD_DEVICE_ID
    with pytest.raises(WireFormatError):
        update_topic(device_id)


@pytest.mark.parametrize("device_id", ["sine-12345", "mcu_0001", "urn:uuid:123e4567-e89b-12d3-a456-426614174000", "a.b", "x" * 64])
def test_device_id_validator_accepts(device_id) -> None:
    assert check_device_id(device_id) == device_id


def test_device_id_refuses_non_strings() -> None:
    with pytest.raises(WireFormatError, match="must be a str"):
        check_device_id(b"dev")  # type: ignore[arg-type]


def test_mosquitto_acl_patterns() -> None:
    lines = mosquitto_acl_patterns()
    assert "pattern write tinyfleet/v1/dev/%u/update" in lines
    assert "pattern read tinyfleet/v1/dev/%u/model" in lines
    assert not any("write" in line and ("task" in line or "model" in line) for line in lines)
    assert all("#" not in line and "+" not in line for line in lines)
    assert mosquitto_acl_patterns("%c")[0].startswith("pattern write tinyfleet/v1/dev/%c/")
