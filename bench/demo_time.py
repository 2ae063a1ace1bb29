"""How long `tinyfleet demo` takes, and whether a faster engine changed its figures: this tree against a reference.

Why a bench and not a test: wall time depends on the machine and on what else
runs on it. So each run here measures, besides the wall time, the CPU seconds
of every process the demo starts (its own, and the worker processes of the
in-process grid, which a plain ``/usr/bin/time`` misses: they are children of a
forkserver that outlives the demo), and the load average before and after. The
CPU figures hardly depend on the load; from them the bench estimates the wall
time on an idle machine as the demo's own CPU plus the workers' CPU shared by
the workers (they run while the demo waits for them; the demo's lease wait of
about a second is left out). Everything is measured in one run, so the ratios
compare like with like.

Each tree's report is compared with the first one's: every figure (MSEs, step
size quantiles, device models, selected devices, versions registered and the
newest lineage rows; device and metric lists as sets, their order is the
store's) must be equal.

    python bench/demo_time.py --reference 2ccafa6          # this tree and 2ccafa6, full demo
    python bench/demo_time.py --workers 1,2 --reptile-rounds 100

writes ``runs/bench/demo_time.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
RUN = "import json, sys; from dataclasses import replace; from server.experiments.demo import DemoConfig, run_demo; " \
      "run_demo(replace(DemoConfig(), **json.loads(sys.argv[1])))"  # fmt: skip


def become_subreaper() -> None:
    """Orphaned descendants (the forkserver and its workers) are handed to this process, which reaps them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def cpu_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def run_demo_in(tree: Path, config: dict[str, Any], log: Path) -> dict[str, Any]:
    """One demo run with ``tree`` first on the path: wall time, CPU of the demo and of everything it started."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    with log.open("w") as out:
        demo = subprocess.Popen([sys.executable, "-c", RUN, json.dumps(config)], cwd=tree, stdout=out, stderr=subprocess.STDOUT)
        _, status, own = os.wait4(demo.pid, 0)
        wall = time.perf_counter() - started
        demo.returncode = os.waitstatus_to_exitcode(status)
        others = 0.0
        while True:  # the orphans: the forkserver, with its reaped workers in its own children's usage
            try:
                _, _, usage = os.wait4(-1, 0)
            except ChildProcessError:
                break
            others += cpu_s(usage)
    if demo.returncode != 0:
        raise RuntimeError(f"the demo in {tree} exited with {demo.returncode}; see {log}")
    workers = int(config.get("device_workers", 1))
    demo_cpu = cpu_s(own)
    report = json.loads((Path(config["out_dir"]) / "report.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "cpu_s": {"demo_process": round(demo_cpu, 2), "device_workers": round(others, 2), "total": round(demo_cpu + others, 2)},
        "idle_machine_estimate_s": round(demo_cpu + others / workers, 1),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "demo_timings_s": {k: round(v, 2) for k, v in report["timings"].items()},
        "figures": figures(report),
    }


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """What the demo found, without its timings, paths or engine settings; unordered lists as sorted lists."""
    registry = dict(report["registry"])
    registry.pop("store", None)
    for method, lineage in registry["lineage"].items():
        rows = []
        for row in lineage["lineage_newest_first"]:
            rows.append({k: (sorted(v.split()) if k in ("devices", "metrics") else v) for k, v in row.items()})
        registry["lineage"][method] = {**lineage, "lineage_newest_first": rows}
    models = {name: {k: v for k, v in model.items() if k != "file"} for name, model in report["device_models"].items()}
    step_sizes = report["step_sizes"] and report["step_sizes"]["multiplier_quantiles_5_50_95"]
    config = {k: v for k, v in report["config"].items() if k not in ("out_dir", "device_workers", "engine")}
    return {"adaptation": report["adaptation"], "adaptation_on_device_learners": report["adaptation_on_device_learners"],
            "device_models": models, "step_sizes": step_sizes, "registry": registry, "config": config}  # fmt: skip


def unpack(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", help="a git revision to time in the same run (it runs with its own defaults)")
    parser.add_argument("--workers", default="2", help="device_workers of this tree's runs, comma-separated (e.g. 1,2)")
    parser.add_argument("--reptile-rounds", type=int, help="fewer TinyReptile rounds (a shorter, not comparable, demo)")
    parser.add_argument("--fedavg-rounds", type=int, help="fewer FedAvg rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "demo_time.json")
    args = parser.parse_args()
    become_subreaper()
    scale = {k: v for k, v in (("reptile_rounds", args.reptile_rounds), ("fedavg_rounds", args.fedavg_rounds)) if v}
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="demo-time-") as scratch:
        base = Path(scratch)
        plan: list[tuple[str, Path, dict[str, Any]]] = []
        if args.reference:
            plan.append((f"reference {args.reference}", unpack(args.reference, base / "reference"), {}))
        plan += [(f"this tree, device_workers={n}", ROOT, {"device_workers": int(n)}) for n in args.workers.split(",")]
        for i, (name, tree, settings) in enumerate(plan):
            config = {**scale, **settings, "out_dir": str(base / f"out-{i}")}
            print(f"{name}: running the demo ...", flush=True)
            runs[name] = run_demo_in(tree, config, base / f"demo-{i}.log")
            print(f"{name}: {runs[name]['wall_s']} s wall, {runs[name]['cpu_s']['total']} s CPU", flush=True)
    first_name, first = next(iter(runs.items()))
    result = {
        "command": "python bench/demo_time.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "runs": {name: {k: v for k, v in run.items() if k != "figures"} for name, run in runs.items()},
        "figures_equal_to_first": {name: run["figures"] == first["figures"] for name, run in runs.items()},
        "ratios_over_first": {
            name: {"wall": round(run["wall_s"] / first["wall_s"], 3), "cpu_total": round(run["cpu_s"]["total"] / first["cpu_s"]["total"], 3),
                   "idle_machine_estimate": round(run["idle_machine_estimate_s"] / first["idle_machine_estimate_s"], 3)}
            for name, run in runs.items()
        },  # fmt: skip
        "first": first_name,
        "figures_of_first": first["figures"]["adaptation"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"figures_equal_to_first": result["figures_equal_to_first"], "ratios_over_first": result["ratios_over_first"]}, indent=2))


if __name__ == "__main__":
    main()
