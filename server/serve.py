"""``tinyfleet server``: one federation, over a Flower deployment or over MQTT.

Why both modes share one settings path: the flat run config
(:mod:`server.core.run_config`) is what a Flower ServerApp receives, so the MQTT
mode builds its :class:`~server.core.federation.FederationSettings` from the same
keys. ``--run-config top-p=0.2`` therefore means the same in both modes, and
both end in :func:`server.core.federation.run_federation` with the same strategy.

- Flower mode starts a SuperLink on loopback (or attaches to ``--superlink``),
  writes the connection into ``$FLWR_HOME/config.toml``, submits the Flower
  App with ``flwr run`` and follows the run to its end within a deadline.
  A SuperLink it started is stopped on the way out, even on Ctrl-C.
- MQTT mode drives devices through :class:`server.transports.mqtt_grid.MqttGrid`, on an
  external broker or on a :class:`server.transports.broker.LocalBroker` it starts with
  accounts for the fleet (written to ``accounts.json`` for the devices).

In both modes a registry (``--registry DIR``, an Oxigraph store directory as
``tinyfleet registry --store`` takes) gets every round's meta-model version
with its provenance (round, participating devices, metrics;
:class:`server.registry.registry_link.RunVersions`); the registry is opened before
anything starts, so a bad one starts nothing. In Flower mode the ServerApp
process registers the versions (:mod:`server.transports.flower_server_app`). In MQTT
mode the registry also chooses the devices: the server registers the Thing
Description each device announces, describes the model and task, and samples
only among the devices the ``eligible-devices`` query returns
(:mod:`server.registry.registry_selection`).
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from firmware_sim.device_tasks import device_task
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker
from server.core.checkpoint import Checkpointer
from server.core.round_loop import RoundReport
from server.core.run_dir import ROUNDS_LOG, RoundsLog, check_rounds_left, read_rounds, round_line, round_record, run_summary
from server.transports.flower_deploy import (
    FlowerProcess,
    flower_env,
    parse_address,
    start_superlink,
    submit_run,
    wait_for_run,
    write_connection,
)
from server.process_signals import stop_on_sigterm
from server.core.run_config import SERVER_APP_KEYS, flatten_settings, known_keys, settings_from_run_config

if TYPE_CHECKING:
    from server.console import ConsoleHandle
    import numpy as np

    from ontology.store import RegistryStore
    from server.core.federation import FederationSettings
    from server.registry.registry_link import FederationRegistry, RunVersions
    from server.registry.registry_selection import AnnouncedSelection

log = logging.getLogger(__name__)

CONNECTION = "tinyfleet"
Say = Callable[[str], None]


def parse_run_config_items(items: Sequence[str]) -> dict[str, object]:
    """``["num-rounds=3", "anneal=cosine"]`` -> ``{"num-rounds": 3, "anneal": "cosine"}``.

    Values are read as TOML (numbers, booleans, quoted strings); a bare word is
    taken as a string. Unknown keys are refused here, before anything starts.
    """
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--run-config takes KEY=VALUE, got {item!r}")
        if key not in known_keys():
            raise ValueError(f"unknown run config key {key!r}; known: {', '.join(sorted(known_keys()))}")
        try:
            out[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text.strip()
    return out


@dataclass(frozen=True)
class FlowerServerOptions:
    workdir: Path
    superlink: str | None = None  # attach to this SuperLink instead of starting one
    host: str = "127.0.0.1"
    port: int | None = None  # SuperLink HTTP port when we start it; None = a free one
    flwr_home: Path | None = None
    root_certificates: str | None = None  # CA of an attached TLS SuperLink
    run_timeout_s: float = 3600.0
    startup_timeout_s: float = 30.0
    registry: str | None = None  # Oxigraph store directory: the ServerApp registers every version there
    federation: str | None = None  # its id in the registry; default flower-<strategy>


RoundHook = Callable[[Mapping[str, object], int], None]  # (a round as rounds.jsonl records it, the run's rounds)


def serve_flower(options: FlowerServerOptions, run_config: Mapping[str, object], say: Say = print,
                 on_round: RoundHook | None = None) -> str:
    """Submit the TinyFleet Flower App and wait for it; the run's final status.

    With a registry the ServerApp, which the SuperLink runs in a process of
    its own, opens the store and registers each round's version (run config
    keys ``registry`` and ``federation``). The store is checked here first and
    closed again, since one process at a time owns an Oxigraph directory: a
    bad registry, or a fresh run that would overwrite an earlier run's
    versions, starts nothing.
    """
    settings = settings_from_run_config(run_config)  # refuse bad settings here, not inside the SuperLink
    check_rounds_left(settings.checkpoint_dir, settings.num_rounds)
    rounds_log = options.workdir / ROUNDS_LOG
    run_config = {**run_config, "rounds-log": str(rounds_log)}
    if options.federation and not options.registry:
        raise ValueError("--federation names the federation in a registry: give --registry too")
    if options.registry:
        check_registry_task(settings)
        if options.superlink is not None:
            raise ValueError("--registry with --superlink: the ServerApp runs on the SuperLink's host, so give the "
                             "store's path there as a run config key instead (-c registry=PATH -c federation=ID)")
        location = str(Path(options.registry).resolve())
        federation = options.federation or f"flower-{settings.strategy}"
        store = open_registry(location, say)
        try:
            run_versions(store, federation, settings)  # refuses a clash now, while nothing runs
        finally:
            store.close()
        run_config = {**run_config, "registry": location, "federation": federation}
        say(f"registry {location}: versions of federation {federation}")
    flwr_home = options.flwr_home or options.workdir / "flwr"
    env = flower_env(flwr_home)
    superlink: FlowerProcess | None = None
    stop_on_sigterm()
    try:
        if options.superlink is None:
            superlink, address = start_superlink(
                options.workdir, options.host, options.port, env, timeout_s=options.startup_timeout_s
            )
            say(f"SuperLink on {address} (log {superlink.log_path}); devices join with: "
                f"tinyfleet device run --superlink {address} --partition-id N")  # fmt: skip
        else:
            parse_address(options.superlink)
            address = options.superlink
        write_connection(flwr_home, CONNECTION, address, options.root_certificates)
        # the whole resolved settings, not just what was given: the App's table cannot change the experiment
        submitted = {**flatten_settings(settings), **{k: v for k, v in run_config.items() if k in SERVER_APP_KEYS}}
        run_id = submit_run(CONNECTION, env, submitted)
        say(f"run {run_id} submitted; follow it with: FLWR_HOME={flwr_home} flwr log {run_id} {CONNECTION}")
        shown = len(read_rounds(rounds_log))

        def show_new_rounds() -> None:  # the ServerApp records each round in rounds.jsonl; show what is new
            nonlocal shown
            rounds = read_rounds(rounds_log)
            for record in rounds[shown:]:
                say(round_line(record, settings.num_rounds))
                if on_round is not None:
                    on_round(record, settings.num_rounds)
            shown = len(rounds)

        status = wait_for_run(CONNECTION, run_id, env, options.run_timeout_s, on_poll=show_new_rounds)
        show_new_rounds()
        say(f"run {run_id}: {status}; checkpoints in {settings.checkpoint_dir}, rounds in {rounds_log}")
        for line in run_summary(read_rounds(rounds_log), settings.num_rounds, settings.checkpoint_dir, options.workdir):
            say(line)
        return status
    finally:
        if superlink is not None:
            superlink.stop()


@dataclass(frozen=True)
class MqttServerOptions:
    workdir: Path
    broker: str | None = None  # HOST:PORT of an external broker
    username: str = SERVER_USER
    password: str | None = None
    tls_ca: str | None = None
    local_broker: bool = False
    fleet: int = 0  # accounts <task>-0 .. <task>-(fleet-1) on the local broker
    round_timeout_s: float = 30.0
    quorum: float = 1.0
    registry: str | None = None  # Oxigraph store directory (or an open_store URL): register every version
    federation: str | None = None  # its id in the registry; default mqtt-<strategy>
    console: int | None = None  # serve the fleet console on 127.0.0.1:PORT during the run (0: a free port)


def write_accounts(path: Path, broker: LocalBroker, task: str = "sine") -> None:
    """The local broker's address, the fleet's task and its passwords, for `tinyfleet device run --accounts` and
    `tinyfleet fleet run --accounts` (mode 0600). Each device id also names its task (``keywords-3``)."""
    accounts = {"host": broker.host, "port": broker.port, "task": task, "devices": broker.accounts.devices}
    path.write_text(json.dumps(accounts, indent=1))
    path.chmod(0o600)


def serve_mqtt(options: MqttServerOptions, run_config: Mapping[str, object], say: Say = print,
               on_round: RoundHook | None = None) -> Path:
    """Run the federation over MQTT; the checkpoint directory. Bad options or registry: ValueError, nothing started."""
    settings = settings_from_run_config(run_config)
    check_rounds_left(settings.checkpoint_dir, settings.num_rounds)
    if options.local_broker == (options.broker is not None):
        raise ValueError("give exactly one of --mqtt HOST:PORT (an external broker) or --local-broker")
    if options.local_broker and options.fleet < 1:
        raise ValueError(f"--local-broker needs --fleet N (accounts for devices {settings.device.task}-0 .. "
                         f"{settings.device.task}-N-1)")
    if options.broker is not None:
        parse_address(options.broker)
    if options.federation and not options.registry:
        raise ValueError("--federation names the federation in a registry: give --registry too")
    if options.registry:
        check_registry_task(settings)
    store = open_registry(options.registry, say) if options.registry else None
    try:
        versions = selection = None
        if store is not None:
            versions = run_versions(store, options.federation or f"mqtt-{settings.strategy}", settings,
                                    options.workdir / "models")
            say(f"registry {store.url}: versions of federation {versions.registry.federation}")
            selection = device_selection(versions.registry, settings, options.workdir / "models", say)
        stop_on_sigterm()
        return _serve_mqtt(options, settings, versions, say, selection, on_round)
    finally:
        if store is not None:
            store.close()


def check_registry_task(settings: FederationSettings) -> None:
    """The registry describes and selects by the sine MLP's training model only so far: refuse another task's
    run with a registry before anything starts, instead of registering a model that is not the one trained."""
    if settings.device.task != "sine":
        raise ValueError(f"--registry with --task {settings.device.task}: the registry describes only the sine MLP's "
                         "training model so far; run this task without --registry")


def open_registry(location: str, say: Say | None = None) -> RegistryStore:
    """The registry store at ``location`` (a directory = Oxigraph), or a ValueError saying why not.

    A directory that does not exist yet becomes a new store (the run registers its versions there), and
    ``say`` is told so: a mistyped path never silently starts an empty registry.
    """
    from ontology.store import StoreError, open_store

    fresh = "://" not in location and ":" not in location.split("/", 1)[0] and not Path(location).exists()
    try:
        store = open_store(location)
    except (StoreError, OSError) as exc:
        raise ValueError(f"--registry {location}: {exc}") from exc
    if fresh and say is not None:
        say(f"registry {location}: no store there yet, a new one was created")
    return store


def run_versions(store: RegistryStore, federation_id: str, settings: FederationSettings, models: Path | None = None) -> RunVersions:
    """What registers the versions of this run in ``store``: resumes the federation with the checkpoint, or
    starts it (refused if the registry already holds an earlier fresh run's versions).

    With ``models`` (a directory) the model is first exported there as a TFLite training graph and described in
    the store, so each version registered is a version of a described model; without, only the clash is checked.
    """
    from server.core.federation import initial_weights
    from server.registry.registry_link import open_run_versions
    from server.registry.registry_selection import describe_training_model, sine_model_name

    latest = Checkpointer(settings.checkpoint_dir).load_latest()
    start_round = latest.server_round if latest is not None else 0
    name = sine_model_name(settings.layer_sizes)
    initial = initial_weights(settings)

    def describe(registry: FederationRegistry, task: str) -> str:
        assert models is not None
        return describe_training_model(registry, task, settings.layer_sizes, initial, models / f"{name}.tflite")

    return open_run_versions(store, federation_id, name, start_round, initial, describe=describe if models else None)


def device_selection(registry: FederationRegistry, settings: FederationSettings, models: Path, say: Say) -> AnnouncedSelection:
    """Describe the model (exported to ``models``) and task in the registry; the grid hooks that select by them."""
    from server.core.federation import initial_weights
    from server.registry.registry_selection import open_selection

    selection = open_selection(registry, settings.layer_sizes, initial_weights(settings), models, say)
    say(f"registry: devices must be eligible for {selection.model} on {selection.task} (query eligible-devices)")
    return selection


def _serve_mqtt(
    options: MqttServerOptions,
    settings: FederationSettings,
    versions: RunVersions | None,
    say: Say,
    selection: AnnouncedSelection | None = None,
    on_round: RoundHook | None = None,
) -> Path:
    from server.core.federation import run_federation
    from server.transports.mqtt_grid import MqttGrid, MqttGridConfig

    broker: LocalBroker | None = None
    console: ConsoleHandle | None = None
    try:
        task = device_task(settings.device.task)
        if options.local_broker:
            accounts = BrokerAccounts()
            accounts.add_devices(task.device_id(i) for i in range(options.fleet))
            (options.workdir / "accounts.json").unlink(missing_ok=True)  # an earlier run's names its old broker
            broker = LocalBroker(options.workdir / "broker", accounts)
            broker.start()
            from firmware_sim.user_task import task_source

            write_accounts(options.workdir / "accounts.json", broker, task_source(task))
            host, port, password = broker.host, broker.port, accounts.server_password
            say(f"mosquitto on {host}:{port}; device passwords in {options.workdir / 'accounts.json'}")
        else:
            host, port = parse_address(options.broker or "")
            password = options.password
        config = MqttGridConfig(
            host=host, port=port, username=options.username, password=password, tls_ca=options.tls_ca,
            round_timeout_s=options.round_timeout_s, quorum=options.quorum,
            max_payload=task.receive_buffer_bytes(),  # what the task's firmware receives (its MODEL may exceed 64 KiB)
        )  # fmt: skip

        if options.console is not None:
            from server.console import start_console
            from server.console.sources import BrokerAddress

            console = start_console(
                options.console, workdir=options.workdir,
                store_or_url=versions.registry.store if versions is not None else None,
                broker=BrokerAddress(host, port, options.username, password, options.tls_ca),
                settings=flatten_settings(settings),
                federation=versions.registry.federation_id if versions is not None else None,
            )  # fmt: skip
            say(f"console on {console.url}")
        started = time.monotonic()

        def progress(report: RoundReport) -> None:
            record = round_record(report, time.monotonic() - started)
            say(round_line(record, settings.num_rounds))
            if on_round is not None:
                on_round(record, settings.num_rounds)

        observers = [RoundsLog(options.workdir / ROUNDS_LOG), *([console.observer] if console is not None else []), progress,
                     *([versions] if versions is not None else [])]  # fmt: skip
        hooks = {} if selection is None else {"device_filter": selection, "on_announce": selection.announced}
        with MqttGrid(config, **hooks) as grid:  # type: ignore[arg-type]
            say(f"waiting up to {settings.node_timeout_s:.0f} s for {settings.min_nodes} device(s)")
            directory = run_federation(grid, settings, observers=observers)
            grid.finish()  # the devices hear that the federation has ended, and leave
        latest = Checkpointer(directory).load_latest()
        say(f"checkpoint {directory} at round {latest.server_round if latest else 0}; "
            f"rounds in {options.workdir / ROUNDS_LOG}")  # fmt: skip
        for line in run_summary(read_rounds(options.workdir / ROUNDS_LOG), settings.num_rounds, directory, options.workdir):
            say(line)
        return directory
    finally:
        if console is not None:
            console.stop()
        if broker is not None:
            broker.stop()
