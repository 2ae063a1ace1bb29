"""TinyReptile learns per-weight step sizes over a real mosquitto as over Flower: the MQTT devices measure
hypergradients, the server stops warning, θ is bit-identical to a run without step sizes, a bad hypergradient
costs only itself, and firmware without the feature still trains."""

from __future__ import annotations

import logging
import struct
import tempfile
import zlib
from dataclasses import replace

import numpy as np
import pytest
from mqtt_helpers import LAYERS, grid_config, wait_for_devices

from edge import record_keys as keys
from firmware_sim.client_app import app as client_app
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from firmware_sim.mqtt_round import RoundResult
from server.core.checkpoint import Checkpointer
from server.core.federation import DeviceRoundConfig, FederationSettings, run_federation
from server.transports.inprocess_grid import InProcessGrid
from server.transports.mqtt_grid import MqttGrid
from server.strategies.step_size_learning import step_sizes_from_state
from server.strategies.tiny_reptile import TinyReptileConfig

SEEDS = (5, 6, 7)
ROUNDS = 3
LEARNING_RATE = 0.05
SETTINGS = FederationSettings(
    strategy="tinyreptile",
    num_rounds=ROUNDS,
    reptile=TinyReptileConfig(clients_per_round=len(SEEDS), meta_step_size=0.5, anneal="constant", outer_momentum=0.9,
                              nesterov=True, seed=3, step_size_learning_rate=LEARNING_RATE, step_size_shots=3,
                              step_size_query=6),
    device=DeviceRoundConfig(stream_samples=6, device_seeds=SEEDS),  # the in-process nodes play these devices
    node_timeout_s=20.0,
)  # fmt: skip
NO_STEP_SIZES = replace(SETTINGS, reptile=replace(SETTINGS.reptile, step_size_learning_rate=0.0))
NO_HYPERGRADIENT = "no device sent a step-size hypergradient"


def outcome(directory: str, rounds: list[dict]) -> dict:
    checkpoint = Checkpointer(directory).load_latest()
    return {"theta": checkpoint.weights, "steps": step_sizes_from_state(checkpoint.strategy_state), "rounds": rounds}


def over_mqtt(broker, settings: FederationSettings, fleet_config: FleetConfig | None = None, tamper=None) -> dict:
    """A federation of SEEDS over the broker: θ, learned step sizes, per-round metrics, drops and device ledgers.

    Devices draw each round's samples from the stream keyed by the round, as Flower nodes do, so the
    in-process run below sees the same samples.
    """
    rounds: list[dict] = []
    config = fleet_config or FleetConfig(port=broker.port, layer_sizes=LAYERS, stream_per_round=True)
    with tempfile.TemporaryDirectory() as directory:
        with MqttFleet(SEEDS, broker.accounts.devices, config) as fleet:
            if tamper is not None:
                tamper(fleet)
            with MqttGrid(grid_config(broker)) as grid:
                wait_for_devices(grid, len(SEEDS))
                mqtt = replace(settings, checkpoint_dir=directory, device=replace(settings.device, device_seeds=()))
                run_federation(grid, mqtt, lambda _r, _w, m: rounds.append(m))  # MQTT devices are who they are
        result = outcome(directory, rounds)
    result["drops"] = dict(grid.drops)
    result["bytes-sent"] = sum(d.device.ledger.bytes_sent for d in fleet.devices.values())
    result["refused"] = {d: dev.refused for d, dev in fleet.devices.items()}
    return result


def in_process(settings: FederationSettings) -> dict:
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as directory:
        grid = InProcessGrid(client_app, len(SEEDS), node_id_seed=0)
        run_federation(grid, replace(settings, checkpoint_dir=directory), lambda _r, _w, m: rounds.append(m))
        return outcome(directory, rounds)


@pytest.fixture(autouse=True)
def warnings_recorded(caplog):
    caplog.set_level(logging.WARNING)


def test_mqtt_devices_learn_the_step_sizes_flower_devices_learn_and_theta_is_untouched(broker, caplog):
    learned = over_mqtt(broker, SETTINGS)
    assert NO_HYPERGRADIENT not in caplog.text
    plain = over_mqtt(broker, NO_STEP_SIZES)
    flower = in_process(SETTINGS)

    assert not learned["drops"] and all(r["step-size-clients"] == len(SEEDS) for r in learned["rounds"])
    assert all(np.isfinite(r[keys.STEP_SIZE_QUERY_LOSS]) for r in learned["rounds"])
    steps = learned["steps"]
    assert plain["steps"] is None and set(steps) == set(learned["theta"])
    moved = max(float(np.abs(np.log(steps[k])).max()) for k in steps)
    assert LEARNING_RATE < moved <= 1.1 * ROUNDS * LEARNING_RATE  # three Adam steps of about the rate in log space
    for name in learned["theta"]:  # the measurement uses samples after the round's: θ sees the same data
        np.testing.assert_array_equal(learned["theta"][name], plain["theta"][name], err_msg=name)
    # the same federation through Flower's ClientApp: the same step sizes and θ. Not bit for bit: an MQTT
    # UPDATE carries φ − θ in float32 (φ comes back within an ulp) and MQTT replies are averaged in node-id
    # order, Flower's in device order; both differences are a few float32 ulps.
    for name in steps:
        np.testing.assert_allclose(steps[name], flower["steps"][name], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(learned["theta"][name], flower["theta"][name], rtol=0, atol=1e-6, err_msg=name)
    # every device booked the hypergradients it sent; the server counted the same bytes
    assert learned["bytes-sent"] == sum(r[keys.BYTES_SENT] for r in learned["rounds"])
    assert learned["bytes-sent"] - plain["bytes-sent"] == ROUNDS * len(SEEDS) * 7276  # HYPERGRADIENT of a sine MLP


def nan_hypergradient(fleet: MqttFleet, device_id: str = "sine-6") -> None:
    """``device_id`` publishes its hypergradient with a NaN behind a valid CRC (a firmware bug)."""
    victim = fleet.devices[device_id]
    publish = victim._publish

    def corrupted(result: RoundResult) -> None:
        payload = bytearray(result.hypergradient)
        payload[-8:-4] = struct.pack("<f", float("nan"))
        payload[-4:] = struct.pack("<I", zlib.crc32(bytes(payload[:-4])))
        publish(replace(result, hypergradient=bytes(payload)))

    victim._publish = corrupted


def test_a_bad_hypergradient_is_dropped_and_its_update_still_counts(broker, caplog):
    tampered = over_mqtt(broker, SETTINGS, tamper=nan_hypergradient)
    honest = over_mqtt(broker, SETTINGS)
    assert tampered["drops"] == {"non-finite": ROUNDS}
    assert any("hypergradient from sine-6" in r.getMessage() and "its UPDATE still counts" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert all(r["clients"] == len(SEEDS) and r["step-size-clients"] == len(SEEDS) - 1 for r in tampered["rounds"])
    for name in honest["theta"]:  # θ got sine-6's update every round
        np.testing.assert_array_equal(tampered["theta"][name], honest["theta"][name], err_msg=name)
    assert any(not np.array_equal(tampered["steps"][k], honest["steps"][k]) for k in honest["steps"])
    assert all(np.all(np.isfinite(v)) and np.all(v > 0) for v in tampered["steps"].values())


def test_firmware_without_step_sizes_still_trains_and_the_server_says_so_once(broker, caplog):
    old_firmware = FleetConfig(port=broker.port, layer_sizes=LAYERS, stream_per_round=True, step_sizes=False)
    result = over_mqtt(broker, SETTINGS, old_firmware)
    plain = over_mqtt(broker, NO_STEP_SIZES)
    assert caplog.text.count(NO_HYPERGRADIENT) == 1
    assert all(r["step-size-clients"] == 0 and r["clients"] == len(SEEDS) for r in result["rounds"])
    assert all(np.all(v == 1.0) for v in result["steps"].values())
    assert all(codes == ["unknown-kind"] * ROUNDS for codes in result["refused"].values())  # each STEP_SIZES, once
    for name in plain["theta"]:
        np.testing.assert_array_equal(result["theta"][name], plain["theta"][name], err_msg=name)
