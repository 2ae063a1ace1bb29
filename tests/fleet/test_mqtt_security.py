"""The broker enforces identities: per-device passwords, an ACL on topics, TLS."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from mqtt_helpers import LAYERS, federate, grid_config, wait_for_devices

from edge.wire import device_topic
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker
from server.transports.broker_tls import make_test_certificates
from server.transports.mqtt_grid import MqttGrid
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig


def client(broker: LocalBroker, user: str, password: str, client_id: str, port: int | None = None, ca: str | None = None):
    """A connected MQTT v5 client and its CONNACK reason (or None on timeout)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    if ca:
        c.tls_set(ca_certs=ca)
    result: dict = {}
    done = threading.Event()

    def on_connect(_c, _u, _f, reason, _p):
        result["reason"] = reason
        done.set()

    c.on_connect = on_connect
    c.connect(broker.host, port or broker.port)
    c.loop_start()
    done.wait(5)
    return c, result.get("reason")


def test_a_device_cannot_publish_under_another_devices_topics(broker):
    observer, reason = client(broker, SERVER_USER, broker.accounts.server_password, "observer")
    seen: list[tuple[str, bytes]] = []
    observer.on_message = lambda _c, _u, m: seen.append((m.topic, m.payload))
    observer.subscribe("tinyfleet/v1/#", qos=1)
    time.sleep(0.2)
    device, reason = client(broker, "sine-0", broker.accounts.devices["sine-0"], "sine-0")
    assert not reason.is_failure
    acks: dict[int, object] = {}
    device.on_publish = lambda _c, _u, mid, reason_code, _p: acks.__setitem__(mid, reason_code)
    forged = [device.publish(device_topic("sine-1", ch), b"forged", qos=1) for ch in ("update", "status", "announce")]
    forged.append(device.publish(device_topic("sine-1", "task"), b"forged", qos=1))  # posing as the server
    forged.append(device.publish("tinyfleet/v1/server/status", b"offline", qos=1))
    sentinel = device.publish(device_topic("sine-0", "telemetry"), b'{"v":1}', qos=1)
    sentinel.wait_for_publish(5)
    deadline = time.monotonic() + 5
    while not any(t.endswith("sine-0/telemetry") for t, _ in seen):
        assert time.monotonic() < deadline, "the sentinel never arrived"
        time.sleep(0.01)
    time.sleep(0.2)
    # the broker refused every forged publish (MQTT v5 PUBACK 0x87) and nothing forged reached a subscriber
    assert all(str(acks[info.mid]) == "Not authorized" for info in forged)
    assert not [t for t, p in seen if p in (b"forged", b"offline")]
    for c in (device, observer):
        c.disconnect()
        c.loop_stop()


def test_wrong_password_and_unknown_user_are_refused(broker):
    for user, password in (("sine-0", "wrong"), ("stranger", "x"), (SERVER_USER, "wrong")):
        c, reason = client(broker, user, password, f"try-{user}")
        assert reason is not None and reason.is_failure and str(reason) in ("Not authorized", "Bad user name or password")
        c.loop_stop()


def test_a_federation_round_over_tls(tmp_path):
    accounts = BrokerAccounts()
    seeds = range(4)
    accounts.add_devices([f"sine-{s}" for s in seeds])
    tls = make_test_certificates(tmp_path / "tls")
    with LocalBroker(tmp_path / "broker", accounts, tls=tls) as broker:
        ca = str(tls.ca_cert)
        fleet_config = FleetConfig(port=broker.tls_port, tls_ca=ca, layer_sizes=LAYERS)
        with MqttFleet(seeds, accounts.devices, fleet_config):
            with MqttGrid(grid_config(broker, port=broker.tls_port, tls_ca=ca)) as grid:
                wait_for_devices(grid, 4)
                federate(TinyMetaFed(TinyMetaFedConfig(clients_per_round=4, total_rounds=2)), grid, rounds=2)
        assert [r["replied"] for r in grid.round_log] == [4, 4]
        # a client that does not trust the CA cannot connect
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="untrusting", protocol=mqtt.MQTTv5)
        c.tls_set()  # system CAs only
        try:
            c.connect(broker.host, broker.tls_port)
            raise AssertionError("TLS handshake should fail")
        except Exception as exc:  # ssl.SSLCertVerificationError
            assert "certificate" in str(exc).lower()
