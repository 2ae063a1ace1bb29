"""Malformed, truncated, oversized, wrong-CRC, wrong-shape, NaN, foreign and late UPDATEs are dropped
with a logged reason; the round goes on with the honest reply."""

from __future__ import annotations

import logging
import struct
import threading
import zlib

import numpy as np
import paho.mqtt.client as mqtt
from mqtt_helpers import LAYERS, federate, grid_config, initial_theta, wait_for_devices

from edge.wire import TaskAssignment, device_topic, encode_weights, top_p_sparsify
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from server.transports.mqtt_grid import MqttGrid
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig

SEEDS = range(6)


def with_crc(payload: bytes | bytearray) -> bytes:
    body = bytes(payload[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def bad_updates(device_id: str, round_id: int) -> dict[str, bytes]:
    """One payload per refusal, each otherwise well-formed for this round."""
    shared = {k: v for k, v in initial_theta().items() if k not in ("w2", "b2")}
    good = encode_weights(None, round_id=round_id, device_id=device_id, num_examples=10, sparse=top_p_sparsify(shared, 0.1))
    nan = bytearray(good)
    nan[-8:-4] = np.array([np.nan], "<f4").tobytes()  # the last value of the last tensor
    wrong_shape = {**shared, "w1": np.zeros((40, 41), np.float32)}
    return {
        "bad-magic": b"garbage" * 10,
        "truncated": good[:-10],
        "bad-crc": good[:-1] + bytes([good[-1] ^ 0xFF]),
        "oversized": good + bytes(70_000),
        "non-finite": with_crc(nan),
        "spec-mismatch": encode_weights({k: v for k, v in wrong_shape.items() if k != "b1"}, round_id=round_id, device_id=device_id),
        "foreign-device": encode_weights(None, round_id=round_id, device_id="sine-5", sparse=top_p_sparsify(shared, 0.1)),
        "unsolicited": encode_weights(None, round_id=(round_id + 1000) & 0xFFFFFFFF, device_id=device_id, sparse=top_p_sparsify(shared, 0.1)),
    }


def test_bad_updates_are_dropped_with_reasons_and_the_round_goes_on(broker, caplog):
    caplog.set_level(logging.WARNING, logger="server.transports.mqtt_grid")
    victim = "sine-0"
    # an impostor with sine-0's credentials (another client id) reads sine-0's tasks and answers first
    impostor = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="impostor", protocol=mqtt.MQTTv5)
    impostor.username_pw_set(victim, broker.accounts.devices[victim])
    sent = threading.Event()

    def on_task(_c, _u, msg):
        round_id = TaskAssignment.from_json(msg.payload).round_id
        for payload in bad_updates(victim, round_id).values():
            impostor.publish(device_topic(victim, "update"), payload, qos=1)
        sent.set()

    impostor.on_message = on_task
    impostor.on_connect = lambda c, *_: c.subscribe(device_topic(victim, "task"), qos=1)
    impostor.connect(broker.host, broker.port)
    impostor.loop_start()

    fleet_config = FleetConfig(port=broker.port, layer_sizes=LAYERS, reply_delay_s=0.3)  # honest reply comes last
    with MqttFleet(SEEDS, broker.accounts.devices, fleet_config):
        with MqttGrid(grid_config(broker)) as grid:
            wait_for_devices(grid, len(SEEDS))
            theta = federate(TinyMetaFed(TinyMetaFedConfig(clients_per_round=6, total_rounds=3)), grid, rounds=3)
    impostor.disconnect()
    impostor.loop_stop()
    assert sent.is_set()
    assert [r["replied"] for r in grid.round_log] == [6, 6, 6]  # sine-0's honest reply still counted
    for code in bad_updates(victim, 0):
        assert grid.drops[code] >= 3, (code, grid.drops)  # one per round
        assert any(code in r.getMessage() and victim in r.getMessage() for r in caplog.records), code
    assert all(np.all(np.isfinite(v)) for v in theta.values())
    assert any(not np.array_equal(theta[k], initial_theta()[k]) for k in ("w0", "b0", "w1", "b1"))
