"""Hundreds of simulated microcontrollers in one process, each its own MQTT client.

Every :class:`MqttDevice` is an independent paho client with its own
credentials and Last Will, speaking only the wire protocol: it announces its
Thing Description and ``online`` (both retained), waits for a MODEL and a
task with the same ``round_id`` (and, when the task asks for a step-size
measurement, the round's STEP_SIZES payload), runs
:func:`firmware_sim.mqtt_round.run_task` and publishes its HYPERGRADIENT (if
any), UPDATE and telemetry. Training runs on a shared worker
pool so a device's network thread stays responsive (keepalive, Last Will).

:meth:`MqttDevice.crash` drops the TCP connection without a DISCONNECT, which
is what a browned-out board does: the broker then publishes its Last Will.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge import record_keys as keys
from edge.identity import device_id_of  # noqa: F401  (re-exported: tests and benches import it from here)
from edge.thing_description import thing_description
from edge.wire import Channel, TaskAssignment, WireFormatError, device_subscriptions, device_topic, encode_telemetry
from edge.wire import last_will, read_header
from edge.wire.codec import MessageKind
from edge.wire.topics import QOS, SERVER_STATUS, STATUS_FINISHED, STATUS_OFFLINE, STATUS_ONLINE
from firmware_sim.device_tasks import DeviceTask, device_task
from firmware_sim.mqtt_round import RoundResult, expects_step_sizes, run_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    tls_ca: str | None = None
    task: str = "sine"  # what the devices are (firmware_sim.device_tasks); their ids are <task>-<seed>
    layer_sizes: tuple[int, ...] | None = None  # None: the task's own; sine's MLP may be resized (small test fleets)
    reply_delay_s: float = 0.0  # extra time before replying (radio duty cycle; lets tests act mid-round)
    keepalive_s: int = 10
    workers: int = 8
    max_payload: int | None = None  # the firmware's receive buffer; None: the task's (DeviceTask.receive_buffer_bytes)
    step_sizes: bool = True  # firmware measures step-size hypergradients; False: firmware from before (drops STEP_SIZES)
    # False: one stream for the device's life, each sample seen once. True: each round draws from the stream keyed
    # by the task's server-round, as a Flower node does (firmware_sim.client_app), so the two transports see the same
    # samples and what a device spends on step sizes never shifts the samples of its later rounds.
    stream_per_round: bool = False

    def device_task(self) -> DeviceTask:
        return device_task(self.task).with_layer_sizes(self.layer_sizes)



class MqttDevice:
    """One simulated MCU on its own MQTT connection."""

    def __init__(self, seed: int, password: str, config: FleetConfig, pool: ThreadPoolExecutor) -> None:
        self.seed = seed
        self.config = config
        self.task = config.device_task()
        # one stream for the device's life, each sample seen once; its model is refused here if it does not fit
        self.device = self.task.device(seed, stream_key=0)
        self.private_init = self.task.firmware_init(seed)  # the firmware's local init
        self.max_payload = config.max_payload or self.task.receive_buffer_bytes()
        self.device_id = self.device.device_id
        self.rounds_done = 0
        self.refused: list[str] = []  # error codes of tasks/models it refused
        self._pool = pool
        self._lock = threading.Lock()  # pending models/tasks (network thread)
        self._train_lock = threading.Lock()  # the learner and stream (worker pool)
        self._models: dict[int, bytes] = {}
        self._step_sizes: dict[int, bytes] = {}
        self._tasks: dict[int, tuple[bytes, TaskAssignment]] = {}
        self._dead = False
        self.connected = threading.Event()
        self.finished = threading.Event()  # the server said its federation has ended
        self.server_status = b""
        self.client = self._make_client(password)

    def _make_client(self, password: str) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(self.device_id, password)
        if self.config.tls_ca:
            client.tls_set(ca_certs=self.config.tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        will = last_will(self.device_id)
        client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.reconnect_delay_set(0.05, 2.0)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if not self._dead and not self.finished.is_set():  # after "finished" the broker going away is expected
            log.warning("%s lost the broker (%s); reconnecting with back-off", self.device_id, reason)
            self.connected.clear()

    def start(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("%s refused by the broker: %s", self.device_id, reason)
            return
        broker = f"mqtt://{self.config.host}:{self.config.port}"
        td = thing_description(self.device.profile, self.device_id, broker=broker)
        client.publish(device_topic(self.device_id, Channel.ANNOUNCE), json.dumps(td).encode(), qos=1, retain=True)
        client.publish(device_topic(self.device_id, Channel.STATUS), STATUS_ONLINE, qos=1, retain=True)
        client.subscribe([*device_subscriptions(self.device_id), (SERVER_STATUS, 1)])  # and when the run ends
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self._dead:
            return
        if msg.topic == SERVER_STATUS:
            self.server_status = bytes(msg.payload)
            if self.server_status == STATUS_FINISHED:
                self.finished.set()
            return
        try:
            if msg.topic.endswith("/model"):
                round_id = self._store_model(msg.payload)
            else:
                task = TaskAssignment.from_json(msg.payload)
                round_id = task.round_id
                with self._lock:
                    self._tasks = {round_id: (msg.payload, task)}
        except WireFormatError as exc:
            self._refuse(exc)
            return
        with self._lock:
            if round_id not in self._models or round_id not in self._tasks:
                return  # wait for the other half
            task_json, task = self._tasks[round_id]
            wants_step_sizes = self.config.step_sizes and expects_step_sizes(task)
            if wants_step_sizes and round_id not in self._step_sizes:
                return  # and for the step sizes
            model, step_sizes = self._models.pop(round_id), self._step_sizes.pop(round_id, None)
            del self._tasks[round_id]
        self._pool.submit(self._work, task_json, model, step_sizes if wants_step_sizes else None)

    def _store_model(self, payload: bytes) -> int:
        """Keep a MODEL (or, with the feature, STEP_SIZES) payload for its round; its round id."""
        kinds = (MessageKind.MODEL, MessageKind.STEP_SIZES) if self.config.step_sizes else (MessageKind.MODEL,)
        header = read_header(payload, max_size=self.max_payload)
        if header.kind not in kinds:
            raise WireFormatError(WireFormatError.BAD_KIND, f"a {header.kind.name} payload on the model topic is not for this firmware")
        with self._lock:  # a newer payload replaces an older one
            if header.kind is MessageKind.MODEL:
                self._models = {header.round_id: payload}
            else:
                self._step_sizes = {header.round_id: payload}
        return header.round_id

    def _refuse(self, exc: WireFormatError) -> None:
        self.refused.append(exc.code)
        log.warning("%s refused a message: %s", self.device_id, exc)
        self.client.publish(device_topic(self.device_id, Channel.TELEMETRY), encode_telemetry({"error": exc.code}), qos=0)

    def _work(self, task: bytes, model: bytes, step_sizes: bytes | None) -> None:
        try:
            with self._train_lock:  # one round at a time per device: the learner and the stream are not shared
                if self.config.stream_per_round:
                    self.device.stream = self.task.device(self.seed, stream_key=_server_round(task)).stream
                result = run_task(
                    self.device, self.private_init, task, model, step_sizes, measures_step_sizes=self.config.step_sizes,
                    max_payload=self.max_payload, device_task=self.task.name,
                )
        except WireFormatError as exc:
            self._refuse(exc)
            return
        except Exception:
            log.exception("%s failed a round", self.device_id)
            return
        if self.config.reply_delay_s:  # a timer, not a sleep: the worker pool stays free for other devices
            threading.Timer(self.config.reply_delay_s, self._publish, args=(result,)).start()
        else:
            self._publish(result)

    def _publish(self, result: RoundResult) -> None:
        if self._dead:
            return
        if result.hypergradient is not None:  # before the UPDATE: the server files it under the round the UPDATE closes
            self.client.publish(device_topic(self.device_id, Channel.UPDATE), result.hypergradient, qos=QOS[Channel.UPDATE])
        self.client.publish(device_topic(self.device_id, Channel.UPDATE), result.update, qos=QOS[Channel.UPDATE])
        self.client.publish(device_topic(self.device_id, Channel.TELEMETRY), encode_telemetry(result.telemetry), qos=0)
        self.rounds_done += 1

    def crash(self) -> None:
        """Lose power: the socket closes without DISCONNECT, so the broker publishes the Last Will."""
        self._dead = True
        self.client.reconnect_delay_set(3600, 3600)  # a dead board does not come back by itself
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the broker sees EOF now, not at the next keepalive
            except OSError:
                pass
        # the network thread notices within a second; do not make the caller wait for it
        threading.Thread(target=self.client.loop_stop, daemon=True).start()

    def stop(self) -> None:
        """A clean shutdown: say ``offline`` (retained), then DISCONNECT."""
        if self._dead:
            return
        self._dead = True
        if self.client.is_connected():
            info = self.client.publish(device_topic(self.device_id, Channel.STATUS), STATUS_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


def _server_round(task_json: bytes) -> int:
    """The server round a task names (what keys a Flower node's stream); WireFormatError if it names none."""
    value = TaskAssignment.from_json(task_json).hyperparameters.get(keys.SERVER_ROUND)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.SERVER_ROUND} = {value!r} is not a round number")
    return value


class MqttFleet:
    """Many :class:`MqttDevice` in one process, sharing a worker pool."""

    def __init__(self, seeds: Iterable[int], passwords: dict[str, str], config: FleetConfig) -> None:
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="mcu")
        task = config.device_task()
        self.devices = {d.device_id: d for d in (MqttDevice(s, passwords[task.device_id(s)], config, self._pool) for s in seeds)}

    def start(self, timeout_s: float = 30.0) -> None:
        for device in self.devices.values():
            device.start()
        deadline = time.monotonic() + timeout_s
        for device in self.devices.values():
            if not device.connected.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"{device.device_id} did not connect within {timeout_s} s")

    def crash(self, fraction: float, rng: random.Random) -> list[str]:
        """Crash ``fraction`` of the live devices at random; their ids."""
        live = sorted(d for d, dev in self.devices.items() if not dev._dead)
        victims = rng.sample(live, round(fraction * len(live)))
        for device_id in victims:
            self.devices[device_id].crash()
        return victims

    def stop(self) -> None:
        for device in self.devices.values():
            device.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> MqttFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
