"""Start the console on a thread of the calling process: what ``tinyfleet server --console PORT`` and the tests use.

Why a thread and the caller's objects: a pyoxigraph store directory is locked
by the process that opened it, so a console inside the server must read the
server's own store object. The console serves the registry app over that
store (read-only without a token) and reads it through that app, by ASGI, so
it follows exactly the registry's rules. Its cost to the round is a
file read of ``rounds.jsonl`` per stream tick, one MQTT subscription and a
few registry queries while a page is open (``bench/console.py`` measures it).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from server.console.app import ConsoleState, create_console_app
from server.console.presence import Presence
from server.console.registry_client import RegistryClient
from server.console.sources import ACCOUNTS, BrokerAddress, RunSource, broker_from_accounts

if TYPE_CHECKING:
    from ontology.store import RegistryStore
    from server.core.round_loop import RoundReport

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass
class ConsoleHandle:
    """A running console: its ``url``, an ``observer`` for the round loop, and ``stop()``."""

    url: str
    state: ConsoleState
    server: uvicorn.Server
    thread: threading.Thread

    def observer(self, report: RoundReport) -> None:
        """Wake the console's streams and drop its cached registry answers: a round was recorded (costs the round
        one write to a pipe).

        Give it to the round loop after the :class:`server.core.run_dir.RoundsLog` observer, which writes
        the round the console then reads.
        """
        self.state.round_recorded()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the streams, stop uvicorn and the broker subscription; every wait has a deadline."""
        self.state.closing = True
        if self.state.registry_app is not None:  # its /events streams end too, or uvicorn would wait for them
            self.state.registry_app.state.events.close()
        self.server.should_exit = True
        self.thread.join(timeout=timeout_s)
        if self.state.presence is not None:
            self.state.presence.stop()

    def __enter__(self) -> ConsoleHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def registry_clients(store_or_url: RegistryStore | str | None, token: str | None) -> dict[str, Any]:
    """The ConsoleState fields for a registry: an open store (served in process) or a service URL (proxied)."""
    if store_or_url is None:
        return {}
    if isinstance(store_or_url, str):
        if not store_or_url.startswith(("http://", "https://")):
            raise ValueError(f"--registry {store_or_url!r}: give a registry service URL (http://HOST:PORT) or a store")
        client = RegistryClient.remote(store_or_url)
        return {"registry": client, "reader": client, "registry_url": store_or_url}
    from ontology.service import create_app

    served = create_app(store_or_url, token)  # the browser's: the service's own isolation and token check
    reading = create_app(store_or_url, None, isolate_queries=False)  # the console's own fixed queries, in process
    label = f"{store_or_url.url} (in this process)"
    return {"registry": RegistryClient.in_process(served, label), "reader": RegistryClient.in_process(reading, label),
            "registry_app": served, "writable": token is not None}


def start_console(
    port: int = 0,
    *,
    workdir: Path | Sequence[Path] | None = None,
    store_or_url: RegistryStore | str | None = None,
    broker: BrokerAddress | None = None,
    broker_password: str | None = None,
    token: str | None = None,
    host: str = LOOPBACK,
    settings: Mapping[str, Any] | None = None,
    federation: str | None = None,
    startup_timeout_s: float = 10.0,
) -> ConsoleHandle:
    """Serve the console on ``host:port`` (0: a free port) on a daemon thread; its handle once it answers.

    ``workdir``: the run(s) to watch (``rounds.jsonl``, checkpoints, ``accounts.json``). ``broker``: where the
    devices' status is read; if not given, the first workdir's ``accounts.json`` names the local broker and
    ``broker_password`` is the server's password. ``settings``/``federation``: what the in-server console knows of
    its run before the first checkpoint. ``token``: the registry's write token (the browser must still send it).
    """
    workdirs = [Path(workdir)] if isinstance(workdir, (str, Path)) else [Path(w) for w in workdir or ()]
    runs = [RunSource(w, settings if i == 0 else None, federation if i == 0 else None) for i, w in enumerate(workdirs)]
    if broker is None and workdirs:
        broker = broker_from_accounts(workdirs[0] / ACCOUNTS, broker_password)
    state = ConsoleState(runs=runs, **registry_clients(store_or_url, token))
    if broker is not None:
        state.presence = Presence(broker)
        state.presence.on_change = state.wakeup.poke
        state.presence.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if state.presence is not None:
            state.presence.stop()
        raise ValueError(f"the console cannot listen on {host}:{port}: {exc.strerror}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(create_console_app(state), log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tinyfleet-console", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the console did not start on {bound_host}:{bound_port} within {startup_timeout_s} s")
        time.sleep(0.02)
    return ConsoleHandle(f"http://{bound_host}:{bound_port}", state, server, thread)
