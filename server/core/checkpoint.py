"""Per-round checkpoints of the meta-model, so a stopped server resumes.

Each save writes ``round-NNNNNN.npz`` and then points ``latest.json`` at it,
both through a temporary file and ``os.replace``: a crash mid-write leaves
the previous checkpoint intact rather than a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LATEST = "latest.json"


THETA_PREFIX = "theta/"
STATE_PREFIX = "state/"


@dataclass(frozen=True)
class Checkpoint:
    server_round: int
    weights: dict[str, np.ndarray]
    meta: dict[str, Any]
    strategy_state: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. a momentum buffer


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def save(
        self,
        server_round: int,
        weights: dict[str, np.ndarray],
        meta: dict[str, Any] | None = None,
        strategy_state: dict[str, np.ndarray] | None = None,
    ) -> Path:
        name = f"round-{server_round:06d}.npz"
        target = self.directory / name
        arrays = {THETA_PREFIX + k: v for k, v in weights.items()}
        arrays.update({STATE_PREFIX + k: v for k, v in (strategy_state or {}).items()})
        with tempfile.TemporaryFile() as buffer:
            np.savez(buffer, **arrays)
            buffer.seek(0)
            _atomic_write(target, buffer.read())
        record = {"server_round": server_round, "file": name, "meta": meta or {}}
        _atomic_write(self.directory / LATEST, json.dumps(record, indent=2).encode())
        self._prune()
        return target

    def _prune(self) -> None:
        rounds = sorted(self.directory.glob("round-*.npz"))
        for old in rounds[: max(len(rounds) - self.keep, 0)]:
            old.unlink(missing_ok=True)

    def load_latest(self) -> Checkpoint | None:
        pointer = self.directory / LATEST
        if not pointer.exists():
            return None
        record = json.loads(pointer.read_text())
        with np.load(self.directory / record["file"]) as data:
            weights = {k[len(THETA_PREFIX):]: data[k] for k in data.files if k.startswith(THETA_PREFIX)}
            state = {k[len(STATE_PREFIX):]: data[k] for k in data.files if k.startswith(STATE_PREFIX)}
        return Checkpoint(int(record["server_round"]), weights, dict(record.get("meta", {})), state)
