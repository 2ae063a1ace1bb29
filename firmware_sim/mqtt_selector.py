"""Many paho clients on one network thread (epoll), for fleets beyond ~340 devices per process.

Why: paho's ``loop_start`` gives every client its own thread running
``select()``, and each client holds three file descriptors (its socket and a
wake-up socket pair). Past fd 1023 ``select()`` fails, so a process with
more than ~340 such clients drops into a reconnect storm (measured: 340 of
400 devices ever connect). Here one thread waits on an epoll selector for all
sockets, calls paho's ``loop_read`` / ``loop_write`` / ``loop_misc`` (its
documented external-loop API), and reconnects lost clients with a delay.
All socket I/O happens on that thread, as in paho's threaded mode: other
threads only queue packets and wake the loop through
``on_socket_register_write``.

:class:`SelectorDevice` is a :class:`firmware_sim.mqtt_fleet.MqttDevice`
whose network side runs on a shared :class:`SelectorLoop`; the protocol and
the device logic are unchanged.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as mqtt

from firmware_sim.mqtt_fleet import FleetConfig, MqttDevice, MqttFleet

log = logging.getLogger(__name__)


class SelectorLoop:
    """One thread and one epoll selector serving the sockets of many paho clients."""

    def __init__(self, misc_interval_s: float = 0.5, reconnect_delay_s: float = 0.5) -> None:
        self.misc_interval_s = misc_interval_s
        self.reconnect_delay_s = reconnect_delay_s
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._clients: dict[mqtt.Client, tuple[str, int, int]] = {}  # -> host, port, keepalive
        self._want_write: set[mqtt.Client] = set()
        self._reconnect_at: dict[mqtt.Client, float] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-selector", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ clients

    def add(self, client: mqtt.Client, host: str, port: int, keepalive: int) -> None:
        """Attach ``client`` and start connecting (TCP connect here; CONNECT is sent by the loop)."""
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = lambda *_: None
        with self._lock:
            self._clients[client] = (host, port, keepalive)
        try:
            client.connect(host, port, keepalive=keepalive)
        except OSError as exc:
            log.warning("connect to %s:%s failed (%s); retrying", host, port, exc)
            with self._lock:
                self._reconnect_at[client] = time.monotonic() + self.reconnect_delay_s

    def remove(self, client: mqtt.Client) -> None:
        """Stop serving ``client`` (after its DISCONNECT is flushed, if any)."""
        with self._lock:
            self._clients.pop(client, None)
            self._reconnect_at.pop(client, None)
            self._want_write.discard(client)
        sock = client.socket()
        if sock is not None:
            self._unregister(sock)

    def flush(self, client: mqtt.Client, timeout_s: float = 2.0) -> None:
        """Wait until ``client`` has written everything it queued (e.g. a DISCONNECT)."""
        deadline = time.monotonic() + timeout_s
        while client.want_write() and client.socket() is not None and time.monotonic() < deadline:
            self._wake()
            time.sleep(0.01)

    # ------------------------------------------------------------ paho callbacks (any thread)

    def _opened(self, client: mqtt.Client, _userdata: object, sock: socket.socket) -> None:
        self._selector.register(sock, selectors.EVENT_READ, client)
        self._wake()

    def _closed(self, client: mqtt.Client, _userdata: object, sock: socket.socket) -> None:
        self._unregister(sock)
        with self._lock:
            if client in self._clients:
                self._reconnect_at[client] = time.monotonic() + self.reconnect_delay_s

    def _register_write(self, client: mqtt.Client, _userdata: object, _sock: object) -> None:
        with self._lock:
            self._want_write.add(client)
        self._wake()

    def _unregister(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or closing

    # ------------------------------------------------------------ the loop thread

    def _run(self) -> None:
        next_misc = time.monotonic() + self.misc_interval_s
        while not self._stopping.is_set():
            try:
                events = self._selector.select(timeout=self.misc_interval_s)
            except (OSError, ValueError):
                continue  # a socket closed while waiting; the next pass sees the new set
            for key, mask in events:
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                client: mqtt.Client = key.data
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE:
                    self._write(client)
            with self._lock:
                pending, self._want_write = self._want_write, set()
            for client in pending:
                self._write(client)
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + self.misc_interval_s
                self._misc(now)

    def _write(self, client: mqtt.Client) -> None:
        """Write what ``client`` queued; wait for writability (EVENT_WRITE) if the socket is full."""
        client.loop_write()
        sock = client.socket()
        if sock is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.want_write() else 0)
        try:
            if self._selector.get_key(sock).events != events:
                self._selector.modify(sock, events, client)
        except (KeyError, ValueError):
            pass

    def _misc(self, now: float) -> None:
        with self._lock:
            clients = list(self._clients)
            due = [c for c, t in self._reconnect_at.items() if t <= now]
            for client in due:
                del self._reconnect_at[client]
        for client in clients:
            client.loop_misc()  # keepalive PINGREQ, and a lost connection is noticed
        for client in due:
            try:
                client.reconnect()
            except OSError:
                with self._lock:
                    if client in self._clients:
                        self._reconnect_at[client] = now + self.reconnect_delay_s

    def close(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        self._thread.join(timeout_s)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class SelectorDevice(MqttDevice):
    """An :class:`MqttDevice` whose network side runs on a shared :class:`SelectorLoop`."""

    def __init__(self, seed: int, password: str, config: FleetConfig, pool: ThreadPoolExecutor, loop: SelectorLoop) -> None:
        super().__init__(seed, password, config, pool)
        self._loop = loop

    def start(self) -> None:
        self._loop.add(self.client, self.config.host, self.config.port, self.config.keepalive_s)

    def crash(self) -> None:
        """Lose power: drop the socket without DISCONNECT; the broker publishes the Last Will."""
        self._dead = True
        self._loop.remove(self.client)
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        """Say ``offline`` (retained), DISCONNECT, and leave the loop."""
        if self._dead:
            return
        self._dead = True
        if self.client.is_connected():
            self.client.publish(f"{self._status_topic()}", b"offline", qos=1, retain=True)
            self.client.disconnect()
            self._loop.flush(self.client)
        self._loop.remove(self.client)

    def _status_topic(self) -> str:
        from edge.wire import Channel, device_topic

        return device_topic(self.device_id, Channel.STATUS)


class SelectorFleet(MqttFleet):
    """:class:`MqttFleet` with every device on one :class:`SelectorLoop` thread instead of a thread each."""

    def __init__(self, seeds: Iterable[int], passwords: dict[str, str], config: FleetConfig) -> None:
        self.config = config
        self.loop = SelectorLoop()
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="mcu")
        self.devices = {
            d.device_id: d
            for d in (SelectorDevice(s, passwords[config.device_task().device_id(s)], config, self._pool, self.loop) for s in seeds)
        }

    def stop(self) -> None:
        super().stop()
        self.loop.close()
