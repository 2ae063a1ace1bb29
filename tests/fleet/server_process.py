"""A TinyFleet server in its own process (so a test can SIGKILL it): run_federation over an MqttGrid.

Usage: python server_process.py HOST PORT PASSWORD CHECKPOINT_DIR ROUNDS
"""

from __future__ import annotations

import logging
import sys

from server.transports.broker import SERVER_USER
from server.core.federation import DeviceRoundConfig, FederationSettings, run_federation
from server.transports.mqtt_grid import MqttGrid, MqttGridConfig
from server.strategies.tiny_reptile import TinyReptileConfig


def main(host: str, port: str, password: str, checkpoint_dir: str, rounds: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = FederationSettings(
        strategy="tinyreptile",
        num_rounds=int(rounds),
        checkpoint_dir=checkpoint_dir,
        reptile=TinyReptileConfig(clients_per_round=8, meta_step_size=1.0, anneal="linear", min_available_nodes=8),
        device=DeviceRoundConfig(stream_samples=10, probe_samples=5, inner_learning_rate=0.02),
        node_timeout_s=20.0,
    )
    config = MqttGridConfig(host=host, port=int(port), username=SERVER_USER, password=password,
                            round_timeout_s=10.0, grace_s=0.3)
    with MqttGrid(config) as grid:
        run_federation(grid, settings)


if __name__ == "__main__":
    main(*sys.argv[1:])
