"""A TinyMetaFed federation of 24 simulated MCUs through a real mosquitto, driven by Flower's Strategy.start."""

from __future__ import annotations

import numpy as np
from mqtt_helpers import FLEET_SEEDS, LAYERS, assert_meta_model_improved, federate, grid_config, wait_for_devices

from edge.wire import encode_weights
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from server.transports.mqtt_grid import MqttGrid
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig


def test_tinymetafed_over_mqtt_learns_a_better_meta_model_with_5x_less_uplink(broker):
    config = TinyMetaFedConfig(clients_per_round=12, total_rounds=12, meta_step_size=1.0, top_p=0.1, node_timeout_s=20)
    with MqttFleet(FLEET_SEEDS, broker.accounts.devices, FleetConfig(port=broker.port, layer_sizes=LAYERS)) as fleet:
        with MqttGrid(grid_config(broker)) as grid:
            wait_for_devices(grid, len(FLEET_SEEDS))
            strategy = TinyMetaFed(config)
            theta = federate(strategy, grid, rounds=12)
    assert_meta_model_improved(theta)
    assert [r["replied"] for r in grid.round_log] == [12] * 12 and not grid.drops
    assert sum(d.rounds_done for d in fleet.devices.values()) == 144
    # bytes per device per round come from the payloads; Top-10% of the shared part vs a dense update
    traffic = [t for per_round in strategy.traffic.values() for t in per_round.values()]
    assert len(traffic) == 144
    shared = {k: v for k, v in theta.items() if k not in ("w2", "b2")}
    dense = len(encode_weights({k: v for k, v in theta.items()}, round_id=1, device_id="sine-10", num_examples=10,
                               metrics={f"m{i}": 0.0 for i in range(6)}))
    for t in traffic:
        assert dense / t["bytes-sent"] >= 5.0
        assert t["bytes-received"] > sum(v.nbytes for v in shared.values())  # θ_shared dense + task JSON
    # the devices' own ledgers agree with what the server counted, and energy follows from the profile
    sent = sum(d.device.ledger.bytes_sent for d in fleet.devices.values())
    assert sent == sum(t["bytes-sent"] for t in traffic)
    assert all(d.device.ledger.energy_j > 0 for d in fleet.devices.values() if d.rounds_done)
    assert np.isfinite(list(theta.values())[0]).all()
