"""Flower's ``Grid`` over MQTT: the same strategies drive microcontrollers.

``strategy.start(grid=MqttGrid(...))`` runs TinyReptile or TinyMetaFed
unchanged. Devices are Flower nodes: a device id becomes a stable node id
(:func:`server.transports.mqtt_rounds.node_id_of`) once its retained status is ``online``
and its Thing Description is announced; ``offline`` (its Last Will) removes it.
Two optional hooks let a caller choose among them without the grid knowing
how: ``on_announce(device_id, td)`` hears every announced Thing Description
(``None`` when a device clears it) on paho's network thread, under the grid's
lock, so it must only take note; ``device_filter(device_ids)`` narrows the
available devices on the thread that asks for node ids (e.g. to those a
registry finds eligible, :mod:`server.registry.registry_selection`).

Each ``push_messages`` call is one wire round with a fresh 32-bit ``round_id``
(random base, so a restarted server never takes the previous incarnation's
replies). A reply is accepted only from the topic of the device that was
asked, for that round, once; everything else is dropped with a logged reason
and counted in :attr:`MqttGrid.drops` (``late``, ``duplicate``,
``unsolicited``, ``foreign-device``, ``non-finite``, ``spec-mismatch``, ...).

``send_and_receive`` closes a round when every live device asked has replied,
or ``grace_s`` after a quorum has, or at the round deadline; devices that go
offline mid-round are not waited for. Every wait has a deadline. Its replies
come in node-id order, not arrival order, so an average over them adds the
same numbers in the same order every run.

Meta-learned step sizes: a message with a ``step-sizes`` record is published
as MODEL, STEP_SIZES and task; the device answers HYPERGRADIENT, then UPDATE,
on its update topic. The hypergradient is checked on its own and kept until
the UPDATE of the same device and round arrives, which carries it into the
reply; a refused one is dropped with its reason like a bad UPDATE, and the
UPDATE still counts (θ is updated, the step sizes just miss that device).
"""

from __future__ import annotations

import collections
import logging
import math
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from flwr.app import Message

from edge.wire import Channel, WireFormatError, parse_announce, parse_device_topic, parse_status, parse_telemetry
from edge.wire import read_header, server_subscriptions
from edge.wire.codec import DEFAULT_MAX_PAYLOAD, MessageKind
from edge.wire.topics import QOS, SERVER_STATUS, STATUS_FINISHED, STATUS_OFFLINE, STATUS_ONLINE, device_topic, server_last_will
from server.transports.mqtt_rounds import Hypergradient, WireRequest, hypergradient_from_payload, node_id_of, reply_from_update
from server.transports.mqtt_rounds import to_wire
from server.transports.own_grid import OwnGrid

log = logging.getLogger(__name__)

#: Hears a device's announced Thing Description (``None``: cleared); runs on paho's network thread.
AnnounceHook = Callable[[str, "dict | None"], None]
#: Narrows the available device ids (online and announced) to those the grid may offer as nodes.
DeviceFilter = Callable[[Sequence[str]], Iterable[str]]


@dataclass(frozen=True)
class MqttGridConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None  # CA certificate file; set to use TLS
    client_id: str = "tinyfleet-server"
    round_timeout_s: float = 30.0  # wall-clock deadline of one round (capped by the strategy's timeout)
    quorum: float = 1.0  # fraction of asked devices whose replies close the round early
    grace_s: float = 0.5  # once the quorum replied, wait this long for stragglers
    device_deadline_s: float = 20.0  # told to devices in the task (relative to receipt)
    connect_timeout_s: float = 10.0
    max_payload: int = DEFAULT_MAX_PAYLOAD

    def __post_init__(self) -> None:
        if not 0.0 < self.quorum <= 1.0:
            raise ValueError(f"quorum is a fraction in (0, 1], got {self.quorum}")
        if min(self.round_timeout_s, self.device_deadline_s, self.connect_timeout_s) <= 0 or self.grace_s < 0:
            raise ValueError("timeouts must be > 0 and grace_s >= 0")


@dataclass
class _Device:
    online: bool = False
    announced: bool = False
    telemetry: dict | None = None


class MqttGrid(OwnGrid):
    """A Flower Grid whose nodes are MQTT devices speaking the TinyFleet wire protocol."""

    #: A node id is a hash of the device id (edge.identity.node_id_of): the same device every run.
    stable_node_ids = True

    def __init__(
        self,
        config: MqttGridConfig,
        run_id: int = 1,
        *,
        device_filter: DeviceFilter | None = None,
        on_announce: AnnounceHook | None = None,
    ) -> None:
        super().__init__(run_id)
        self.config = config
        self.device_filter = device_filter
        self.on_announce = on_announce
        self._lock = threading.Condition()
        self._devices: dict[str, _Device] = {}
        self._pending: dict[tuple[str, int], WireRequest] = {}  # (device, round) -> request
        self._by_message: dict[str, tuple[str, int]] = {}
        self._replies: dict[str, Message] = {}
        self._answered: set[tuple[str, int]] = set()  # a second reply is a duplicate
        self._expired: set[tuple[str, int]] = set()  # closed without a reply: a later one is late
        self._hypergradients: dict[tuple[str, int], Hypergradient] = {}  # waiting for the UPDATE of that round
        self._next_round = secrets.randbits(31)
        self.drops: collections.Counter[str] = collections.Counter()
        self.round_log: list[dict] = []  # one entry per closed round: asked, replied, why closed
        self._client = self._make_client()
        self._connected = threading.Event()
        self._closing = False
        self._finished = False  # finish() was called: close() says "finished", not "offline"
        self._client.connect_async(config.host, config.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(config.connect_timeout_s):
            self.close()
            raise ConnectionError(f"no MQTT connection to {config.host}:{config.port} within {config.connect_timeout_s} s")

    # ------------------------------------------------------------ MQTT transport

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.config.client_id, protocol=mqtt.MQTTv5)
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password)
        if self.config.tls_ca:
            client.tls_set(ca_certs=self.config.tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        will = server_last_will()
        client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.reconnect_delay_set(0.05, 2.0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the server: %s", reason)
            return
        client.subscribe(server_subscriptions())  # again after every reconnect: clean sessions
        client.publish(SERVER_STATUS, STATUS_ONLINE, qos=1, retain=True)
        self._connected.set()
        log.info("server connected to %s:%s", self.config.host, self.config.port)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object) -> None:
        if not self._closing:
            log.warning("server lost the broker (%s); reconnecting", reason)

    def _drop(self, device_id: str, channel: str, code: str, reason: str) -> None:
        self.drops[code] += 1
        log.warning("dropped %s from %s: %s (%s)", channel, device_id, code, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            device_id, channel = parse_device_topic(msg.topic)
        except WireFormatError as exc:
            self._drop("?", msg.topic, exc.code, exc.reason)
            return
        try:
            if channel is Channel.UPDATE:
                self._on_update(device_id, msg.payload)
                return
            with self._lock:
                device = self._devices.setdefault(device_id, _Device())
                if channel is Channel.STATUS:
                    device.online = parse_status(msg.payload)
                    if not device.online:
                        self._lock.notify_all()  # a round may stop waiting for it
                elif channel is Channel.ANNOUNCE:
                    td = parse_announce(msg.payload) if msg.payload else None
                    device.announced = isinstance(td, dict)
                    if self.on_announce is not None:  # under the lock: no one sees it announced before the hook has
                        self.on_announce(device_id, td)
                elif channel is Channel.TELEMETRY:
                    device.telemetry = parse_telemetry(msg.payload)
        except WireFormatError as exc:
            self._drop(device_id, channel.value, exc.code, exc.reason)
        except Exception:  # a callback must never kill the network thread
            log.exception("unexpected error handling %s", msg.topic)

    def _on_update(self, device_id: str, payload: bytes) -> None:
        try:
            header = read_header(payload, max_size=self.config.max_payload)
        except WireFormatError as exc:
            self._drop(device_id, "update", exc.code, exc.reason)
            return
        key = (device_id, header.round_id)
        channel = "hypergradient" if header.kind is MessageKind.HYPERGRADIENT else "update"
        with self._lock:
            request = self._pending.get(key)
            if request is None:
                code = "duplicate" if key in self._answered else "late" if key in self._expired else "unsolicited"
                self._drop(device_id, channel, code, f"no open request for round {header.round_id}")
                return
        if header.kind is MessageKind.HYPERGRADIENT:
            self._on_hypergradient(device_id, key, request, payload)
            return
        try:
            with self._lock:
                hypergradient = self._hypergradients.get(key)
            reply = reply_from_update(request, payload, self.config.max_payload, hypergradient)
        except WireFormatError as exc:
            self._drop(device_id, "update", exc.code, exc.reason)
            return
        with self._lock:
            if self._pending.pop(key, None) is None:  # answered meanwhile by a twin payload
                self._drop(device_id, "update", "duplicate", f"round {header.round_id} already answered")
                return
            self._hypergradients.pop(key, None)
            self._answered.add(key)
            self._replies[request.message.metadata.message_id] = reply
            self._lock.notify_all()

    def _on_hypergradient(self, device_id: str, key: tuple[str, int], request: WireRequest, payload: bytes) -> None:
        """Keep a checked HYPERGRADIENT for the UPDATE of its round; a refused one is dropped alone."""
        try:
            hypergradient = hypergradient_from_payload(request, payload, self.config.max_payload)
        except WireFormatError as exc:
            self._drop(device_id, "hypergradient", exc.code, f"{exc.reason}; its UPDATE still counts")
            return
        with self._lock:
            if key in self._hypergradients:
                self._drop(device_id, "hypergradient", "duplicate", f"round {key[1]} already has a hypergradient")
                return
            if key in self._pending:
                self._hypergradients[key] = hypergradient

    # ------------------------------------------------------------ Grid interface

    def _device_of(self, node_id: int) -> str | None:
        with self._lock:
            for device_id, device in self._devices.items():
                if device.online and device.announced and node_id_of(device_id) == node_id:
                    return device_id
        return None

    def get_node_ids(self) -> list[int]:
        return sorted(node_id_of(d) for d in self.device_ids())

    def device_ids(self) -> list[str]:
        """Ids of the devices currently available (online and announced), narrowed by ``device_filter``."""
        with self._lock:
            available = sorted(d for d, s in self._devices.items() if s.online and s.announced)
        if self.device_filter is None:
            return available
        chosen = set(self.device_filter(available))  # outside the lock: it may do slow work (a registry)
        return [d for d in available if d in chosen]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Publish MODEL then task to each destination device; one fresh wire round for the batch."""
        with self._lock:
            round_id = self._next_round
            self._next_round = (self._next_round + 1) & 0xFFFFFFFF
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            device_id = self._device_of(message.metadata.dst_node_id)
            if device_id is None:
                log.warning("node %s is not an available device; message not sent", message.metadata.dst_node_id)
                continue
            try:
                request = to_wire(message, device_id, round_id, self.config.device_deadline_s, self.config.max_payload)
            except (WireFormatError, ValueError) as exc:
                log.error("cannot send round %d to %s: %s", round_id, device_id, exc)
                continue
            with self._lock:
                self._pending[(device_id, round_id)] = request
                self._by_message[message.metadata.message_id] = (device_id, round_id)
            self._client.publish(device_topic(device_id, Channel.MODEL), request.model, qos=QOS[Channel.MODEL])
            if request.step_sizes is not None:  # same topic and QoS: the device gets it after the MODEL
                self._client.publish(device_topic(device_id, Channel.MODEL), request.step_sizes, qos=QOS[Channel.MODEL])
            self._client.publish(device_topic(device_id, Channel.TASK), request.task, qos=QOS[Channel.TASK])
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        with self._lock:
            return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def _expire(self, message_ids: Iterable[str]) -> None:
        """Close the requests of these messages: a reply arriving later is dropped as late."""
        with self._lock:
            for message_id in message_ids:
                key = self._by_message.pop(message_id, None)
                if key is not None and self._pending.pop(key, None) is not None:
                    self._expired.add(key)
                if key is not None:
                    self._hypergradients.pop(key, None)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        ids = self.push_messages(messages)
        if not ids:
            return []
        limit = self.config.round_timeout_s if timeout is None else min(timeout, self.config.round_timeout_s)
        deadline = time.monotonic() + limit
        need = math.ceil(self.config.quorum * len(ids))
        replies: list[Message] = []
        quorum_at: float | None = None
        waiting = set(ids)
        reason = "deadline"
        with self._lock:
            while True:
                for message_id in list(waiting):
                    if message_id in self._replies:
                        replies.append(self._replies.pop(message_id))
                        waiting.discard(message_id)
                    elif not self._devices.get(self._by_message.get(message_id, ("", 0))[0], _Device()).online:
                        waiting.discard(message_id)  # went offline (Last Will): do not wait for it
                        log.warning("device of message %s went offline mid-round", message_id)
                now = time.monotonic()
                if not waiting:
                    reason = "all live devices replied"
                    break
                if len(replies) >= need and quorum_at is None:
                    quorum_at = now
                if quorum_at is not None and now >= quorum_at + self.config.grace_s:
                    reason = "quorum + grace"
                    break
                if now >= deadline:
                    break
                wake = deadline if quorum_at is None else min(deadline, quorum_at + self.config.grace_s)
                self._lock.wait(max(0.0, min(wake - now, 0.5)))
        self._expire(ids)
        replies.sort(key=lambda reply: reply.metadata.src_node_id)  # arrival order varies from run to run
        if len(replies) < need:
            log.warning("round closed (%s) with %d of %d replies (quorum %d)", reason, len(replies), len(ids), need)
        self.round_log.append({"asked": len(ids), "replied": len(replies), "closed": reason})
        return replies

    def finish(self) -> None:
        """Say the federation has ended (retained ``finished``): devices waiting for rounds may leave."""
        self._finished = True

    def close(self) -> None:
        """Publish ``finished`` (after :meth:`finish`) or ``offline``, disconnect and stop the network thread."""
        self._closing = True
        status = STATUS_FINISHED if self._finished else STATUS_OFFLINE
        try:
            if self._client.is_connected():
                self._client.publish(SERVER_STATUS, status, qos=1, retain=True).wait_for_publish(2.0)
        except (RuntimeError, ValueError):
            pass
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttGrid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
