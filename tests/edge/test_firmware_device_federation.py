"""A TinyMetaFed federation with QEMU devices among simulated ones, through a real mosquitto with per-device ACL.

Two sine MLP firmwares (edge/firmware/device/sine_firmware.c) under QEMU, each behind its own serial gateway
(firmware_sim/serial_gateway.py, the device's own broker account), and six simulated devices (firmware_sim.mqtt_fleet)
answer Flower's Strategy.start over the MqttGrid. Every round accepts every device's update, QEMU's included, and each
QEMU device's UPDATE equals, within float32 tolerance, what its simulated twin (same seed, same samples: the
firmware's sensor is a recording of that device's stream) answers to the same TASK and MODEL bytes, seen on the broker.
"""

from __future__ import annotations

import queue
import shutil
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from flwr.app import ConfigRecord

from edge import record_keys as keys
from edge.firmware.device import build_sine_firmware
from edge.firmware.qemu import start_elf
from edge.flower_records import from_array_record, to_array_record
from edge.mlp import NumpyMLP, init_mlp_weights
from edge.wire import MessageKind, SparseTensor, decode_weights
from edge.wire.topics import DEVICE_ROOT, parse_device_topic
from firmware_sim.fleet import local_init, profile_for, sine_device
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet, device_id_of
from firmware_sim.mqtt_round import run_task
from firmware_sim.serial_gateway import GatewayConfig, SerialGateway
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker, find_executable
from server.transports.mqtt_grid import MqttGrid, MqttGridConfig

LAYERS = (1, 40, 40, 1)
SIMULATED, QEMU_SEEDS = range(6), (6, 7)
ROUNDS = 3
RTOL, ATOL = 1e-4, 1e-5  # as test_firmware_device_round.py


def _have(tool: str) -> bool:
    try:
        return bool(find_executable(tool))
    except Exception:
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _have("mosquitto"), reason="apt-get install mosquitto"),
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                       reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm"),
]  # fmt: skip


class Spy:
    """The server account's view of the QEMU devices' model, task and update topics, in order."""

    def __init__(self, broker: LocalBroker, devices: list[str]) -> None:
        self.messages: queue.Queue[tuple[str, str, bytes]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(SERVER_USER, broker.accounts.server_password)
        self.client.on_message = lambda _c, _u, msg: self.messages.put((*parse_device_topic(msg.topic), msg.payload))
        self.client.connect(broker.host, broker.port)
        for device in devices:
            for channel in ("model", "task", "update"):
                self.client.subscribe(f"{DEVICE_ROOT}/{device}/{channel}", qos=1)
        self.client.loop_start()

    def drain(self) -> list[tuple[str, str, bytes]]:
        out = []
        while not self.messages.empty():
            device, channel, payload = self.messages.get()
            out.append((device, getattr(channel, "value", channel), payload))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def assert_same_update(mine: bytes, want: bytes) -> None:
    got, ref = decode_weights(mine, expected_kind=MessageKind.UPDATE), decode_weights(want)
    assert (got.round_id, got.device_id, got.num_examples, len(mine)) == (ref.round_id, ref.device_id, ref.num_examples, len(want))
    assert list(got.metrics) == list(ref.metrics) and list(got.tensors) == list(ref.tensors)
    for name in ("loss-before", "loss-after", "prequential-loss", "reconstruction-loss"):
        assert got.metrics[name] == pytest.approx(ref.metrics[name], rel=RTOL, abs=1e-6), name
    for name, value in ref.tensors.items():
        mine_value = got.tensors[name]
        if isinstance(value, SparseTensor):
            np.testing.assert_array_equal(mine_value.indices, value.indices, err_msg=name)
            mine_value, value = mine_value.values, value.values
        np.testing.assert_allclose(mine_value, value, rtol=RTOL, atol=ATOL, err_msg=name)


def test_tinymetafed_rounds_accept_the_qemu_devices_and_their_updates_equal_their_twins(tmp_path: Path) -> None:
    qemu_ids = [device_id_of(s) for s in QEMU_SEEDS]
    accounts = BrokerAccounts()
    accounts.add_devices([device_id_of(s) for s in SIMULATED] + qemu_ids)
    recordings = {s: sine_device(s, stream_key=0).stream.take(400) for s in QEMU_SEEDS}  # the simulated twin's stream
    elves = {s: build_sine_firmware(tmp_path / f"fw{s}", device_id=device_id_of(s), local_init=local_init(s, LAYERS),
                                    sensor=recordings[s], profile=profile_for(s)) for s in QEMU_SEEDS}  # fmt: skip
    processes = []
    with LocalBroker(tmp_path / "broker", accounts) as broker:
        spy = Spy(broker, qemu_ids)
        gateways = [SerialGateway("listen://127.0.0.1:0", GatewayConfig(d, accounts.devices[d], broker.host, broker.port)).start()
                    for d in qemu_ids]  # fmt: skip
        try:
            for seed, gateway in zip(QEMU_SEEDS, gateways):
                processes.append(start_elf(elves[seed], serial_port=gateway.line_port, icount=True))
            grid_config = MqttGridConfig(host=broker.host, port=broker.port, username=SERVER_USER,
                                         password=accounts.server_password, round_timeout_s=30.0, device_deadline_s=20.0,
                                         grace_s=0.3)  # fmt: skip
            with MqttFleet(SIMULATED, accounts.devices, FleetConfig(port=broker.port, layer_sizes=LAYERS)):
                with MqttGrid(grid_config) as grid:
                    deadline = time.monotonic() + 20
                    while len(grid.get_node_ids()) < len(SIMULATED) + len(QEMU_SEEDS):
                        assert time.monotonic() < deadline, f"only {grid.device_ids()} announced"
                        time.sleep(0.05)
                    strategy = TinyMetaFed(TinyMetaFedConfig(clients_per_round=8, total_rounds=ROUNDS, meta_step_size=1.0,
                                                             top_p=0.1, node_timeout_s=30))  # fmt: skip
                    result = strategy.start(grid=grid, initial_arrays=to_array_record(init_mlp_weights(LAYERS, 0)),
                                            num_rounds=ROUNDS, timeout=60.0,
                                            train_config=ConfigRecord({keys.INNER_LEARNING_RATE: 0.02, keys.STREAM_SAMPLES: 10,
                                                                       keys.PROBE_SAMPLES: 5}))  # fmt: skip
            theta = from_array_record(result.arrays)
            time.sleep(0.2)
            seen = spy.drain()
        finally:
            for process in processes:
                process.kill()
                process.wait()
                for stream in (process.stdout, process.stderr):
                    stream.close()
            for gateway in gateways:
                gateway.stop()
            spy.close()
    train_rounds = [r for r in grid.round_log if r["asked"] == 8]
    assert len(train_rounds) >= ROUNDS and all(r["replied"] == 8 for r in grid.round_log), grid.round_log
    assert not grid.drops, grid.drops
    assert all(np.all(np.isfinite(v)) for v in theta.values())
    # each QEMU device answered every round as its simulated twin answers the same bytes
    for seed, device_id in zip(QEMU_SEEDS, qemu_ids):
        twin = sine_device(seed, stream_key=0)
        twin.deploy(NumpyMLP(LAYERS))
        twin.stream = iter(recordings[seed])
        mine = [(c, p) for d, c, p in seen if d == device_id]
        models = [p for c, p in mine if c == "model"]
        tasks = [p for c, p in mine if c == "task"]
        updates = [p for c, p in mine if c == "update"]
        assert len(models) == len(tasks) == len(updates) >= ROUNDS
        for model, task, update in zip(models, tasks, updates):
            assert_same_update(update, run_task(twin, local_init(seed, LAYERS), task, model).update)
