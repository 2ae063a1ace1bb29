"""`tinyfleet export FORMAT (--run W | MODEL.tflite) --out DIR`: a run's meta-model, or a model file, as what a device installs.

    tinyfleet export npz --run runs/server --out out/npz          # θ, step sizes, manifest.json
    tinyfleet export tflite --run runs/server --out out/tflite    # the training graph with θ and step sizes
    tinyfleet export c --run runs/server --out out/c              # θ as const float arrays for mlp.h
    tinyfleet export c MODEL.tflite --out out/c                   # the model compiler's C99
    tinyfleet export arduino --run runs/server --out TinyFleet    # an Arduino library of the device
    tinyfleet export arduino --model MODEL.tflite --out TinyFleet

Why a sub-app of its own: exporting is a build step beside the fleet commands. This module only parses
arguments and reports; the work is in ``server.export_run`` (reading a run, npz, C arrays),
``server.export_tflite`` (the graph; the only format that imports TensorFlow, lazily), ``edge.compiler``
(.tflite → C) and ``edge.firmware.arduino_library``. Every refusal (no such run, a run with no checkpoint,
an unknown format, a model the compiler refuses, a model where a run is needed) is one line on stderr and
exit status 2, with nothing written. Mounted by ``server/cli.py`` as ``app.add_typer(export_app, name="export")``.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from edge.compiler import UnsupportedModelError, compile_model, export_c
from server.export_run import ExportError, RunModel, load_run, write_c, write_npz

FORMATS = ("tflite", "npz", "c", "arduino")


class _FormatGroup(TyperGroup):
    """Refuses an unknown FORMAT in one line (click's usage error is a multi-line box)."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            click.echo(f"error: unknown export format {args[0]!r}; formats: {', '.join(FORMATS)}", err=True)
            ctx.exit(2)
        return super().resolve_command(ctx, args)


export_app = typer.Typer(cls=_FormatGroup, help="Export a run's meta-model, or a model file, for devices.", no_args_is_help=True)

RUN_HELP = "The run's directory: the --workdir of `tinyfleet server` (or its checkpoints directory)."
OUT_HELP = "Directory to write into (created)."


@export_app.callback()
def _export() -> None:
    """Export a run's meta-model (--run W), or a model file, for devices: tflite, npz, c or arduino."""


def _fail(message: str) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)  # one line, whatever the exception held
    raise typer.Exit(2)


def _model_file(path: Path) -> Path:
    if not path.is_file():
        _fail(f"model file {path} does not exist" if not path.exists() else f"{path} is not a model file")
    return path


def _source(run: Path | None, model: Path | None, what: str) -> tuple[RunModel | None, Path | None]:
    """Exactly one of --run and a model file; the run read (or the model file checked)."""
    if (run is None) == (model is None):
        _fail(f"export {what}: give either --run W or a model file, not {'both' if run and model else 'neither'}")
    if model is not None:
        return None, _model_file(model)
    try:
        return load_run(run), None  # type: ignore[arg-type]
    except ExportError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


def _say_run(model: RunModel) -> None:
    steps = "with learned step sizes" if model.step_sizes is not None else "no step sizes learned"
    private = f", private {','.join(model.private_names)}" if model.private_names else ""
    typer.echo(f"run {model.source} at round {model.server_round}: {model.strategy}, task {model.task}, "
               f"MLP {'-'.join(map(str, model.layer_sizes))}, {steps}{private}")  # fmt: skip


def _say_written(paths: list[Path], out: Path) -> None:
    typer.echo(f"wrote {len(paths)} files to {out}: {', '.join(sorted(p.name for p in paths))}")


@export_app.command("npz")
def export_npz_command(
    model: Path = typer.Argument(None, help="(not for npz: a model file has no θ to export)", show_default=False),
    run: Path = typer.Option(None, "--run", help=RUN_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
) -> None:
    """θ as theta.npz, the learned step sizes as step_sizes.npz, and manifest.json (task, layers, round, strategy)."""
    if model is not None:
        _fail("export npz writes a run's θ and step sizes: give --run W, not a model file")
    loaded, _ = _source(run, None, "npz")
    _say_run(loaded)  # type: ignore[arg-type]
    _say_written(write_npz(loaded, out), out)  # type: ignore[arg-type]


@export_app.command("tflite")
def export_tflite_command(
    model: Path = typer.Argument(None, help="(not for tflite: a model file is already one)", show_default=False),
    run: Path = typer.Option(None, "--run", help=RUN_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
) -> None:
    """The TFLite training graph a device installs (TFLiteTrainer): θ as its weights, the step sizes inside it."""
    if model is not None:
        _fail("export tflite builds a run's training graph: give --run W (a .tflite is already what a device installs)")
    loaded, _ = _source(run, None, "tflite")
    _say_run(loaded)  # type: ignore[arg-type]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up and converter log lines are not ours
    from server.export_tflite import write_tflite  # TensorFlow: only for this format

    try:
        paths = write_tflite(loaded, out)  # type: ignore[arg-type]
    except ExportError as exc:
        _fail(str(exc))
    _say_written(paths, out)


@export_app.command("c")
def export_c_command(
    model: Path = typer.Argument(None, help="The .tflite model to compile (or give --run).", show_default=False),
    run: Path = typer.Option(None, "--run", help=RUN_HELP),
    out: Path = typer.Option(..., "--out", help="Directory for PREFIX.h, PREFIX.c (and the kernel sources of a model)."),
    prefix: str = typer.Option("model", "--prefix", help="C identifier prefix: PREFIX_invoke / PREFIX_theta, PREFIX_ARENA_BYTES."),
    plan: bool = typer.Option(False, "--plan", help="Also print a model's arena layout (ASCII)."),
) -> None:
    """A run's θ (and step sizes) as const float arrays for the firmware's MLP (edge/firmware/device/mlp.h), or
    MODEL compiled to C99 matching TFLite Micro bit for bit: one static arena, const weights, no malloc."""
    loaded, model_path = _source(run, model, "c")
    if loaded is not None:
        _say_run(loaded)
        try:
            _say_written(write_c(loaded, out, prefix), out)
        except ExportError as exc:
            _fail(str(exc))
        return
    try:
        compiled = export_c(model_path, out, prefix)  # type: ignore[arg-type]
    except (UnsupportedModelError, ValueError) as exc:  # ValueError: a prefix that is not a C identifier
        _fail(str(exc))
    files = sorted(compiled.sources.files)
    ops = ", ".join(f"{name} x{n}" for name, n in sorted(compiled.op_counts.items()))
    typer.echo(f"wrote {len(files)} files to {out}: {', '.join(files)}")
    typer.echo(f"ops: {ops}; MACs {compiled.macs}")
    typer.echo(f"{prefix.upper()}_ARENA_BYTES {compiled.arena_bytes}; input {compiled.input_bytes} B, output {compiled.output_bytes} B")
    if plan:
        typer.echo(compiled.plan_text())


@export_app.command("arduino")
def export_arduino_command(
    model_arg: Path = typer.Argument(None, metavar="[MODEL]", help="The .tflite model (same as --model).", show_default=False),
    run: Path = typer.Option(None, "--run", help=RUN_HELP),
    model: Path = typer.Option(None, "--model", help="A .tflite backbone to compile, with a TinyOL head on its features."),
    out: Path = typer.Option(..., "--out", help="The library's folder (new or an earlier export)."),
    device_id: str = typer.Option("sine-0", "--id", help="--run: the device the library plays (its id, sensor, profile)."),
    samples: int = typer.Option(2000, help="--run: samples in the device's sensor recording (each used once)."),
    classes: int = typer.Option(2, help="--model: classes of the TinyOL head the example trains."),
) -> None:
    """An Arduino library (library.properties, src/, examples/TinyFleetDevice): the device round with a run's θ, or
    a compiled model with a TinyOL head. Compiled here for the nRF52840 with arm-none-eabi-gcc; not run on a board."""
    if model_arg is not None and model is not None:
        _fail("export arduino: give the model once (MODEL or --model)")
    loaded, model_path = _source(run, model_arg or model, "arduino")
    try:
        library = _arduino_of_run(loaded, out, device_id, samples) if loaded else _arduino_of_model(model_path, out, classes)  # type: ignore[arg-type]
    except (ExportError, UnsupportedModelError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote the Arduino library {out} ({len(library.files)} files); example {library.sketch.relative_to(out)}")


def _version() -> str:
    try:
        return metadata.version("tinyfleet")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _arduino_of_run(model: RunModel, out: Path, device_id: str, samples: int):  # type: ignore[no-untyped-def]
    """The run's θ in the device firmware; its sensor is the simulated device's stream, as ``firmware build`` records it."""
    from edge.firmware.arduino_library import MODEL_PREFIX, check_library_task, write_mlp_library
    from firmware_sim.fleet import profile_for, sine_device
    from firmware_sim.linux_device import seed_of
    from server.export_run import c_sources

    _say_run(model)
    check_library_task(model.task)  # before a recording is drawn from that task's simulated device
    if samples < 1:
        raise ValueError("--samples must be at least 1")
    seed = seed_of(device_id)
    recording = sine_device(seed, stream_key=0).stream.take(samples)
    about = f"The {model.task} meta-model of run {model.source.parent.name} at round {model.server_round} ({model.strategy})"
    return write_mlp_library(out, c_sources(model, MODEL_PREFIX), device_id=device_id, theta=model.theta, sensor=recording,
                             profile=profile_for(seed), version=_version(), about=about)  # fmt: skip


def _arduino_of_model(path: Path, out: Path, classes: int):  # type: ignore[no-untyped-def]
    from edge.firmware.arduino_library import MODEL_PREFIX, write_model_library

    compiled = compile_model(path.read_bytes(), MODEL_PREFIX)
    typer.echo(f"compiled {path.name}: {MODEL_PREFIX.upper()}_ARENA_BYTES {compiled.arena_bytes}, MACs {compiled.macs}")
    return write_model_library(out, compiled, head_classes=classes, version=_version(), about=f"The model {path.name}")
