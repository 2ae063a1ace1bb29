"""What ``device run`` means, once: its options, their defaults and help texts, and the dispatch to a transport.

Two command lines start a device: ``tinyfleet-device run`` (argparse only, for
a device install; :mod:`firmware_sim.device_cli`) and ``tinyfleet device run``
(typer, in the full install; :mod:`server.cli`). Both build a
:class:`DeviceRunOptions` and call :func:`run_device`, and both take their
defaults from the dataclass and their help texts from :data:`HELP`, so the
two cannot drift apart the way Flower mode and MQTT mode once did.

Standard library only (plus :mod:`firmware_sim.linux_device`, imported when a
device actually runs), so a bad command line is refused in milliseconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware_sim.addresses import parse_address
from firmware_sim.supernode import FlowerError

Say = Callable[[str], None]
PASSWORD_ENV = "TINYFLEET_DEVICE_PASSWORD"


@dataclass(frozen=True)
class DeviceRunOptions:
    """One ``device run`` command line: MQTT mode (``mqtt``/``accounts`` + ``device_id``) or Flower (``superlink``)."""

    mqtt: str | None = None
    device_id: str | None = None
    password: str | None = None
    accounts: Path | None = None
    tls_ca: str | None = None
    rounds: int | None = None
    superlink: str | None = None
    partition_id: int | None = None
    num_partitions: int = 1
    root_certificates: str | None = None
    duration: float | None = None
    workdir: Path = Path("runs/device")
    task: str | None = None  # a task name or a user's task folder; None: the id's task (or the accounts file's)
    profile: str | None = None  # the board the device is; None: its task's own board for that id
    data: Path | None = None  # this device's own samples, in its (user) task's data layout


DEFAULTS = DeviceRunOptions()

HELP: dict[str, str] = {
    "mqtt": "Broker HOST:PORT: speak the TinyFleet wire protocol like an MCU.",
    "device_id": "MQTT: device id (its username), e.g. sine-3.",
    "password": "MQTT: the device's password.",
    "accounts": "MQTT: accounts.json written by `tinyfleet server --local-broker`.",
    "tls_ca": "MQTT: CA certificate file; set to use TLS.",
    "rounds": "MQTT: leave after this many rounds (default: until stopped).",
    "superlink": "Flower SuperLink HOST:PORT: run a SuperNode with the TinyFleet ClientApp.",
    "partition_id": "Flower: which simulated device this node plays.",
    "num_partitions": "Flower: fleet size, passed to the ClientApp.",
    "root_certificates": "Flower: CA certificate of a TLS SuperLink (else --insecure).",
    "duration": "Leave after this many seconds (default: until stopped).",
    "workdir": "Flower: where the SuperNode log goes.",
    "task": "MQTT: the task, by name (sine, characters, keywords, presence) or a task folder with a task.toml "
            "(default: the one the id names, or the accounts file's).",
    "profile": "MQTT: the board this device is, e.g. nano33ble, esp32s3 or rpi4 (`tinyfleet profiles`); its Thing "
               "Description says so (default: the task's own board).",
    "data": "MQTT: a folder of this device's own samples in its task's layout: a task folder's, one drawer's "
            "Omniglot folder (characters) or one speaker's Speech Commands folder (keywords).",
}

DEVICE_ERRORS: tuple[type[BaseException], ...] = (ValueError, TimeoutError, OSError, KeyError, FlowerError)
"""What :func:`run_device` raises for a bad command line, a missing file or an unreachable broker or SuperLink:
both command lines print the message on one line and exit with status 2."""


@dataclass(frozen=True)
class MqttTarget:
    """Where and as whom an MQTT device logs in, resolved from the options, the accounts file and the environment."""

    host: str
    port: int
    device_id: str
    password: str


def resolve_mqtt(options: DeviceRunOptions, environ: dict[str, str] | None = None) -> MqttTarget:
    """Broker address and credentials of an MQTT device; ValueError/KeyError/OSError saying what is missing.

    The password comes from ``password``, then ``$TINYFLEET_DEVICE_PASSWORD``, then the accounts file; the
    address from ``mqtt``, else the accounts file.
    """
    from edge.identity import DeviceIdentity

    if not (options.mqtt or options.accounts) or not options.device_id:
        raise ValueError("give --mqtt HOST:PORT (or --accounts FILE) and --id, or --superlink and --partition-id")
    if DeviceIdentity.parse(options.device_id).seed is None:  # before any connection
        raise ValueError(f"device id must be <task>-<number> (e.g. sine-3, keywords-7), got {options.device_id!r}")
    env = os.environ if environ is None else environ
    password = options.password or env.get(PASSWORD_ENV) or None
    if options.accounts:
        known = json.loads(Path(options.accounts).read_text())
        try:
            host, port = parse_address(options.mqtt) if options.mqtt else (str(known["host"]), int(known["port"]))
            password = password or known["devices"].get(options.device_id)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{options.accounts} is not an accounts file of `tinyfleet server` ({exc!r})") from None
        if password is None:
            raise ValueError(f"{options.accounts} has no account for {options.device_id!r}")
    else:
        host, port = parse_address(options.mqtt)  # type: ignore[arg-type]
    if not password:
        raise ValueError(f"the device needs its password: --password, {PASSWORD_ENV} or --accounts")
    return MqttTarget(host, port, options.device_id, password)


def check_options(options: DeviceRunOptions) -> None:
    """Refuse contradictory or incomplete options (ValueError) before anything starts."""
    if options.superlink and (options.mqtt or options.accounts):
        raise ValueError("choose one: --superlink (Flower) or --mqtt/--accounts (wire protocol)")
    if options.superlink and options.partition_id is None:
        raise ValueError("--superlink needs --partition-id")
    if options.rounds is not None and options.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {options.rounds}")
    if options.duration is not None and options.duration <= 0:
        raise ValueError(f"--duration must be > 0 seconds, got {options.duration}")
    placed = [name for name, value in (("--task", options.task), ("--profile", options.profile),
                                       ("--data", options.data)) if value is not None]  # fmt: skip
    if options.superlink and placed:
        raise ValueError(f"{', '.join(placed)}: for an MQTT device; a SuperNode plays the device its partition names")
    if options.profile is not None:
        from edge.profiles import get_profile

        try:
            get_profile(options.profile)
        except KeyError as exc:
            raise ValueError(f"--profile: {exc.args[0]}") from None
    if options.data is not None and not Path(options.data).exists():
        raise ValueError(f"--data {options.data}: no such file or folder")


def task_of_accounts(options: DeviceRunOptions) -> str | None:
    """The task a device runs: ``--task``, else the accounts file's (a user task's folder travels there), else None."""
    if options.task is not None or options.accounts is None:
        return options.task
    try:
        task = json.loads(Path(options.accounts).read_text()).get("task")
    except (AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{options.accounts} is not an accounts file of `tinyfleet server` ({exc!r})") from None
    return task if isinstance(task, str) else None


def run_device(options: DeviceRunOptions, say: Say = print, environ: dict[str, str] | None = None) -> int:
    """Run the device the options describe until it is done or stopped; the process exit status.

    Raises one of :data:`DEVICE_ERRORS` for anything the user must fix.
    """
    check_options(options)
    if options.superlink:
        from firmware_sim.linux_device import run_supernode

        parse_address(options.superlink)
        return run_supernode(
            options.superlink, options.partition_id, options.num_partitions,  # type: ignore[arg-type]
            workdir=Path(options.workdir).resolve(), root_certificates=options.root_certificates,
            duration_s=options.duration, say=say,
        )  # fmt: skip
    target = resolve_mqtt(options, environ)
    from firmware_sim.linux_device import place_device, run_mqtt_device

    task = place_device(target.device_id, task_of_accounts(options), options.profile, options.data)
    done = run_mqtt_device(
        target.host, target.port, target.device_id, target.password, task=task, tls_ca=options.tls_ca,
        rounds=options.rounds, duration_s=options.duration, say=say,
    )  # fmt: skip
    say(f"{target.device_id}: {done} round(s) done")
    return 0
