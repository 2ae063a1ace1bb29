"""TinyMetaFed federations with QEMU devices among simulated ones, through a real mosquitto with per-device ACL.

QEMU devices run the C firmware (edge/firmware/device/sine_firmware.c, keywords_firmware.c), each behind its own
serial gateway logged in with the device's own account (firmware_sim.qemu_fleet.QemuFleet); simulated devices are
firmware_sim.mqtt_fleet's. The server is Flower's Strategy.start over the MqttGrid.

- sine: every round accepts every device's update, QEMU's included, and each QEMU device's UPDATE equals, within
  float32 tolerance, what its simulated twin (same seed, same samples: the firmware's sensor is a recording of that
  device's stream) answers to the same TASK and MODEL bytes, seen on the broker;
- faults: a QEMU device killed mid-round does not stall the round (its gateway says ``offline`` and the grid stops
  waiting for it, long before the round's deadline); bad serial frames, from the line to the gateway and from the
  gateway to the device, are refused and logged, and the device still answers every round;
- keywords: raw audio in (each QEMU device is fed its twin's clips), MFCC on the device, and the same checks as sine.
  Tolerance there: test_firmware_keywords.py's, for its reasons.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import socket
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from flwr.app import ConfigRecord

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.mlp import init_mlp_weights
from edge.serial_link import Topic, cobs_encode
from edge.wire import MessageKind, decode_weights
from edge.wire.topics import DEVICE_ROOT, parse_device_topic
from firmware_sim.device_tasks import device_task
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from firmware_sim.mqtt_round import run_task
from firmware_sim.qemu_fleet import QemuFleet, QemuFleetConfig, run_fleet, split_fleet
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker, find_executable
from server.transports.mqtt_grid import MqttGrid, MqttGridConfig
from tests.edge.sparse_compare import assert_same_update_tensors

SINE_LAYERS = (1, 40, 40, 1)
SIMULATED, QEMU_SEEDS = range(6), (6, 7)
ROUNDS = 3
RTOL, ATOL = 1e-4, 1e-5  # as test_firmware_device_round.py and test_firmware_keywords.py
ROUND_TIMEOUT_S = 60.0


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
    """The server account's view of the QEMU devices' topics, in order; ``on_model`` is called for each MODEL seen."""

    def __init__(self, broker: LocalBroker, devices: list[str], on_model=None) -> None:
        self.messages: queue.Queue[tuple[str, str, bytes]] = queue.Queue()
        self.on_model = on_model
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(SERVER_USER, broker.accounts.server_password)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        for device in devices:
            for channel in ("model", "task", "update", "telemetry"):
                self.client.subscribe(f"{DEVICE_ROOT}/{device}/{channel}", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        device, channel = parse_device_topic(msg.topic)
        channel = getattr(channel, "value", channel)
        self.messages.put((device, channel, msg.payload))
        if channel == "model" and self.on_model is not None:
            self.on_model(device, msg.payload)

    def drain(self) -> list[tuple[str, str, bytes]]:
        out = []
        while not self.messages.empty():
            out.append(self.messages.get())
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def assert_same_update(mine: bytes, want: bytes) -> None:
    got, ref = decode_weights(mine, expected_kind=MessageKind.UPDATE), decode_weights(want)
    assert (got.round_id, got.device_id, got.num_examples, len(mine)) == (ref.round_id, ref.device_id, ref.num_examples, len(want))
    assert list(got.metrics) == list(ref.metrics) and list(got.tensors) == list(ref.tensors)
    for name in ("loss-before", "loss-after", "prequential-loss", "reconstruction-loss"):
        if name in ref.metrics:
            assert got.metrics[name] == pytest.approx(ref.metrics[name], rel=RTOL, abs=1e-6), name
    assert_same_update_tensors(got.tensors, ref.tensors, rtol=RTOL, atol=ATOL, label=ref.device_id)


class Federation:
    """A broker with accounts for every device, the QEMU devices (gateways first), then the simulated ones and the grid."""

    def __init__(self, tmp_path: Path, task: str, n_qemu: int, on_model=None) -> None:
        self.task = device_task(task) if task != "sine" else device_task("sine").with_layer_sizes(SINE_LAYERS)
        fleet = [self.task.device_id(s) for s in (*SIMULATED, *QEMU_SEEDS)]
        simulated_ids, self.qemu_ids = split_fleet(fleet, n_qemu)  # the last n_qemu, as `fleet run --qemu N` picks
        self.simulated = [int(d.rsplit("-", 1)[1]) for d in simulated_ids]
        self.accounts = BrokerAccounts()
        self.accounts.add_devices(fleet)
        self.tmp_path = tmp_path
        self.on_model = on_model
        self.qemu: QemuFleet | None = None  # started in run(), on the broker's port
        self.grid: MqttGrid | None = None  # the running grid, for tests acting between rounds

    def run(self, rounds: int, hyper: dict, top_p: float = 0.1, before_boot=None) -> tuple[MqttGrid, list, dict, float]:
        """(grid, what the spy saw, θ, seconds the rounds took); ``before_boot(fleet)`` runs with gateways up, no QEMU."""
        with LocalBroker(self.tmp_path / "broker", self.accounts) as broker:
            self.qemu = QemuFleet(broker.host, broker.port, {d: self.accounts.devices[d] for d in self.qemu_ids},
                                  QemuFleetConfig(workdir=self.tmp_path / "qemu", samples=400))  # fmt: skip
            spy = Spy(broker, self.qemu_ids, self.on_model)
            try:
                if before_boot is None:
                    self.qemu.start()  # what `fleet run --qemu N` does: every image built, then each device started
                else:
                    for device in self.qemu.devices.values():
                        device.start_gateway()
                    before_boot(self.qemu)
                    for device in self.qemu.devices.values():
                        device.boot()
                grid_config = MqttGridConfig(host=broker.host, port=broker.port, username=SERVER_USER,
                                             password=self.accounts.server_password, round_timeout_s=ROUND_TIMEOUT_S,
                                             device_deadline_s=50.0, grace_s=0.3)  # fmt: skip
                fleet_config = FleetConfig(port=broker.port, task=self.task.name,
                                           layer_sizes=SINE_LAYERS if self.task.name == "sine" else None)  # fmt: skip
                n = len(self.simulated) + len(self.qemu_ids)
                with MqttFleet(self.simulated, self.accounts.devices, fleet_config), MqttGrid(grid_config) as grid:
                    deadline = time.monotonic() + 30
                    while len(grid.get_node_ids()) < n:
                        assert time.monotonic() < deadline, f"only {grid.device_ids()} announced"
                        time.sleep(0.05)
                    self.grid = grid
                    strategy = TinyMetaFed(TinyMetaFedConfig(clients_per_round=n, total_rounds=rounds, meta_step_size=1.0,
                                                             top_p=top_p, private_names=self.task.private_names,
                                                             node_timeout_s=ROUND_TIMEOUT_S))  # fmt: skip
                    start = time.monotonic()
                    result = strategy.start(grid=grid, initial_arrays=to_array_record(init_mlp_weights(self.task.layer_sizes, 0)),
                                            num_rounds=rounds, timeout=ROUND_TIMEOUT_S,
                                            train_config=ConfigRecord(hyper))  # fmt: skip
                    took = time.monotonic() - start
                time.sleep(0.3)
                return grid, spy.drain(), from_array_record(result.arrays), took
            finally:
                self.qemu.stop()
                spy.close()

    def assert_twins_agree(self, seen: list, rounds: int) -> None:
        """Each QEMU device answered every round as its simulated twin answers the same TASK and MODEL bytes."""
        for device_id in self.qemu_ids:
            seed = int(device_id.rsplit("-", 1)[1])
            twin, init = self.task.device(seed, stream_key=0), self.task.firmware_init(seed)
            mine = [(c, p) for d, c, p in seen if d == device_id]
            models, tasks, updates = ([p for c, p in mine if c == kind] for kind in ("model", "task", "update"))
            assert len(models) == len(tasks) == len(updates) >= rounds
            for model, task, update in zip(models, tasks, updates):
                assert_same_update(update, run_task(twin, init, task, model).update)


SINE_HYPER = {keys.INNER_LEARNING_RATE: 0.02, keys.STREAM_SAMPLES: 10, keys.PROBE_SAMPLES: 5}


def test_tinymetafed_rounds_accept_the_qemu_devices_and_their_updates_equal_their_twins(tmp_path: Path) -> None:
    federation = Federation(tmp_path, "sine", len(QEMU_SEEDS))
    grid, seen, theta, took = federation.run(ROUNDS, SINE_HYPER)
    n = len(SIMULATED) + len(QEMU_SEEDS)
    train_rounds = [r for r in grid.round_log if r["asked"] == n]
    assert len(train_rounds) >= ROUNDS and all(r["replied"] == n for r in grid.round_log), grid.round_log
    assert not grid.drops, grid.drops
    assert all(np.all(np.isfinite(v)) for v in theta.values())
    federation.assert_twins_agree(seen, ROUNDS)
    print(f"sine: {ROUNDS} rounds of {n} devices ({len(QEMU_SEEDS)} under QEMU) in {took:.1f} s")


def test_a_qemu_device_killed_mid_round_does_not_stall_it_and_bad_frames_are_refused_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 2: the victim's QEMU is killed once its MODEL is on the way; the round closes on the others' replies, not at
    its deadline. After round 2 the victim boots again (power restored) and round 3 accepts it. Before the boards
    boot, noise on the survivor's line (garbage, a bad CRC, a runt) is refused and logged by its gateway; once up,
    a frame with a bad CRC sent to the survivor is refused by the firmware (its telemetry, logged by the gateway)."""
    victim, survivor = "sine-7", "sine-6"
    models_seen = {victim: 0}
    killed = threading.Event()

    def on_model(device: str, _payload: bytes) -> None:  # the victim's second MODEL: it is mid-round 2
        if device == victim:
            models_seen[victim] += 1
            if models_seen[victim] == 2:
                federation.qemu.kill(victim)
                killed.set()
                threading.Thread(target=power_back, daemon=True).start()

    def power_back() -> None:
        """Once round 2 has closed without it, the victim boots again (power restored) and joins round 3."""
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        while len(federation.grid.round_log) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        federation.qemu.devices[victim].boot()

    def noise_on_the_lines(fleet: QemuFleet) -> None:
        """Before the boards boot: garbage and a frame with a bad CRC on the survivor's line, to its gateway."""
        gateway = fleet.devices[survivor].gateway
        with socket.create_connection(("127.0.0.1", gateway.line_port)) as line:
            line.sendall(b"\x05\x11\x22\x00" + bad_crc_frame(Topic.STATUS, b"online") + b"\x01\x00")
            deadline = time.monotonic() + 10
            while sum(gateway.stats.errors.values()) < 2:
                assert time.monotonic() < deadline, gateway.stats
                time.sleep(0.05)

    federation = Federation(tmp_path, "sine", len(QEMU_SEEDS), on_model=on_model)
    caplog.set_level(logging.WARNING, logger="firmware_sim.serial_gateway")

    def noise_then_garbage_to_the_device(fleet: QemuFleet) -> None:
        noise_on_the_lines(fleet)
        # bytes the device must refuse: sent once its line is up, before any MODEL (nothing else is on the line)
        threading.Thread(target=_garbage_after_boot, args=(fleet.devices[survivor].gateway,), daemon=True).start()

    grid, seen, theta, took = federation.run(ROUNDS, SINE_HYPER, before_boot=noise_then_garbage_to_the_device)
    n = len(SIMULATED) + len(QEMU_SEEDS)
    assert killed.is_set()
    log = [r for r in grid.round_log if r["asked"] >= n - 1]
    assert [(r["asked"], r["replied"]) for r in log[:ROUNDS]] == [(n, n), (n, n - 1), (n, n)], grid.round_log
    assert all(r["closed"] == "all live devices replied" for r in log), grid.round_log
    assert took < ROUND_TIMEOUT_S, f"{took:.1f} s: a round waited for its deadline"
    print(f"faults: {ROUNDS} rounds in {took:.1f} s (round deadline {ROUND_TIMEOUT_S:.0f} s), {grid.round_log}")
    assert all(np.all(np.isfinite(v)) for v in theta.values())
    gateway_lines = [r.getMessage() for r in caplog.records]
    assert any(f"{survivor}: bad serial frame refused" in m and "bad-crc" in m for m in gateway_lines), gateway_lines
    assert any(f"{survivor}: bad serial frame refused" in m for m in gateway_lines if "bad-crc" not in m), gateway_lines
    refusals = [json.loads(p) for d, c, p in seen if d == survivor and c == "telemetry" and b"serial-error" in p]
    assert {r["serial-error"] for r in refusals} >= {"bad-crc"}, refusals
    assert any(f"{survivor}: the device refused" in m for m in gateway_lines), gateway_lines
    updates = [p for d, c, p in seen if d == survivor and c == "update"]
    assert len(updates) >= ROUNDS  # it refused the garbage and answered every round


def _garbage_after_boot(gateway) -> None:
    """Once the board's line is up (the second line the gateway opens; the first was the noise's): a frame with a bad
    CRC, straight onto the line to the device."""
    deadline = time.monotonic() + 20
    while not (gateway.stats.line_opens >= 2 and gateway.line.is_open) and time.monotonic() < deadline:
        time.sleep(0.02)
    gateway.line.write(bad_crc_frame(Topic.TASK, b'{"v":1}'))


def bad_crc_frame(topic: Topic, payload: bytes) -> bytes:
    """A well-formed COBS frame whose CRC is off by one bit (docs/protocol.md §7: version, topic, sequence, payload)."""
    raw = bytes([1, int(topic), 0, 0]) + payload
    return cobs_encode(raw + (zlib.crc32(raw) ^ 1).to_bytes(4, "little")) + b"\x00"


KEYWORDS_HYPER = {keys.INNER_LEARNING_RATE: 0.02, keys.STREAM_SAMPLES: 10, keys.PROBE_SAMPLES: 5}
def test_keywords_federation_raw_audio_in_accepts_the_qemu_devices_and_their_updates_equal_their_twins(tmp_path: Path) -> None:
    federation = Federation(tmp_path, "keywords", len(QEMU_SEEDS))
    grid, seen, theta, took = federation.run(ROUNDS, KEYWORDS_HYPER)
    n = len(SIMULATED) + len(QEMU_SEEDS)
    assert [(r["asked"], r["replied"]) for r in grid.round_log] == [(n, n)] * ROUNDS, grid.round_log
    assert not grid.drops, grid.drops
    assert all(np.all(np.isfinite(v)) for v in theta.values())
    federation.assert_twins_agree(seen, ROUNDS)
    errors = [p for d, c, p in seen if c == "telemetry" and b"error" in p]
    assert not errors, errors
    print(f"keywords: {ROUNDS} rounds of {n} devices ({len(QEMU_SEEDS)} under QEMU) in {took:.1f} s")


def test_run_fleet_puts_the_last_n_under_qemu_beside_the_simulated_and_leaves_when_the_server_finishes(tmp_path: Path) -> None:
    """What `tinyfleet fleet run --accounts FILE --qemu 2` runs: firmware_sim.qemu_fleet.run_fleet, here in a thread."""
    ids = [f"sine-{s}" for s in (*SIMULATED, *QEMU_SEEDS)]
    accounts = BrokerAccounts()
    accounts.add_devices(ids)
    out: dict = {}
    with LocalBroker(tmp_path / "broker", accounts) as broker:
        fleet = threading.Thread(target=lambda: out.update(run_fleet(broker.host, broker.port, dict(accounts.devices), 2,
                                                                     workdir=tmp_path / "qemu", duration_s=120, say=lambda _: None)))  # fmt: skip
        fleet.start()
        grid_config = MqttGridConfig(host=broker.host, port=broker.port, username=SERVER_USER,
                                     password=accounts.server_password, round_timeout_s=ROUND_TIMEOUT_S, grace_s=0.3)  # fmt: skip
        with MqttGrid(grid_config) as grid:
            strategy = TinyMetaFed(TinyMetaFedConfig(clients_per_round=len(ids), total_rounds=2, meta_step_size=1.0,
                                                     node_timeout_s=ROUND_TIMEOUT_S))  # fmt: skip
            strategy.start(grid=grid, initial_arrays=to_array_record(init_mlp_weights(SINE_LAYERS, 0)), num_rounds=2,
                           timeout=ROUND_TIMEOUT_S, train_config=ConfigRecord(SINE_HYPER))  # fmt: skip
            grid.finish()
        fleet.join(30)
        assert not fleet.is_alive(), "run_fleet did not leave after the server finished"
    assert [(r["asked"], r["replied"]) for r in grid.round_log] == [(len(ids), len(ids))] * 2, grid.round_log
    assert sorted(out) == sorted(ids) and out["sine-6"] == out["sine-7"] == 2, out
    assert (tmp_path / "qemu" / "sine-7" / "sine_firmware.elf").is_file() and not (tmp_path / "qemu" / "sine-5").exists()
