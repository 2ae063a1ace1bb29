"""A valid UPDATE published twice (a QoS-1 redelivery, a device retrying) counts once."""

from __future__ import annotations

import time

import numpy as np
from mqtt_helpers import LAYERS, federate, grid_config, initial_theta, wait_for_devices

from edge.wire import MessageKind, decode_weights, device_topic
from server.strategies.sparse_math import apply_sparse, sum_sparse
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from firmware_sim.mqtt_round import RoundResult
from server.transports.mqtt_grid import MqttGrid
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig

SHARED = ("w0", "b0", "w1", "b1")


def test_a_duplicated_valid_update_is_dropped_and_aggregated_once(broker):
    published: dict[str, list[bytes]] = {}
    config = TinyMetaFedConfig(clients_per_round=2, total_rounds=1, meta_step_size=1.0, anneal="constant", top_p=0.1)
    with MqttFleet(range(2), broker.accounts.devices, FleetConfig(port=broker.port, layer_sizes=LAYERS)) as fleet:
        for device in fleet.devices.values():
            original = device._publish

            def publish(result: RoundResult, device=device, original=original) -> None:
                published.setdefault(device.device_id, []).append(result.update)
                original(result)
                if device.device_id == "sine-0":  # the very same bytes again, twice
                    for _ in range(2):
                        device.client.publish(device_topic(device.device_id, "update"), result.update, qos=1)

            device._publish = publish
        with MqttGrid(grid_config(broker, grace_s=0.5)) as grid:
            wait_for_devices(grid, 2)
            theta = federate(TinyMetaFed(config), grid, rounds=1)
            end = time.monotonic() + 5  # the round may close before both copies arrive; wait for them
            while grid.drops["duplicate"] < 2 and time.monotonic() < end:
                time.sleep(0.02)

    assert grid.round_log == [{"asked": 2, "replied": 2, "closed": "all live devices replied"}]
    assert grid.drops == {"duplicate": 2}, grid.drops
    # θ is exactly θ0 + (ε/n)·Σ δ over the two distinct updates: sine-0's update counted once, not three times
    theta0 = initial_theta()
    shared0 = {k: theta0[k] for k in SHARED}
    spec = {k: (v.shape, v.dtype) for k, v in shared0.items()}
    deltas = [decode_weights(p[0], spec, expected_kind=MessageKind.UPDATE).sparse for p in published.values()]
    assert len(deltas) == 2 and all(len(p) == 1 for p in published.values())
    expected = apply_sparse(shared0, sum_sparse(deltas), 1.0 / 2)
    for name in SHARED:
        np.testing.assert_allclose(theta[name], expected[name], rtol=1e-6, atol=1e-7)
    for head in ("w2", "b2"):
        np.testing.assert_array_equal(theta[head], theta0[head])
