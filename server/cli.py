"""The ``tinyfleet`` command line."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="TinyFleet: on-device online learning and federated meta-learning for TinyML fleets.",
                  no_args_is_help=True)
console = Console()


def _quiet_frameworks() -> None:
    """Flower logs every round and TensorFlow every worker start; the demo shows a progress bar instead."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    from flwr.supercore.logger import FLOWER_LOGGER  # sets its own level on import, so override after

    FLOWER_LOGGER.setLevel(logging.WARNING)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where report.json, adaptation.png and checkpoints go."),
    train_devices: int = typer.Option(None, help="Simulated devices in the training fleet."),
    unseen_devices: int = typer.Option(None, help="Unseen devices the initialisations are evaluated on."),
    reptile_rounds: int = typer.Option(None, help="TinyReptile rounds."),
    fedavg_rounds: int = typer.Option(None, help="FedAvg rounds."),
    resume: bool = typer.Option(False, help="Continue from the checkpoints in OUT instead of starting over."),
) -> None:
    """Meta-train TinyReptile and FedAvg over simulated devices, then adapt on unseen ones."""
    _quiet_frameworks()
    from dataclasses import replace

    from server.demo import DemoConfig, run_demo

    config = DemoConfig(out_dir=str(out), resume=resume)
    overrides = {
        "n_train_devices": train_devices,
        "n_unseen_devices": unseen_devices,
        "reptile_rounds": reptile_rounds,
        "fedavg_rounds": fedavg_rounds,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
    ) as progress:
        tasks = {
            "tinyreptile": progress.add_task("TinyReptile", total=config.reptile_rounds, status=""),
            "fedavg": progress.add_task("FedAvg", total=config.fedavg_rounds, status=""),
        }

        def on_round(method: str, server_round: int, total: int, metrics: dict[str, float]) -> None:
            loss = metrics.get("loss-after")
            status = f"probe loss after adaptation {loss:.3f}" if loss is not None else ""
            progress.update(tasks[method], completed=server_round, status=status)

        report = run_demo(config, on_round)

    table = Table(title=f"MSE on {config.n_unseen_devices} unseen devices after K online shots")
    table.add_column("init")
    for k in config.shots:
        table.add_column(f"K={k}", justify="right")
    rows = report["adaptation"] + report["adaptation_on_device_learners"]
    for method in dict.fromkeys(r["method"] for r in rows):
        values = {r["shots"]: r["value"] for r in rows if r["method"] == method}
        table.add_row(method, *(f"{values[k]:.3f}" for k in config.shots))
    console.print(table)
    console.print(f"report: {out / 'report.json'}   plot: {report['plot']}")
    console.print("timings: " + json.dumps({k: round(v, 1) for k, v in report["timings"].items()}))


@app.command()
def profiles() -> None:
    """List the simulated device profiles and their limits."""
    from firmware_sim.profiles import PROFILES

    table = Table(title="Device profiles")
    for column in ("name", "board", "MCU", "clock MHz", "RAM KB (usable)", "flash KB (usable)", "FPU", "radio"):
        table.add_column(column)
    for p in PROFILES.values():
        table.add_row(
            p.name, p.board, p.mcu, f"{p.clock_hz / 1e6:g}",
            f"{p.ram_bytes // 1024} ({p.usable_ram_bytes // 1024})",
            f"{p.flash_bytes // 1024} ({p.usable_flash_bytes // 1024})",
            "yes" if p.has_fpu else "no", p.radio,
        )
    console.print(table)


def _mount_registry() -> None:
    from ontology.cli import app as registry_app

    app.add_typer(registry_app, name="registry", help="Semantic registry: describe, validate, register, query, serve.")


_mount_registry()

if __name__ == "__main__":
    app()
