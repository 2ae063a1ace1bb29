"""``tinyfleet-device``: the device's own command line, standard library only.

Why a second command line next to ``tinyfleet device run``: that one lives in
:mod:`server.cli`, which needs typer and rich and mounts the registry (rdflib);
a device installed with ``pip install 'tinyfleet[device]'`` has none of them.
This one is argparse and takes the same options, defaults and help texts
(:mod:`firmware_sim.device_run` is their one home), so both run the same device.

Errors are one line on stderr (``tinyfleet-device: error: ...``) and exit
status 2, never a traceback; ``--version`` prints the installed package's version.

Examples::

    tinyfleet-device run --accounts runs/server/accounts.json --id sine-0 --rounds 2
    TINYFLEET_DEVICE_PASSWORD=... tinyfleet-device run --mqtt broker.lan:1883 --id sine-3
    tinyfleet-device run --superlink 10.0.0.2:9092 --partition-id 3 --num-partitions 8
    tinyfleet-device run --accounts W/accounts.json --id machines-2 --task my_task/ --profile rpi4 --data my_rows/
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from firmware_sim.device_run import DEFAULTS, DEVICE_ERRORS, HELP, PASSWORD_ENV, DeviceRunOptions, run_device

PROG = "tinyfleet-device"
USAGE_ERROR = 2


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show an option's default when it has one; ``None`` means "not set", which the help text explains."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line on one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def package_version() -> str:
    """The installed tinyfleet's version; ``unknown`` when running from a source tree that is not installed."""
    try:
        return metadata.version("tinyfleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """``tinyfleet-device [--version] run [options]``; option names are those of ``tinyfleet device run``."""
    parser = _Parser(prog=PROG, description="A TinyFleet device: join a fleet over MQTT or as a Flower SuperNode.")
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    run = commands.add_parser(
        "run", help="Join over MQTT (--mqtt/--accounts + --id) or as a Flower SuperNode (--superlink + --partition-id).",
        description="Join over MQTT (--mqtt/--accounts + --id) or as a Flower SuperNode (--superlink + --partition-id).",
        formatter_class=_DefaultsFormatter,
    )  # fmt: skip
    mqtt = run.add_argument_group("MQTT (the TinyFleet wire protocol)")
    mqtt.add_argument("--mqtt", metavar="HOST:PORT", default=DEFAULTS.mqtt, help=HELP["mqtt"])
    mqtt.add_argument("--id", dest="device_id", metavar="ID", default=DEFAULTS.device_id, help=HELP["device_id"])
    # no default shown: it would print a password taken from the environment
    mqtt.add_argument("--password", default=argparse.SUPPRESS, help=f"{HELP['password']} Default: ${PASSWORD_ENV}.")
    mqtt.add_argument("--accounts", type=Path, metavar="FILE", default=DEFAULTS.accounts, help=HELP["accounts"])
    mqtt.add_argument("--tls-ca", metavar="FILE", default=DEFAULTS.tls_ca, help=HELP["tls_ca"])
    mqtt.add_argument("--rounds", type=int, metavar="N", default=DEFAULTS.rounds, help=HELP["rounds"])
    mqtt.add_argument("--task", metavar="NAME|DIR", default=DEFAULTS.task, help=HELP["task"])
    mqtt.add_argument("--profile", metavar="BOARD", default=DEFAULTS.profile, help=HELP["profile"])
    mqtt.add_argument("--data", type=Path, metavar="DIR", default=DEFAULTS.data, help=HELP["data"])
    flower = run.add_argument_group("Flower SuperNode")
    flower.add_argument("--superlink", metavar="HOST:PORT", default=DEFAULTS.superlink, help=HELP["superlink"])
    flower.add_argument("--partition-id", type=int, metavar="N", default=DEFAULTS.partition_id, help=HELP["partition_id"])
    flower.add_argument("--num-partitions", type=int, metavar="N", default=DEFAULTS.num_partitions,
                        help=HELP["num_partitions"])  # fmt: skip
    flower.add_argument("--root-certificates", metavar="FILE", default=DEFAULTS.root_certificates,
                        help=HELP["root_certificates"])  # fmt: skip
    flower.add_argument("--workdir", type=Path, metavar="DIR", default=DEFAULTS.workdir, help=HELP["workdir"])
    both = run.add_argument_group("both")
    both.add_argument("--duration", type=float, metavar="SECONDS", default=DEFAULTS.duration, help=HELP["duration"])
    return parser


def options_from(namespace: argparse.Namespace) -> DeviceRunOptions:
    """The parsed ``run`` command line as the options :func:`~firmware_sim.device_run.run_device` takes."""
    return DeviceRunOptions(
        mqtt=namespace.mqtt, device_id=namespace.device_id, password=getattr(namespace, "password", None),
        accounts=namespace.accounts, tls_ca=namespace.tls_ca, rounds=namespace.rounds, superlink=namespace.superlink,
        partition_id=namespace.partition_id, num_partitions=namespace.num_partitions,
        root_certificates=namespace.root_certificates, duration=namespace.duration, workdir=namespace.workdir,
        task=namespace.task, profile=namespace.profile, data=namespace.data,
    )  # fmt: skip


def _say(message: str) -> None:
    print(message, flush=True)  # a supervisor's log shows each round as it ends


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the device; the exit status (2 for anything to fix)."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_device(options_from(namespace), say=_say)
    except DEVICE_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
