"""Helpers shared by the MQTT fleet tests: grid settings, a federation run, meta-model checks."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import Strategy

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.mlp import init_mlp_weights
from firmware_sim.meta_eval import unseen_device_mse
from server.transports.broker import SERVER_USER, LocalBroker
from server.transports.mqtt_grid import MqttGrid, MqttGridConfig

LAYERS = (1, 40, 40, 1)
FLEET_SEEDS = range(24)
EXTRA_DEVICES = ("rogue-1", "rogue-2")  # accounts for misbehaving clients
DEVICE_ROUND = {keys.INNER_LEARNING_RATE: 0.02, keys.STREAM_SAMPLES: 10, keys.PROBE_SAMPLES: 5}


def grid_config(broker: LocalBroker, **overrides) -> MqttGridConfig:
    base = dict(
        host=broker.host, port=broker.port, username=SERVER_USER, password=broker.accounts.server_password,
        round_timeout_s=15.0, device_deadline_s=10.0, grace_s=0.3,
    )
    return MqttGridConfig(**{**base, **overrides})


def initial_theta() -> dict[str, np.ndarray]:
    return init_mlp_weights(LAYERS, 0)


def federate(strategy: Strategy, grid: MqttGrid, rounds: int, theta: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Run ``rounds`` rounds with Flower's own Strategy.start over the MQTT grid; the final θ."""
    result = strategy.start(
        grid=grid,
        initial_arrays=to_array_record(initial_theta() if theta is None else theta),
        num_rounds=rounds,
        timeout=30.0,
        train_config=ConfigRecord(dict(DEVICE_ROUND)),
    )
    return from_array_record(result.arrays)


def assert_meta_model_improved(theta: dict[str, np.ndarray], private_names=("w2", "b2"), margin: float = 0.03) -> None:
    """θ moved, its private part did not, and unseen devices adapt better from it than from the init."""
    init = initial_theta()
    shared = [k for k in theta if k not in private_names]
    assert all(np.all(np.isfinite(v)) for v in theta.values())
    assert any(not np.array_equal(theta[k], init[k]) for k in shared)
    for name in private_names:
        np.testing.assert_array_equal(theta[name], init[name])
    before = unseen_device_mse(init, LAYERS, private_names=private_names)
    after = unseen_device_mse(theta, LAYERS, private_names=private_names)
    assert after < (1 - margin) * before, (before, after)


def wait_for_devices(grid: MqttGrid, n: int, timeout_s: float = 15.0) -> None:
    """Until ``n`` devices have announced themselves online; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while len(grid.get_node_ids()) < n:
        assert time.monotonic() < deadline, f"only {len(grid.get_node_ids())} of {n} devices announced"
        time.sleep(0.05)
