"""Which devices are online, as the broker says: the console's own MQTT subscription to the fleet's status.

Every device keeps a retained ``online`` on ``tinyfleet/v1/dev/{id}/status``
and registers a retained ``offline`` as its Last Will, which the broker
publishes when the device's connection drops (:mod:`edge.wire.topics`). A
subscriber therefore learns the whole fleet's state the moment it connects
(the retained messages) and every change after. The console also takes the
retained announce (the TD, for a fleet without a registry) and the per-round
telemetry (bytes and energy each device booked). It never subscribes to the
UPDATE channel, so it costs the broker no model-sized copies, and it only
reads: its client publishes nothing.

Why a connection of its own rather than a hook into the server's grid: a
standalone console has no grid, and a second subscriber costs the round
nothing (the broker fans out; this client's callbacks only write a dict).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from edge import record_keys as keys
from edge.wire.errors import WireFormatError
from edge.wire.topics import DEVICE_ROOT, Channel, parse_device_topic, parse_status
from server.console.sources import BrokerAddress

log = logging.getLogger(__name__)

#: The channels the console reads (every device's, ``+`` = one device id).
SUBSCRIBED = (Channel.STATUS, Channel.ANNOUNCE, Channel.TELEMETRY)


@dataclass
class DeviceSeen:
    """What the broker has told the console about one device."""

    online: bool | None = None  # None: no status yet
    last_seen: float | None = None  # wall-clock time of its last message (status, announce or telemetry)
    changed: float | None = None  # when ``online`` last changed
    td: dict[str, Any] | None = None  # its retained announce
    telemetry_rounds: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    energy_j: float = 0.0
    telemetry_rounds_seen: set[int] = field(default_factory=set)  # round ids already counted (QoS 0 may repeat)


class Presence:
    """A read-only MQTT client that keeps :class:`DeviceSeen` for every device id it hears of.

    ``version`` grows with every change, so a stream can tell cheaply whether there is news.
    ``connected`` and ``error`` say how the subscription itself is doing (shown on the page).
    """

    def __init__(self, broker: BrokerAddress, client_id: str = "tinyfleet-console") -> None:
        self.broker = broker
        self.version = 0
        self.connected = False
        self.error: str | None = None
        self.on_change: Callable[[], None] | None = None  # called on paho's thread after each change (cheap!)
        self._devices: dict[str, DeviceSeen] = {}
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-{id(self):x}",
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(broker.username, broker.password)
        if broker.tls_ca:
            self._client.tls_set(ca_certs=broker.tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.5, 5)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (a broker that is not up yet is retried; the page says so meanwhile)."""
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho's network thread -------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            self.error = f"the broker {self.broker} refused the console: {reason}"
            self.connected = False
        else:
            self.error = None
            self.connected = True
            client.subscribe([(f"{DEVICE_ROOT}/+/{c.value}", 1) for c in SUBSCRIBED])
        self._bump()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        self.connected = False
        if reason is not None and getattr(reason, "is_failure", False):
            self.error = f"lost the broker {self.broker}: {reason} (reconnecting)"
        self._bump()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            device_id, channel = parse_device_topic(msg.topic)
            with self._lock:
                seen = self._devices.setdefault(device_id, DeviceSeen())
                seen.last_seen = time.time()
                if channel is Channel.STATUS:
                    online = parse_status(msg.payload)
                    if online != seen.online:
                        seen.online, seen.changed = online, seen.last_seen
                elif channel is Channel.ANNOUNCE:
                    td = json.loads(msg.payload) if msg.payload else None
                    seen.td = td if isinstance(td, dict) else None
                elif channel is Channel.TELEMETRY:
                    _count_telemetry(seen, json.loads(msg.payload))
                self.version += 1
        except (WireFormatError, ValueError, TypeError) as exc:  # a device's bad payload changes nothing here
            log.debug("console ignored %s: %s", msg.topic, exc)
            return
        self._changed()

    def _bump(self) -> None:
        with self._lock:
            self.version += 1
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- readers -------------------------------------------------------------------

    def devices(self) -> dict[str, DeviceSeen]:
        """A copy of what is known, by device id."""
        with self._lock:
            return {device: DeviceSeen(**{**vars(seen), "telemetry_rounds_seen": set()})
                    for device, seen in self._devices.items()}


def _count_telemetry(seen: DeviceSeen, values: Any) -> None:
    """Add one round's bytes and energy (a repeated QoS-0 telemetry of the same round id counts once)."""
    if not isinstance(values, dict):
        return
    round_id = values.get("round-id")
    if isinstance(round_id, int):
        if round_id in seen.telemetry_rounds_seen:
            return
        seen.telemetry_rounds_seen.add(round_id)
    seen.telemetry_rounds += 1
    for attribute, key in (("bytes_up", keys.BYTES_SENT), ("bytes_down", keys.BYTES_RECEIVED)):
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            setattr(seen, attribute, getattr(seen, attribute) + int(value))
    energy = values.get(keys.DEVICE_ENERGY_J)
    if isinstance(energy, (int, float)) and not isinstance(energy, bool) and energy >= 0:
        seen.energy_j += float(energy)
