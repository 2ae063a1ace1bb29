"""Serial gateway: one microcontroller's UART <-> that device's MQTT topics (docs/protocol.md §7).

A device without a TCP stack sends its MQTT messages as serial-binding
frames (:mod:`edge.serial_link`); the gateway publishes them on the device's
topics and turns the device's ``task``/``model`` messages into frames. It
connects to the broker *as the device* (its own username, password and Last
Will), so the broker's per-device ACL holds as it does for an MQTT device.

The line is one of:

- ``listen://127.0.0.1:P``: the gateway listens and QEMU connects to it
  (``-chardev socket,…,server=off``; ``P = 0`` picks a free port, see
  :attr:`SerialGateway.line_port`). No byte is lost, and a device that
  restarts (a new QEMU) connects again;
- any pyserial URL (``serial_for_url``): ``socket://127.0.0.1:P`` for QEMU
  started with ``server=on,wait=on``, ``/dev/ttyACM0`` for a board on USB.

Bad frames never stop the gateway: each is dropped, logged with the device
id and its code, counted, and the counts go out as the device's telemetry
(``serial-error``, ``serial-errors``, ``serial-gaps``), at most once per
``report_interval_s``. What the device refuses (its telemetry's
``serial-error`` or ``round-error``) is logged here as well. When the line closes the gateway publishes retained
``offline`` on the device's status and waits for the line to come back.

    python -m firmware_sim.serial_gateway --serial listen://127.0.0.1:5555 --id qemu-0 --accounts accounts.json

(``tinyfleet gateway`` is to wrap :func:`main`.) One process may serve
several lines: repeat ``--serial``/``--id`` in pairs.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import queue
import signal
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from edge.serial_link import DEVICE_TO_HOST, MAX_PAYLOAD, Frame, FrameDecoder, FrameEncoder, SerialFrameError, Topic
from edge.wire import WireFormatError, check_device_id, device_subscriptions, device_topic, encode_telemetry, last_will
from edge.wire.topics import QOS, RETAINED, SERVER_STATUS, STATUS_FINISHED, STATUS_OFFLINE, parse_device_topic

log = logging.getLogger(__name__)

READ_CHUNK = 4096
POLL_S = 0.1  # how long a read waits, so stop() and reports are seen promptly


class LineClosed(Exception):
    """The other end of the line went away (EOF, reset, unplugged)."""


# ------------------------------------------------------------------ lines


class ListeningLine:
    """``listen://HOST:PORT``: accept one connection at a time (QEMU's chardev with server=off)."""

    def __init__(self, host: str, port: int) -> None:
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(POLL_S)
        self.port = int(self._listener.getsockname()[1])
        self._conn: socket.socket | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> bool:
        """Wait up to POLL_S for the device to connect; True once a connection is up."""
        if self._conn is None:
            try:
                self._conn, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                return False
            self._conn.settimeout(POLL_S)
            self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames are short: no Nagle delay
        return True

    def read(self) -> bytes:
        assert self._conn is not None
        try:
            data = self._conn.recv(READ_CHUNK)
        except (TimeoutError, socket.timeout):
            return b""
        except OSError as exc:
            raise LineClosed(str(exc)) from None
        if not data:
            raise LineClosed("the device closed the connection")
        return data

    def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            raise LineClosed("no device connected")
        try:
            conn.sendall(data)
        except OSError as exc:
            raise LineClosed(str(exc)) from None

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self.drop()
        self._listener.close()


class PyserialLine:
    """Any ``serial.serial_for_url`` URL; reopened (every ``retry_s``) after it closes."""

    def __init__(self, url: str, baudrate: int = 115200, retry_s: float = 0.2) -> None:
        self.url = url
        self.baudrate = baudrate
        self.retry_s = retry_s
        self._port = None
        self._next_try = 0.0

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> bool:
        import serial  # pyserial: only the gateway needs it

        if self._port is not None:
            return True
        if time.monotonic() < self._next_try:
            time.sleep(POLL_S)
            return False
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=POLL_S, write_timeout=30)
        except (serial.SerialException, OSError, ValueError) as exc:
            log.debug("serial line %s not open yet: %s", self.url, exc)
            self._next_try = time.monotonic() + self.retry_s
            time.sleep(POLL_S)
            return False
        sock = getattr(self._port, "_socket", None)  # socket://: frames are short, so no Nagle delay
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True

    def read(self) -> bytes:
        import serial

        assert self._port is not None
        try:
            return self._port.read(max(1, min(self._port.in_waiting, READ_CHUNK)))
        except (serial.SerialException, OSError) as exc:
            raise LineClosed(str(exc)) from None

    def write(self, data: bytes) -> None:
        import serial

        port = self._port
        if port is None:
            raise LineClosed("line not open")
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LineClosed(str(exc)) from None

    def drop(self) -> None:
        port, self._port = self._port, None
        self._next_try = time.monotonic() + self.retry_s
        if port is not None:
            try:
                port.close()
            except OSError:
                pass

    def close(self) -> None:
        self.drop()


def open_line(url: str) -> ListeningLine | PyserialLine:
    """``listen://host:port`` → :class:`ListeningLine`; anything else → :class:`PyserialLine`."""
    if url.startswith("listen://"):
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r}: give listen://HOST:PORT (PORT 0 picks a free one)")
        return ListeningLine(parts.hostname, parts.port)
    return PyserialLine(url)


def _no_delay(_client: mqtt.Client, _userdata: object, sock: object) -> None:
    """paho leaves Nagle on: an UPDATE right after our PUBACK then waited ~40 ms for the broker's delayed ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        pass  # not a TCP socket (websockets, a test double)


# ------------------------------------------------------------------ gateway


@dataclass(frozen=True)
class GatewayConfig:
    device_id: str
    password: str
    host: str = "127.0.0.1"
    port: int = 1883
    tls_ca: str | None = None
    keepalive_s: int = 10
    max_payload_to_device: int = MAX_PAYLOAD  # the device's receive buffer; larger messages are not sent
    report_interval_s: float = 1.0
    connect_timeout_s: float = 10.0


@dataclass
class GatewayStats:
    frames_from_device: int = 0
    frames_to_device: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # refused frames per code
    gaps: int = 0  # device frames missing by sequence number
    line_opens: int = 0
    dropped_to_device: int = 0  # MQTT messages not sent: line down or too big for the device
    updates_from_device: int = 0  # UPDATE frames published: the device's rounds done


class SerialGateway:
    """Bridge one serial line and one device's MQTT topics; :meth:`start` runs it in threads."""

    def __init__(self, line_url: str, config: GatewayConfig) -> None:
        check_device_id(config.device_id)
        self.config = config
        self.line = open_line(line_url)
        self.stats = GatewayStats()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.finished = threading.Event()  # the server said its federation has ended (retained "finished")
        self._outbox: queue.Queue[bytes] = queue.Queue()
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder(accept=DEVICE_TO_HOST)
        self._expected_sequence: int | None = None
        self._last_error = ""
        self._report_due = False
        self._last_report = float("-inf")
        self._threads: list[threading.Thread] = []
        self.client = self._make_client()

    @property
    def line_port(self) -> int | None:
        """The TCP port QEMU must connect to (``listen://`` lines only)."""
        return getattr(self.line, "port", None)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SerialGateway:
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()
        if not self._connected.wait(self.config.connect_timeout_s):
            self.stop()
            raise TimeoutError(f"{self.config.device_id}: broker {self.config.host}:{self.config.port} did not accept the gateway")
        for target, name in ((self._read_loop, "reader"), (self._write_loop, "writer")):
            thread = threading.Thread(target=target, name=f"gateway-{self.config.device_id}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        if self.line.is_open:
            self._line_down()
        self.line.close()
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> SerialGateway:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ MQTT side

    def _make_client(self) -> mqtt.Client:
        device_id = self.config.device_id
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(device_id, self.config.password)
        if self.config.tls_ca:
            client.tls_set(ca_certs=self.config.tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        will = last_will(device_id)
        client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.reconnect_delay_set(0.05, 2.0)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_socket_open = _no_delay
        return client

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("%s: broker refused the gateway: %s", self.config.device_id, reason)
            return
        client.subscribe([*device_subscriptions(self.config.device_id), (SERVER_STATUS, 1)])  # and when the run ends
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == SERVER_STATUS:  # for whoever runs the board (fleet run leaves once the server has finished)
            if msg.payload == STATUS_FINISHED:
                self.finished.set()
            return
        try:
            device_id, channel = parse_device_topic(msg.topic)
        except WireFormatError as exc:
            log.warning("%s: ignoring message on %s: %s", self.config.device_id, msg.topic, exc)
            return
        if device_id != self.config.device_id or channel.from_device:
            return
        if len(msg.payload) > self.config.max_payload_to_device:
            self.stats.dropped_to_device += 1
            log.warning("%s: %s of %d bytes is over the device's %d-byte buffer; not sent", device_id, channel.value,
                        len(msg.payload), self.config.max_payload_to_device)
            return
        self._outbox.put(self._encoder.encode(Topic.of_channel(channel), msg.payload))

    def _publish(self, topic: Topic, payload: bytes) -> None:
        channel = topic.channel
        self.client.publish(device_topic(self.config.device_id, channel), payload, qos=QOS[channel], retain=channel in RETAINED)

    # ------------------------------------------------------------ serial side

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._outbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            try:
                self.line.write(frame)
                self.stats.frames_to_device += 1
            except LineClosed as exc:
                self.stats.dropped_to_device += 1
                log.warning("%s: frame for the device dropped, line down: %s", self.config.device_id, exc)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._read_once()
            except Exception:  # a bug or a broker hiccup must not end the line: log it and go on
                log.exception("%s: gateway error; continuing", self.config.device_id)
                time.sleep(POLL_S)

    def _read_once(self) -> None:
        """One pass: report if due, open the line if down, move what arrived."""
        self._maybe_report()
        if not self.line.is_open:
            if not self.line.open():
                return
            self.stats.line_opens += 1
            self._expected_sequence = None
            log.info("%s: serial line up", self.config.device_id)
        try:
            data = self.line.read()
        except LineClosed as exc:
            log.info("%s: serial line down: %s", self.config.device_id, exc)
            self._line_down()
            return
        for event in self._decoder.feed(data):
            try:
                self._handle(event)
            except Exception:  # costs this frame only, not the ones after it in the chunk
                log.exception("%s: gateway error on a frame; continuing", self.config.device_id)

    def _line_down(self) -> None:
        for event in self._decoder.flush():
            self._handle(event)
        self.line.drop()
        # the device cannot say it is gone; say it for it, as the broker does with an MQTT device's Last Will
        self.client.publish(device_topic(self.config.device_id, "status"), STATUS_OFFLINE, qos=1, retain=True)
        self._maybe_report(force=True)

    def _handle(self, event: Frame | SerialFrameError) -> None:
        if isinstance(event, SerialFrameError):
            self.stats.errors[event.code] += 1
            self._last_error = event.code
            self._report_due = True
            log.warning("%s: bad serial frame refused: %s", self.config.device_id, event)
            return
        if self._expected_sequence is not None and event.sequence != self._expected_sequence:
            self.stats.gaps += (event.sequence - self._expected_sequence) & 0xFFFF
            self._report_due = True
        self._expected_sequence = (event.sequence + 1) & 0xFFFF
        self.stats.frames_from_device += 1
        self.stats.updates_from_device += event.topic is Topic.UPDATE
        if event.topic is Topic.TELEMETRY and (b'"serial-error"' in event.payload or b'"round-error"' in event.payload):
            # the device refused something sent to it (a frame, a task, a model): say so here too, with its reason
            log.warning("%s: the device refused: %s", self.config.device_id, event.payload.decode(errors="replace"))
        self._publish(event.topic, event.payload)

    def _maybe_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._report_due or (not force and now - self._last_report < self.config.report_interval_s):
            return
        self._report_due = False
        self._last_report = now
        report = {"serial-errors": sum(self.stats.errors.values()), "serial-gaps": self.stats.gaps}
        if self._last_error:
            report["serial-error"] = self._last_error
        self._publish(Topic.TELEMETRY, encode_telemetry(report))


# ------------------------------------------------------------------ command line


def load_account(path: Path, device_id: str) -> tuple[str, int, str]:
    """(broker host, port, password) from the accounts.json ``tinyfleet server --local-broker`` writes."""
    known = json.loads(Path(path).read_text())
    try:
        return known["host"], int(known["port"]), known["devices"][device_id]
    except KeyError:
        raise ValueError(f"{path} has no account for {device_id!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serial", action="append", required=True, help="listen://HOST:PORT or a pyserial URL/tty")
    parser.add_argument("--id", action="append", required=True, dest="ids", help="the device on that line")
    parser.add_argument("--accounts", type=Path, required=True, help="accounts.json (broker address and passwords)")
    parser.add_argument("--tls-ca", default=None)
    parser.add_argument("--max-payload", type=int, default=MAX_PAYLOAD, help="the device's receive buffer")
    args = parser.parse_args(argv)
    if len(args.serial) != len(args.ids):
        parser.error("give one --id per --serial")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    gateways = []
    for url, device_id in zip(args.serial, args.ids):
        host, port, password = load_account(args.accounts, device_id)
        config = GatewayConfig(device_id, password, host, port, tls_ca=args.tls_ca, max_payload_to_device=args.max_payload)
        gateways.append(SerialGateway(url, config).start())
        log.info("%s: gateway on %s (port %s)", device_id, url, gateways[-1].line_port)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    for gateway in gateways:
        gateway.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
