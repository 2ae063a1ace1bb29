"""``tinyfleet bench --task``: train every method on one task, score them, measure drift, write JSON and a plot.

The pieces live in :mod:`server.experiments.task_bench` (training and K-shot scoring),
:mod:`server.experiments.drift_curves` and :mod:`server.experiments.task_plots`; this module runs them
in order and assembles ``runs/bench/<task>.json``:

- ``adaptation``: rows ``{method, shots, metric, value, stderr, n_devices, per_device}``,
  the control rows (:data:`server.experiments.task_bench.CONTROLS`) among them;
- ``controls``: per control row, the method whose training it reuses and a
  note (it has no training costs of its own: they are that method's);
- ``training``: per trained method, rounds, wall time, per device-round bytes
  up/down, simulated device time and energy (Nano 33 BLE Sense profile), and
  totals over the run;
- ``model``: layer sizes and the RAM the on-device training needs, against
  the profile's usable RAM;
- ``drift``: the online and frozen accuracy curves;
- ``config``: every setting, so the run can be repeated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from edge.profiles import NANO_33_BLE_SENSE
from firmware_sim.task_families import task_family
from server.experiments.drift_curves import DriftConfig, drift_curves
from server.experiments.task_bench import (
    CONTROL_NOTES,
    CONTROLS,
    METHODS,
    TRAINED,
    ProgressFn,
    TaskBenchConfig,
    TrainingRun,
    evaluate,
    new_device_rules,
    select_adaptation_lr,
    train_federated,
    training_ram,
    with_controls,
)
from server.experiments.task_plots import plot_task_report


def run_task_bench(
    config: TaskBenchConfig,
    methods: Sequence[str] = METHODS,
    drift: DriftConfig | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, object]:
    """Train every method that trains, evaluate every method, run the drift experiment if asked; write the report."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if drift is not None and drift.method not in methods:
        raise ValueError(f"the drift experiment uses {drift.method!r}, which is not among the methods run")
    family = task_family(config.task)
    out = Path(config.out_dir)
    training: dict[str, TrainingRun] = {}
    from flwr.supercore.logger import FLOWER_LOGGER

    level = FLOWER_LOGGER.level
    FLOWER_LOGGER.setLevel(logging.WARNING)  # a round's INFO lines would drown the progress bars
    try:
        for method in methods:
            if method in TRAINED:
                training[method] = train_federated(config, family, method, out / f"{config.task}-work", progress)
    finally:
        FLOWER_LOGGER.setLevel(level)
    inits = with_controls(config, {m: (training[m].weights if m in training else None) for m in methods})
    started = time.perf_counter()
    selection: list[dict[str, object]] = []
    if config.select_lr:
        config, selection = select_adaptation_lr(config, family, inits)
    rows = evaluate(config, family, inits)
    evaluation_s = time.perf_counter() - started
    ram = training_ram(family)
    report: dict[str, object] = {
        "task": config.task,
        "model": {
            "layer_sizes": list(family.layer_sizes),
            "ram_bytes": ram,
            "profile": NANO_33_BLE_SENSE.name,
            "profile_usable_ram_bytes": NANO_33_BLE_SENSE.usable_ram_bytes,
            "fits": ram["total"] <= NANO_33_BLE_SENSE.usable_ram_bytes,
        },
        "adaptation": rows,
        "adaptation_lr": new_device_rules(config, family, list(inits)),
        "adaptation_lr_selection": selection,
        "training": {m: run.summary() for m, run in training.items()},
        "controls": {c: {"weights_from": CONTROLS[c], "note": CONTROL_NOTES[c]} for c in inits if c in CONTROLS},
        "evaluation_wall_s": evaluation_s,
        "config": asdict(config),
    }
    if drift is not None:
        if progress is not None:
            progress("drift", 0, 1)
        report["drift"] = drift_curves(config, family, inits.get(drift.method), drift)
        if progress is not None:
            progress("drift", 1, 1)
    out.mkdir(parents=True, exist_ok=True)
    report["plot"] = str(plot_task_report(report, out / f"{config.task}.png"))
    (out / f"{config.task}.json").write_text(json.dumps(report, indent=2))
    return report
