"""MQTT topic layout (wire protocol v1): pure string functions, no MQTT client.

Every device owns one subtree ``tinyfleet/v1/dev/{device_id}/``; the broker ACL
lets a device write only its own ``announce``, ``status``, ``telemetry`` and
``update`` and read only its own ``task`` and ``model``. The version is part of
the prefix, so a v2 fleet can share a broker with v1 devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edge.wire.codec import check_device_id
from edge.wire.errors import WireFormatError

PREFIX = "tinyfleet/v1"
DEVICE_ROOT = f"{PREFIX}/dev"
SERVER_STATUS = f"{PREFIX}/server/status"  # retained "online"/"offline" (server's Last Will)/"finished"

STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"
#: The server's status once its federation has ended (retained): devices that see it may leave.
STATUS_FINISHED = b"finished"


class Channel(str, Enum):
    # device -> server
    ANNOUNCE = "announce"  # JSON Thing Description, retained, QoS 1
    STATUS = "status"  # b"online" / b"offline", retained, QoS 1; Last Will b"offline"
    TELEMETRY = "telemetry"  # JSON, QoS 0
    UPDATE = "update"  # binary UPDATE payload, QoS 1
    # server -> device
    TASK = "task"  # JSON task assignment, QoS 1
    MODEL = "model"  # binary MODEL payload, QoS 1

    @property
    def from_device(self) -> bool:
        return self in _FROM_DEVICE


_FROM_DEVICE = frozenset({Channel.ANNOUNCE, Channel.STATUS, Channel.TELEMETRY, Channel.UPDATE})
DEVICE_PUBLISHES = tuple(c for c in Channel if c in _FROM_DEVICE)
DEVICE_SUBSCRIBES = tuple(c for c in Channel if c not in _FROM_DEVICE)

QOS: dict[Channel, int] = {
    Channel.ANNOUNCE: 1,
    Channel.STATUS: 1,
    Channel.TELEMETRY: 0,
    Channel.UPDATE: 1,
    Channel.TASK: 1,
    Channel.MODEL: 1,
}
RETAINED: frozenset[Channel] = frozenset({Channel.ANNOUNCE, Channel.STATUS})


def device_topic(device_id: str, channel: Channel | str) -> str:
    """``tinyfleet/v1/dev/{device_id}/{channel}``; refuses an unsafe device id."""
    check_device_id(device_id)
    try:
        channel = Channel(channel)
    except ValueError:
        raise WireFormatError(WireFormatError.BAD_TOPIC, f"unknown channel {channel!r}") from None
    return f"{DEVICE_ROOT}/{device_id}/{channel.value}"


def announce_topic(device_id: str) -> str:
    return device_topic(device_id, Channel.ANNOUNCE)


def status_topic(device_id: str) -> str:
    return device_topic(device_id, Channel.STATUS)


def telemetry_topic(device_id: str) -> str:
    return device_topic(device_id, Channel.TELEMETRY)


def update_topic(device_id: str) -> str:
    return device_topic(device_id, Channel.UPDATE)


def task_topic(device_id: str) -> str:
    return device_topic(device_id, Channel.TASK)


def model_topic(device_id: str) -> str:
    return device_topic(device_id, Channel.MODEL)


@dataclass(frozen=True)
class LastWill:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def last_will(device_id: str) -> LastWill:
    """The Last Will a device registers at CONNECT: retained ``offline`` on its status topic."""
    return LastWill(status_topic(device_id), STATUS_OFFLINE, QOS[Channel.STATUS], True)


def server_last_will() -> LastWill:
    return LastWill(SERVER_STATUS, STATUS_OFFLINE, 1, True)


def device_subscriptions(device_id: str) -> list[tuple[str, int]]:
    """What a device subscribes to: its own task and model topics, with their QoS."""
    return [(device_topic(device_id, c), QOS[c]) for c in DEVICE_SUBSCRIBES]


def server_subscriptions() -> list[tuple[str, int]]:
    """What the server subscribes to: every device's outgoing channels (``+`` = one device id)."""
    return [(f"{DEVICE_ROOT}/+/{c.value}", QOS[c]) for c in DEVICE_PUBLISHES]


def parse_device_topic(topic: str) -> tuple[str, Channel]:
    """Split ``tinyfleet/v1/dev/{device_id}/{channel}`` into (device_id, channel), or refuse it."""
    if not isinstance(topic, str):
        raise WireFormatError(WireFormatError.BAD_TOPIC, f"topic must be a str, got {type(topic).__name__}")
    head = DEVICE_ROOT + "/"
    if not topic.startswith(head):
        raise WireFormatError(WireFormatError.BAD_TOPIC, f"topic {topic!r} is not under {head!r}")
    parts = topic[len(head) :].split("/")
    if len(parts) != 2:
        raise WireFormatError(WireFormatError.BAD_TOPIC, f"topic {topic!r} is not {head}<device-id>/<channel>")
    device_id, channel = parts
    try:
        check_device_id(device_id)
    except WireFormatError as exc:
        raise WireFormatError(WireFormatError.BAD_TOPIC, f"topic {topic!r}: {exc.reason}") from None
    try:
        return device_id, Channel(channel)
    except ValueError:
        raise WireFormatError(WireFormatError.BAD_TOPIC, f"topic {topic!r} has unknown channel {channel!r}") from None


def parse_status(payload: bytes) -> bool:
    """True for ``online``, False for ``offline``; anything else is refused."""
    if payload == STATUS_ONLINE:
        return True
    if payload == STATUS_OFFLINE:
        return False
    raise WireFormatError(WireFormatError.BAD_FIELD, f"status payload {bytes(payload[:32])!r} is neither 'online' nor 'offline'")


def mosquitto_acl_patterns(substitution: str = "%u") -> list[str]:
    """Mosquitto ``acl_file`` pattern lines confining every device to its own subtree.

    ``substitution`` is ``%u`` when the broker username is the device id (the
    default) or ``%c`` when the client id is. The server's own user needs a
    separate ``user <name>`` block with ``topic readwrite tinyfleet/v1/#``.
    """
    if substitution not in ("%u", "%c"):
        raise ValueError("substitution must be '%u' or '%c'")
    lines = [f"pattern write {DEVICE_ROOT}/{substitution}/{c.value}" for c in DEVICE_PUBLISHES]
    lines += [f"pattern read {DEVICE_ROOT}/{substitution}/{c.value}" for c in DEVICE_SUBSCRIBES]
    lines.append(f"pattern read {SERVER_STATUS}")
    return lines
