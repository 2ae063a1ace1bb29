"""The serial gateway against a real mosquitto (per-device ACL) and real QEMU devices speaking the serial binding."""

from __future__ import annotations

import json
import queue
import random
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.serial_link import Topic, encode_frame
from edge.wire import parse_telemetry
from edge.wire.topics import DEVICE_ROOT, device_topic
from firmware_sim.serial_gateway import GatewayConfig, SerialGateway, load_account, main
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker, find_executable, free_port

DEVICE = "qemu-echo-0"
OTHER = "sine-0"
DEVICE_C = Path(__file__).resolve().parents[1] / "edge" / "firmware_c" / "serial_device.c"
HAVE_QEMU = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm")


def _have_mosquitto() -> bool:
    try:
        find_executable("mosquitto")
        return True
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _have_mosquitto(), reason="apt-get install mosquitto")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    accounts = BrokerAccounts()
    accounts.add_devices([DEVICE, OTHER])
    with LocalBroker(tmp_path / "broker", accounts) as running:
        yield running


class Server:
    """The server's side of the broker: sees every device's topics, publishes tasks and models."""

    def __init__(self, broker: LocalBroker, client_id: str = "test-server") -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(SERVER_USER, broker.accounts.server_password)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"{DEVICE_ROOT}/#", qos=1)
        self.client.loop_start()

    def next(self, channel: str, device: str = DEVICE, timeout: float = 10.0) -> mqtt.MQTTMessage:
        """The next message on ``device``'s ``channel``; others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message on {device}/{channel} within {timeout} s")
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if msg.topic == device_topic(device, channel):
                return msg

    def publish(self, channel: str, payload: bytes) -> None:
        self.client.publish(device_topic(DEVICE, channel), payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def server(broker: LocalBroker) -> Iterator[Server]:
    s = Server(broker)
    yield s
    s.close()


def config(broker: LocalBroker, **kw: object) -> GatewayConfig:
    return GatewayConfig(DEVICE, broker.accounts.devices[DEVICE], broker.host, broker.port, report_interval_s=0.05, **kw)


@pytest.fixture(scope="module")
def device_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_QEMU:
        pytest.skip("no toolchain")
    from edge.firmware.build import SERIAL_LINK_C, build_elf

    return build_elf("mps2-an386", [DEVICE_C, SERIAL_LINK_C], out_dir=tmp_path_factory.mktemp("gw_device"), name="device")


def telemetry(msg: mqtt.MQTTMessage) -> dict:
    return parse_telemetry(msg.payload)


# ------------------------------------------------------------------ with QEMU


@needs_qemu
def test_qemu_device_joins_through_the_gateway_and_survives_noise(broker: LocalBroker, server: Server, device_elf: Path) -> None:
    from edge.firmware.qemu import start_elf

    model = random.Random(3).randbytes(4000)
    with SerialGateway("listen://127.0.0.1:0", config(broker)) as gateway:
        qemu = start_elf(device_elf, serial_port=gateway.line_port)
        try:
            assert server.next("status").payload == b"online"
            assert json.loads(server.next("announce").payload)["id"] == "qemu-echo"
            server.publish("model", model)
            update = server.next("update")
            assert update.payload == model  # MQTT -> frame -> UART -> device -> UART -> frame -> MQTT
            server.publish("task", b"noise")  # the device sends garbage, a bad-CRC frame, then good telemetry
            reports = [telemetry(server.next("telemetry")) for _ in range(2)]
            assert {"noise-sent": 2} in reports
            gateway_report = next(r for r in reports if "serial-errors" in r)
            assert gateway_report["serial-errors"] >= 1
            deadline = time.monotonic() + 5
            while sum(gateway.stats.errors.values()) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gateway.stats.errors == {"bad-cobs": 1, "bad-crc": 1}
            assert gateway.stats.gaps == 1  # the bad-CRC frame took sequence number 3
            server.publish("task", b"exit")
            assert qemu.wait(10) == 0
            offline = server.next("status")
            assert offline.payload == b"offline"
        finally:
            qemu.kill()
            qemu.wait()
            for stream in (qemu.stdout, qemu.stderr):
                stream.close()
        # the device restarts: a new QEMU connects to the same gateway and is online again
        qemu = start_elf(device_elf, serial_port=gateway.line_port)
        try:
            assert server.next("status").payload == b"online"
            server.publish("model", b"second life")
            assert server.next("update").payload == b"second life"
            server.publish("task", b"exit")
            assert qemu.wait(10) == 0
        finally:
            qemu.kill()
            qemu.wait()
            for stream in (qemu.stdout, qemu.stderr):
                stream.close()
        assert gateway.stats.line_opens == 2


@needs_qemu
def test_pyserial_socket_url_to_a_qemu_that_listens(broker: LocalBroker, server: Server, device_elf: Path) -> None:
    from edge.firmware.qemu import start_elf

    port = free_port()
    qemu = start_elf(device_elf, serial_port=port, serial_server=True)  # QEMU waits for the gateway to connect
    try:
        with SerialGateway(f"socket://127.0.0.1:{port}", config(broker)):
            assert server.next("status").payload == b"online"
            server.publish("model", bytes(1000))
            assert server.next("update").payload == bytes(1000)
            server.publish("task", b"exit")
            assert qemu.wait(10) == 0
    finally:
        qemu.kill()
        qemu.wait()
        for stream in (qemu.stdout, qemu.stderr):
            stream.close()


# ------------------------------------------------------------------ with a plain socket as the device


def connect_device(gateway: SerialGateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.line_port), timeout=5)
    sock.settimeout(5)
    return sock


def test_bad_frames_become_telemetry_and_the_gateway_keeps_forwarding(broker: LocalBroker, server: Server) -> None:
    with SerialGateway("listen://127.0.0.1:0", config(broker)) as gateway:
        dev = connect_device(gateway)
        dev.sendall(b"\x00" + encode_frame(Topic.STATUS, 0, b"online"))
        assert server.next("status").payload == b"online"
        late = Server(broker, "late-subscriber")  # subscribes after the fact: status is retained, as §1 requires
        try:
            retained = late.next("status")
            assert (retained.payload, retained.retain) == (b"online", True)
        finally:
            late.close()
        dev.sendall(b"\x07line noise\x00" + encode_frame(Topic.TASK, 1, b"{}")  # a host->device id from the device
                    + encode_frame(Topic.TELEMETRY, 5, b'{"v":1,"after":1}'))
        messages = [telemetry(server.next("telemetry")) for _ in range(2)]
        assert {"after": 1} in messages
        report = next(m for m in messages if "serial-errors" in m)
        assert report["serial-error"] in ("bad-cobs", "unknown-topic")
        deadline = time.monotonic() + 5
        while gateway.stats.errors.total() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.stats.errors == {"bad-cobs": 1, "unknown-topic": 1}
        assert gateway.stats.gaps == 4  # sequence 0, then 5
        dev.sendall(encode_frame(Topic.UPDATE, 6, b"\x01\x02")[:4])  # the device dies mid-frame
        dev.close()
        assert server.next("status").payload == b"offline"
        assert gateway.stats.errors["truncated"] == 1
        assert gateway.stats.frames_from_device == 2


def test_model_for_the_device_is_framed_and_oversized_ones_are_held_back(broker: LocalBroker, server: Server) -> None:
    from edge.serial_link import HOST_TO_DEVICE, FrameDecoder

    with SerialGateway("listen://127.0.0.1:0", config(broker, max_payload_to_device=100)) as gateway:
        dev = connect_device(gateway)
        time.sleep(0.2)  # the gateway has accepted the line
        server.publish("task", b'{"round_id":1}')
        server.publish("model", bytes(101))  # over the device's buffer: not sent
        server.publish("model", b"\x00weights\x00")
        decoder, frames = FrameDecoder(accept=HOST_TO_DEVICE), []
        while len(frames) < 2:
            frames += decoder.feed(dev.recv(4096))
        assert [(f.topic, f.sequence, f.payload) for f in frames] == [(Topic.TASK, 0, b'{"round_id":1}'), (Topic.MODEL, 1, b"\x00weights\x00")]
        assert gateway.stats.dropped_to_device == 1
        dev.close()


def test_the_gateway_holds_only_the_devices_own_acl(broker: LocalBroker, server: Server) -> None:
    """It connects with the device's account: what it forwards lands on the device's topics only."""
    with SerialGateway("listen://127.0.0.1:0", config(broker)) as gateway:
        gateway.client.publish(device_topic(OTHER, "status"), b"online", qos=1).wait_for_publish(5)  # the ACL drops it
        dev = connect_device(gateway)
        dev.sendall(encode_frame(Topic.STATUS, 0, b"online"))
        assert server.next("status").payload == b"online"
        with pytest.raises(TimeoutError):
            server.next("status", device=OTHER, timeout=0.3)
        dev.close()


def test_accounts_file_and_command_line_checks(tmp_path: Path, broker: LocalBroker) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"host": broker.host, "port": broker.port, "devices": broker.accounts.devices}))
    assert load_account(path, DEVICE) == (broker.host, broker.port, broker.accounts.devices[DEVICE])
    with pytest.raises(ValueError, match="no account"):
        load_account(path, "nobody")
    with pytest.raises(SystemExit):
        main(["--serial", "listen://127.0.0.1:0", "--accounts", str(path)])  # no --id


@needs_qemu
def test_a_killed_qemu_device_goes_offline_and_the_gateway_lives_on(broker: LocalBroker, server: Server, device_elf: Path) -> None:
    from edge.firmware.qemu import start_elf

    with SerialGateway("listen://127.0.0.1:0", config(broker)) as gateway:
        qemu = start_elf(device_elf, serial_port=gateway.line_port)
        try:
            assert server.next("status").payload == b"online"
            qemu.kill()  # a browned-out board: no goodbye on the line
            qemu.wait(10)
            offline = server.next("status")
            assert offline.payload == b"offline"
        finally:
            for stream in (qemu.stdout, qemu.stderr):
                stream.close()
        server.publish("model", b"nobody home")  # line down: dropped and counted, not queued for ever
        deadline = time.monotonic() + 5
        while gateway.stats.dropped_to_device < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.stats.dropped_to_device == 1
        assert gateway._threads and all(t.is_alive() for t in gateway._threads)


@needs_qemu
def test_one_gateway_process_serves_two_qemu_devices(tmp_path: Path, broker: LocalBroker, server: Server, device_elf: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from edge.firmware.qemu import start_elf

    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"host": broker.host, "port": broker.port, "devices": broker.accounts.devices}))
    ports = {DEVICE: free_port(), OTHER: free_port()}
    argv = [sys.executable, "-m", "firmware_sim.serial_gateway", "--accounts", str(accounts)]
    for device, port in ports.items():
        argv += ["--serial", f"listen://127.0.0.1:{port}", "--id", device]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    gateway = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    qemus = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until both lines listen
            try:
                for port in ports.values():
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        # the probes above were accepted as lines and closed: each device was reported offline once; now the real ones
        qemus = [start_elf(device_elf, serial_port=port) for port in ports.values()]
        online: set[str] = set()
        deadline = time.monotonic() + 20
        while online != set(ports):  # one queue for both devices: read it once, in order
            msg = server.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            for device in ports:
                if msg.topic == device_topic(device, "status"):
                    (online.add if msg.payload == b"online" else online.discard)(device)
        for device in ports:
            server.client.publish(device_topic(device, "model"), device.encode(), qos=1).wait_for_publish(5)
            assert server.next("update", device=device).payload == device.encode()  # each on its own topics
        for device in ports:
            server.client.publish(device_topic(device, "task"), b"exit", qos=1).wait_for_publish(5)
        assert [q.wait(10) for q in qemus] == [0, 0]
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(10) == 0
    finally:
        for process in [*qemus, gateway]:
            if process.poll() is None:
                process.kill()
            process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def test_an_error_inside_the_gateway_costs_one_frame_not_the_line(broker: LocalBroker, server: Server) -> None:
    with SerialGateway("listen://127.0.0.1:0", config(broker)) as gateway:
        publish, calls = gateway._publish, []

        def flaky(topic: Topic, payload: bytes) -> None:
            calls.append(payload)
            if len(calls) == 1:
                raise RuntimeError("broker hiccup")
            publish(topic, payload)

        gateway._publish = flaky  # type: ignore[method-assign]
        dev = connect_device(gateway)
        dev.sendall(encode_frame(Topic.STATUS, 0, b"lost") + encode_frame(Topic.STATUS, 1, b"online"))  # one chunk
        assert server.next("status").payload == b"online"
        assert calls == [b"lost", b"online"]
        dev.close()


@needs_qemu
@pytest.mark.slow
def test_model_echo_latency_through_gateway_and_broker(broker: LocalBroker, server: Server, tmp_path: Path) -> None:
    """Measures what docs/protocol.md §7 quotes (run with -s). The broker is LocalBroker's, Nagle and all."""
    import statistics

    from edge.firmware.build import SERIAL_LINK_C, build_elf
    from edge.firmware.qemu import start_elf

    elf = build_elf("mps2-an386", [DEVICE_C, SERIAL_LINK_C], out_dir=tmp_path, name="big", defines={"DEVICE_MAX_PAYLOAD": 65536})
    with SerialGateway("listen://127.0.0.1:0", config(broker)) as gateway:
        qemu = start_elf(elf, serial_port=gateway.line_port)
        try:
            assert server.next("status").payload == b"online"
            for size in (16, 65536):
                times = []
                for trial in range(3):
                    payload = random.Random(trial).randbytes(size)
                    start = time.monotonic()
                    server.publish("model", payload)
                    assert server.next("update", timeout=30).payload == payload
                    times.append(time.monotonic() - start)
                print(f"model of {size} B -> QEMU -> update: median {1000 * statistics.median(times):.1f} ms")
                assert statistics.median(times) < 10
            server.publish("task", b"exit")
            assert qemu.wait(10) == 0
        finally:
            qemu.kill()
            qemu.wait()
            for stream in (qemu.stdout, qemu.stderr):
                stream.close()
