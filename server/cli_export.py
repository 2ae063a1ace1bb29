"""`tinyfleet export c MODEL.tflite --out DIR [--prefix model]`: a .tflite as dependency-free C99 for a microcontroller.

Why a sub-app of its own: exporting is a build step beside the fleet
commands, and the compiler lives in ``edge.compiler`` (no TensorFlow); this
module only parses arguments and reports. Mounted by ``server/cli.py`` as
``app.add_typer(export_app, name="export")``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from edge.compiler import UnsupportedModelError, export_c

export_app = typer.Typer(help="Export models for microcontrollers.", no_args_is_help=True)


@export_app.callback()
def _export() -> None:
    """Export models for microcontrollers."""


@export_app.command("c")
def export_c_command(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="The .tflite model to compile."),
    out: Path = typer.Option(..., "--out", help="Directory for PREFIX.h, PREFIX.c and the kernel sources."),
    prefix: str = typer.Option("model", "--prefix", help="C identifier prefix: PREFIX_invoke, PREFIX_ARENA_BYTES."),
    plan: bool = typer.Option(False, "--plan", help="Also print the arena layout (ASCII)."),
) -> None:
    """Compile MODEL to C99 matching TFLite Micro bit for bit: one static arena, const weights, no malloc."""
    try:
        compiled = export_c(model, out, prefix)
    except UnsupportedModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # a prefix that is not a C identifier
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    files = sorted(compiled.sources.files)
    ops = ", ".join(f"{name} x{n}" for name, n in sorted(compiled.op_counts.items()))
    typer.echo(f"wrote {len(files)} files to {out}: {', '.join(files)}")
    typer.echo(f"ops: {ops}; MACs {compiled.macs}")
    typer.echo(f"{prefix.upper()}_ARENA_BYTES {compiled.arena_bytes}; input {compiled.input_bytes} B, output {compiled.output_bytes} B")
    if plan:
        typer.echo(compiled.plan_text())
