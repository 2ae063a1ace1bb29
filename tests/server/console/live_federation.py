"""A real MQTT federation in this process, wired as ``tinyfleet server --local-broker --registry DIR --console PORT`` wires it.

A private mosquitto with per-device accounts (:class:`server.transports.broker.LocalBroker`),
simulated MCUs on their own MQTT connections (:class:`firmware_sim.mqtt_fleet.MqttFleet`),
an Oxigraph registry that picks the devices and records every version
(:func:`server.serve.run_versions`, :func:`server.serve.device_selection`), the round loop
on a thread with the observers ``serve_mqtt`` gives it (``rounds.jsonl``, the versions)
plus the console's, and the console sharing the server's store object, as it must
inside the server. ``bench/console.py`` drives the same federation without the console.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet, device_id_of
from server.core.run_config import flatten_settings, settings_from_run_config
from server.core.run_dir import ROUNDS_LOG, RoundsLog
from server.serve import device_selection, open_registry, run_versions, write_accounts
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker
from server.transports.mqtt_grid import MqttGrid, MqttGridConfig

FEDERATION = "mqtt-tinyreptile"


@dataclass
class LiveFederation:
    """``with LiveFederation(tmp, ...) as run:`` → a broker, a fleet, a registry and rounds under way."""

    root: Path
    devices: int = 6
    rounds: int = 8
    per_round: int = 3
    reply_delay_s: float = 0.4  # each device's radio time: a round lasts long enough for a browser to see it
    layer_sizes: tuple[int, ...] = (1, 40, 40, 1)
    round_timeout_s: float = 8.0  # a killed device holds its round up to this long
    console: bool = True
    token: str | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    say_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = self.root / "server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.handle: Any = None

    def say(self, line: str) -> None:
        self.say_lines.append(line)

    def __enter__(self) -> LiveFederation:
        config = {"strategy": "tinyreptile", "num-rounds": self.rounds, "clients-per-round": self.per_round,
                  "checkpoint-dir": str(self.workdir / "checkpoints"), "node-timeout-s": 60.0,
                  "layer-sizes": ",".join(map(str, self.layer_sizes)), **self.extra_config}
        self.settings = settings_from_run_config(config)
        self.accounts = BrokerAccounts()
        self.accounts.add_devices(device_id_of(s) for s in range(self.devices))
        self.broker = LocalBroker(self.workdir / "broker", self.accounts)
        self.broker.start()
        write_accounts(self.workdir / "accounts.json", self.broker)
        self.store = open_registry(str(self.root / "registry"))
        self.versions = run_versions(self.store, FEDERATION, self.settings, self.workdir / "models")
        self.selection = device_selection(self.versions.registry, self.settings, self.workdir / "models", self.say)
        if self.console:
            from server.console import start_console

            self.handle = start_console(0, workdir=self.workdir, store_or_url=self.store,
                                        broker_password=self.accounts.server_password, token=self.token,
                                        settings=flatten_settings(self.settings), federation=FEDERATION)
        fleet_config = FleetConfig(host=self.broker.host, port=self.broker.port, layer_sizes=self.layer_sizes,
                                   reply_delay_s=self.reply_delay_s)
        self.fleet = MqttFleet(range(self.devices), self.accounts.devices, fleet_config)
        self.fleet.start()
        self.thread = threading.Thread(target=self._federate, name="federation", daemon=True)
        return self

    def start_rounds(self) -> None:
        self.thread.start()

    def _federate(self) -> None:
        from server.core.federation import run_federation

        grid_config = MqttGridConfig(host=self.broker.host, port=self.broker.port, username=SERVER_USER,
                                     password=self.accounts.server_password, round_timeout_s=self.round_timeout_s,
                                     device_deadline_s=self.round_timeout_s)
        observers = [RoundsLog(self.workdir / ROUNDS_LOG), self.versions]
        if self.handle is not None:
            observers.append(self.handle.observer)
        try:
            with MqttGrid(grid_config, device_filter=self.selection, on_announce=self.selection.announced) as grid:
                run_federation(grid, self.settings, observers=observers)
                grid.finish()
        except BaseException as exc:  # the test reports it
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout_s: float = 120.0) -> None:
        assert self.done.wait(timeout_s), "the federation did not finish in time"
        assert self.error is None, repr(self.error)

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.done.wait(60)
        self.fleet.stop()
        if self.handle is not None:
            self.handle.stop()
        self.store.close()
        self.broker.stop()
