"""Every method on every TinyML task: ``tinyfleet bench --task`` for characters, keywords and presence.

For each task this trains TinyMetaFed, TinyReptile, FedAvg and the
local-only baseline over simulated Nano 33 BLE Sense devices (the real
strategies, driven over an in-process Flower grid), scores those and
from-scratch on the same unseen devices after K = 1, 5, 10 online shots, and
runs the concept-drift experiment (see :mod:`server.experiments.task_report`). It writes
``runs/bench/<task>.json`` and ``.png`` per task and ``runs/bench/tasks.json``
with the headline numbers, including issue 5's bar on characters 5-way
5-shot: TinyMetaFed − FedAvg ≥ 10 points and TinyMetaFed − from-scratch ≥ 20.

Usage::

    python bench/tasks.py                      # all three tasks, default settings (about an hour on 2 cores)
    python bench/tasks.py --tasks characters --rounds 50 --eval-devices 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from server.experiments.drift_curves import DriftConfig  # noqa: E402
from server.experiments.task_bench import TaskBenchConfig  # noqa: E402
from server.experiments.task_report import run_task_bench  # noqa: E402

TASKS = ("characters", "keywords", "presence")


def headline(report: dict, shots: int = 5) -> dict[str, object]:
    """The K-shot values per method, the two margins issue 5 asks of TinyMetaFed, and its paired margin over every row."""
    values = {r["method"]: r["value"] for r in report["adaptation"] if r["shots"] == shots}
    out: dict[str, object] = {"shots": shots, "metric": report["adaptation"][0]["metric"], "values": values}
    if {"tinymetafed", "fedavg", "from-scratch"} <= set(values):
        out["tinymetafed_minus_fedavg_points"] = 100 * (values["tinymetafed"] - values["fedavg"])
        out["tinymetafed_minus_from_scratch_points"] = 100 * (values["tinymetafed"] - values["from-scratch"])
    if "tinymetafed" in values:  # paired: every row is scored on the same devices in the same order
        per_device = {r["method"]: 100 * np.array(r["per_device"]) for r in report["adaptation"] if r["shots"] == shots}
        differences = {m: per_device["tinymetafed"] - d for m, d in per_device.items() if m != "tinymetafed"}
        out["tinymetafed_minus_points_paired"] = {
            m: {"points": float(d.mean()), "stderr": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0}
            for m, d in differences.items()
        }
    training = report["training"]
    out["bytes_up_per_device_round"] = {m: t["per_device_round"]["bytes_up"] for m, t in training.items()}
    out["device_energy_mj_per_round"] = {m: 1000 * t["per_device_round"]["device_energy_j"] for m, t in training.items()}
    if "drift" in report:
        out["drift_after"] = report["drift"]["after_drift"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every federated method")
    parser.add_argument("--eval-devices", type=int, default=None, help="unseen devices per task")
    parser.add_argument("--out", default="runs/bench", help="output folder")
    parser.add_argument(
        "--reuse-training", action="store_true",
        help="reuse finished training runs of identical settings in OUT (re-score only; costs as measured then)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out) / "tasks.json"
    # tasks run separately (--tasks) add to the summary instead of replacing the others'
    summary: dict[str, object] = json.loads(out.read_text()) if out.exists() else {"tasks": {}}
    run = {
        "command": " ".join(["python", "bench/tasks.py", *(argv if argv is not None else sys.argv[1:])]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    for task in (t.strip() for t in args.tasks.split(",") if t.strip()):
        overrides = {"rounds": args.rounds, "n_eval_devices": args.eval_devices, "reuse_training": args.reuse_training or None}
        config = TaskBenchConfig.for_task(task, out_dir=args.out, **{k: v for k, v in overrides.items() if v is not None})
        started = time.perf_counter()
        report = run_task_bench(config, drift=DriftConfig.for_task(task), progress=lambda m, r, n: print(f"\r{task} {m}: {r}/{n}", end="", flush=True))
        print()
        summary["tasks"][task] = {**headline(report), "wall_s": time.perf_counter() - started, "run": run}  # type: ignore[index]
        print(json.dumps(summary["tasks"][task], indent=1))  # type: ignore[index]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
