"""What the console reads about a run from its workdir: the rounds as they land, the settings, the broker's address.

Why files: ``tinyfleet server`` already writes everything a viewer needs
under ``--workdir`` (``rounds.jsonl``, one JSON line per round, appended by
the round loop's :class:`server.core.run_dir.RoundsLog` observer; the latest
checkpoint's meta with the strategy and every setting; ``accounts.json`` with
the local broker's address). Reading them costs the round loop nothing, works
the same for a console inside the server and a standalone one, and a file
that is missing, half-written or truncated (``--fresh``) is simply read again
at the next look.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from server.core.checkpoint import LATEST
from server.core.run_dir import CHECKPOINTS, ROUNDS_LOG
from server.transports.broker import SERVER_USER

ACCOUNTS = "accounts.json"


@dataclass(frozen=True)
class BrokerAddress:
    """Where the console listens for the devices' retained status: a broker and the credentials to read it."""

    host: str
    port: int
    username: str = SERVER_USER
    password: str | None = None
    tls_ca: str | None = None

    def __str__(self) -> str:  # never the password
        return f"mqtt://{self.username}@{self.host}:{self.port}"


def parse_broker_url(url: str, password: str | None = None, tls_ca: str | None = None) -> BrokerAddress:
    """``mqtt://[user[:password]@]host:port`` (``mqtts://`` needs ``tls_ca``); ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"--broker {url!r}: give mqtt://[user[:password]@]host:port")
    if parts.scheme == "mqtts" and not tls_ca:
        raise ValueError(f"--broker {url!r}: mqtts:// needs --tls-ca (the broker's CA certificate)")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"--broker {url!r}: the host and port are required, e.g. mqtt://127.0.0.1:1883")
    username = unquote(parts.username) if parts.username else SERVER_USER
    secret = unquote(parts.password) if parts.password else password
    return BrokerAddress(parts.hostname, port, username, secret, tls_ca)


def broker_from_accounts(path: Path, password: str | None) -> BrokerAddress | None:
    """The local broker ``tinyfleet server --local-broker`` wrote to ``accounts.json`` (None if not there yet)."""
    try:
        known = json.loads(path.read_text())
        return BrokerAddress(str(known["host"]), int(known["port"]), SERVER_USER, password)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RoundFeed:
    """The rounds of ``rounds.jsonl`` so far; :meth:`refresh` reads what was appended since the last look.

    ``version`` grows whenever the rounds change, so a stream can tell cheaply whether there is news.
    Thread-safe: the round loop's observer, the stream and page handlers may all call :meth:`refresh`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = 0
        self._rounds: list[dict[str, Any]] = []
        self._offset = 0
        self._inode: int | None = None
        self._last_line = b""  # the last complete line read, to tell a replaced file from a grown one
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Read the new complete lines; True if the rounds changed. Another or a shorter file than before starts over."""
        with self._lock:
            try:
                stat = self.path.stat()
                size, inode = stat.st_size, stat.st_ino
            except OSError:
                size, inode = 0, None
            if size < self._offset or (inode != self._inode and self._offset):  # --fresh deleted the old run's record
                self._start_over()
            self._inode = inode
            if size == self._offset:
                return False
            with self.path.open("rb") as handle:
                if self._last_line and not self._still_there(handle):  # replaced by a longer file (inode reused)
                    self._start_over()
                handle.seek(self._offset)
                chunk = handle.read(size - self._offset)
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next look
            self._offset += len(complete)
            if complete:
                self._last_line = complete[complete.rfind(b"\n", 0, len(complete) - 1) + 1:]
            added = 0
            for line in complete.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("round"), int):
                    self._rounds.append(record)
                    added += 1
            if added:
                self.version += 1
            return added > 0

    def _still_there(self, handle: Any) -> bool:
        """Whether the last line read is still where it was: a file system may give a new file the old inode."""
        handle.seek(self._offset - len(self._last_line))
        return handle.read(len(self._last_line)) == self._last_line

    def _start_over(self) -> None:
        self._rounds, self._offset, self._last_line = [], 0, b""
        self.version += 1

    def rounds(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rounds)


def run_meta(pointer: Path) -> dict[str, Any]:
    """The strategy, settings and last round of the checkpoint ``pointer`` names (``{}`` before the first one)."""
    try:
        record = json.loads(pointer.read_text())
    except (OSError, ValueError):
        return {}
    meta = record.get("meta") if isinstance(record, dict) else None
    return {**meta, "server_round": record.get("server_round")} if isinstance(meta, dict) else {}


@dataclass
class RunSource:
    """One run as the console shows it: its workdir's files, plus the settings the server handed in (if any)."""

    workdir: Path
    settings: Mapping[str, Any] | None = None  # the in-server console knows them before the first checkpoint
    federation: str | None = None  # its id in the registry (mqtt-STRATEGY by default)

    def __post_init__(self) -> None:
        self.feed = RoundFeed(self.workdir / ROUNDS_LOG)
        self._meta: tuple[tuple[int, int] | None, dict[str, Any]] = (None, {})  # (the pointer's mtime and size, meta)

    @property
    def name(self) -> str:
        return self.workdir.name or str(self.workdir)

    def info(self) -> dict[str, Any]:
        """Strategy, settings and the federation's registry id, from what the server said or the checkpoint."""
        meta = self._checkpoint_meta()
        settings = dict(self.settings or meta.get("settings") or {})
        strategy = settings.get("strategy") or meta.get("strategy")
        federation = self.federation or (f"mqtt-{strategy}" if strategy else None)
        return {"name": self.name, "strategy": strategy, "settings": settings, "federation": federation,
                "checkpoint_round": meta.get("server_round")}

    def _checkpoint_meta(self) -> dict[str, Any]:
        """:func:`run_meta`, re-read only when the checkpoint pointer changed (a stat, not a read per request)."""
        pointer = (_checkpoint_dir(self.settings) or self.workdir / CHECKPOINTS) / LATEST
        try:
            status = pointer.stat()
            stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
        except OSError:
            stamp = None
        if stamp is None or stamp != self._meta[0]:
            self._meta = (stamp, run_meta(pointer) if stamp is not None else {})
        return self._meta[1]

    def federation_id(self) -> str | None:
        """The federation's registry id: as the server said it, or from the checkpoint's strategy."""
        return self.federation or self.info()["federation"]


def _checkpoint_dir(settings: Mapping[str, Any] | None) -> Path | None:
    value = (settings or {}).get("checkpoint-dir") or (settings or {}).get("checkpoint_dir")
    return Path(str(value)) if value else None
