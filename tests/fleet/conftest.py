"""A real mosquitto on loopback per test, with per-device accounts and the fleet ACL.

Starting one takes ~0.1 s, so every test gets a fresh broker (and a fault test
can restart it) instead of sharing state between tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from firmware_sim.mqtt_fleet import device_id_of
from mqtt_helpers import EXTRA_DEVICES, FLEET_SEEDS
from server.transports.broker import BrokerAccounts, LocalBroker



@pytest.fixture(autouse=True)
def flower_task_identity(monkeypatch):
    """The MqttGrid sets Flower's process-wide task identity if unset; undo it after each test."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, getattr(TaskIdentity, name))


@pytest.fixture
def accounts() -> BrokerAccounts:
    accounts = BrokerAccounts()
    accounts.add_devices([device_id_of(s) for s in FLEET_SEEDS] + list(EXTRA_DEVICES))
    return accounts


@pytest.fixture
def broker(tmp_path, accounts) -> Iterator[LocalBroker]:
    logging.getLogger("server.transports.mqtt_grid").setLevel(logging.INFO)
    with LocalBroker(tmp_path / "broker", accounts) as running:
        yield running
