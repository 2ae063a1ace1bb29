"""``tinyfleet console``: the fleet console on its own, reading a run's workdir, a registry service and the broker.

Mounted on the ``tinyfleet`` app by ``server/cli.py``; this module imports only typer
at load time, so ``tinyfleet --help`` does not load FastAPI, uvicorn or rdflib.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

DEFAULT_PORT = 8765


def console(
    workdir: list[Path] = typer.Option([], help="A run's --workdir (rounds.jsonl, checkpoints, accounts.json); repeatable."),
    registry: str = typer.Option(None, help="A registry service URL (http://HOST:PORT, e.g. `tinyfleet registry serve`) "
                                            "or a store directory no other process holds."),
    broker: str = typer.Option(None, help="mqtt://[USER[:PASSWORD]@]HOST:PORT for the devices' online/offline status "
                                          "(default: the broker in the first workdir's accounts.json)."),
    password: str = typer.Option(None, envvar="TINYFLEET_MQTT_PASSWORD", show_default=False,
                                 help="MQTT password of the broker user (the server's, which may read every status)."),
    tls_ca: str = typer.Option(None, help="CA certificate of an mqtts:// broker."),
    token: str = typer.Option(None, envvar="TINYFLEET_REGISTRY_TOKEN", show_default=False,
                              help="With a store directory: the token writes through the console need."),
    port: int = typer.Option(DEFAULT_PORT, help="Port of the console (0: a free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default: the console has no login)."),
) -> None:
    """A live web view of the fleet, its federations and the registry (read-only without a token)."""
    from rich.console import Console

    from server.console.handle import start_console
    from server.console.sources import parse_broker_url

    say = Console(emoji=False).print
    store = None
    try:
        address = parse_broker_url(broker, password, tls_ca) if broker else None
        if registry and not registry.startswith(("http://", "https://")):
            from server.serve import open_registry

            store = open_registry(registry)
        handle = start_console(port, workdir=workdir, store_or_url=store if store is not None else registry,
                               broker=address, broker_password=password, token=token, host=host)
    except (ValueError, RuntimeError) as exc:
        if store is not None:
            store.close()
        say(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if host not in ("127.0.0.1", "::1", "localhost"):
        say(f"[yellow]warning:[/yellow] listening on {host}: anyone who can reach it can read the fleet")
    say(f"console on {handle.url} (Ctrl-C to stop)")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5) and handle.thread.is_alive():
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
        if store is not None:
            store.close()
