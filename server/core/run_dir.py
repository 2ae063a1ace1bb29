"""A run's working directory: everything a server run writes lives under ``--workdir``, and a rerun is never silent.

Why: checkpoints used to go to a directory relative to wherever the server
was started, so a second run from the same place quietly resumed a finished
run and did 0 rounds, and two runs in one workdir shared files by accident.
Here a workdir holds one run: its checkpoints (``checkpoints/``), its round
record (``rounds.jsonl``, one JSON object per round, appended by an observer
of the round loop), its broker files and logs. Starting a server in a
workdir that already holds a run is refused unless the user says what to do
with it: ``--resume`` continues from the last checkpoint, ``--fresh`` deletes
the old run's checkpoints and record and starts over.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from server.core.checkpoint import Checkpointer
from server.core.round_loop import RoundReport

CHECKPOINTS = "checkpoints"
ROUNDS_LOG = "rounds.jsonl"


def prepare_run(workdir: Path, run_config: Mapping[str, object], *, resume: bool, fresh: bool) -> dict[str, object]:
    """The run config with its checkpoints under ``workdir`` (unless given); ValueError if the workdir's run is in the way.

    A checkpoint directory named in the run config is the user's: it is used
    as given, and the same resume/fresh rule applies to it.
    """
    if resume and fresh:
        raise ValueError("choose one: --resume (continue the run in the workdir) or --fresh (delete it, start over)")
    config = dict(run_config)
    config.setdefault("checkpoint-dir", str((workdir / CHECKPOINTS).resolve()))
    checkpoints = Path(str(config["checkpoint-dir"]))
    latest = Checkpointer(checkpoints).load_latest() if checkpoints.is_dir() else None
    if latest is not None and not (resume or fresh):
        raise ValueError(
            f"{checkpoints} already holds a run at round {latest.server_round} ({latest.meta.get('strategy')}): "
            "give --resume to continue it or --fresh to delete it and start over"
        )
    if fresh:
        if checkpoints.is_dir():
            shutil.rmtree(checkpoints)
        (workdir / ROUNDS_LOG).unlink(missing_ok=True)
    if resume and latest is None:
        raise ValueError(f"--resume: {checkpoints} holds no checkpoint to continue from")
    return config


def check_rounds_left(checkpoint_dir: str | Path, num_rounds: int) -> None:
    """ValueError if the checkpoint is already at ``num_rounds``: a resumed run must have rounds left to do."""
    latest = Checkpointer(checkpoint_dir).load_latest() if Path(checkpoint_dir).is_dir() else None
    if latest is not None and latest.server_round >= num_rounds:
        raise ValueError(
            f"the run in {checkpoint_dir} is already at round {latest.server_round} of {num_rounds}: nothing to do; "
            f"give --rounds above {latest.server_round} to continue it, or --fresh to start over"
        )


class RoundsLog:
    """An observer of the round loop that appends each round to ``rounds.jsonl`` (machine-readable, one line a round)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()

    def __call__(self, report: RoundReport) -> None:
        record = round_record(report, time.monotonic() - self._started)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")


def round_record(report: RoundReport, elapsed_s: float) -> dict[str, object]:
    """One round as ``rounds.jsonl`` keeps it."""
    return {
        "round": report.server_round,
        "elapsed_s": round(elapsed_s, 3),
        "replies": report.replies,
        "failures": report.failures,
        "participants": list(report.participant_devices or ()),
        "metrics": report.metrics,
        "evaluate_metrics": report.evaluate_metrics,
    }


def round_line(record: Mapping[str, object], num_rounds: int) -> str:
    """The progress line of one recorded round: who took part, loss before → after, bytes up/down, ε, time."""
    metrics = record.get("metrics") or {}
    assert isinstance(metrics, Mapping)

    def number(key: str, spec: str) -> str:
        value = metrics.get(key)
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    return (
        f"round {record['round']}/{num_rounds}: {len(record.get('participants') or [])} device(s), "  # type: ignore[arg-type]
        f"loss {number('loss-before', '.4f')} → {number('loss-after', '.4f')}, "
        f"bytes up {number('bytes-sent', ',.0f')} down {number('bytes-received', ',.0f')}, "
        f"ε {number('meta-step-size', '.3f')}, {float(record.get('elapsed_s', 0.0)):.1f} s"  # type: ignore[arg-type]
    )


def run_summary(rounds: Sequence[Mapping[str, object]], num_rounds: int, checkpoint_dir: str | Path,
                workdir: Path) -> list[str]:
    """The end of a run in a few lines: how far it got, how the probe loss moved, what the radio carried, and
    where the model is and how to turn it into what a device installs."""
    def metric(record: Mapping[str, object], key: str) -> float | None:
        value = (record.get("metrics") or {}).get(key)  # type: ignore[union-attr]
        return float(value) if isinstance(value, (int, float)) else None

    def loss(record: Mapping[str, object]) -> str:
        before, after = metric(record, "loss-before"), metric(record, "loss-after")
        return f"{before:.4f} → {after:.4f}" if before is not None and after is not None else "-"

    done = [r for r in rounds if r.get("participants")]
    devices = {d for r in rounds for d in (r.get("participants") or [])}  # type: ignore[union-attr]
    device_rounds = sum(len(r.get("participants") or []) for r in rounds)  # type: ignore[arg-type]
    up = sum(metric(r, "bytes-sent") or 0.0 for r in rounds)
    down = sum(metric(r, "bytes-received") or 0.0 for r in rounds)
    last = int(rounds[-1]["round"]) if rounds else 0  # type: ignore[call-overload]
    lines = [f"summary: round {last}/{num_rounds}; {device_rounds} device-rounds by {len(devices)} devices, "
             f"{len(rounds) - len(done)} round(s) without a usable reply"]  # fmt: skip
    if done:
        lines.append(f"probe loss before → after: round {done[0]['round']} {loss(done[0])}, "
                     f"round {done[-1]['round']} {loss(done[-1])}")  # fmt: skip
    lines.append(f"radio: {up:,.0f} B up, {down:,.0f} B down in all")
    lines.append(f"model: {checkpoint_dir} (round {last}); for a device: tinyfleet export npz|tflite|c|arduino "
                 f"--run {workdir} --out DIR")  # fmt: skip
    return lines


def read_rounds(path: Path) -> list[dict[str, object]]:
    """The rounds recorded so far (a line still being written is skipped)."""
    rounds = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rounds.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rounds
