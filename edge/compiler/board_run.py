"""Exported models on the board toolchain: arm-none-eabi-gcc build, QEMU mps2-an386 run, flash and instruction figures.

Why beside the host harness: the issue's exactness test is "same bytes on
the host and under QEMU", and its figures (flash of the generated objects,
instructions per inference under ``-icount shift=0``) come from the same
build, so one module owns both.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.compiler.compile import CompiledModel
from edge.compiler.harness import Case, parse_op_ticks, parse_outputs, parse_ticks, write_harness, write_models
from edge.firmware.build import CPU_FLAGS, GCC, build_elf
from edge.firmware.qemu import run_elf

BOARD = "mps2-an386"
INSTRUCTIONS_PER_TICK = 40  # board_config.h: 25 MHz timer, 1 ns per instruction under -icount shift=0


@dataclass(frozen=True)
class BoardRun:
    """One model's outputs under QEMU, and (with timing) its instructions per inference."""

    outputs: np.ndarray
    instructions_per_inference: float | None
    op_instructions: dict[int, float] | None = None  # step index -> instructions per inference (timing runs)


def run_qemu_many(cases: Sequence[Case], work_dir: Path | str, *, timing: bool = False, repeats: int = 10,
                  timeout: float = 120.0) -> list[BoardRun]:
    """Build all models + one harness for mps2-an386 (-O2), run it under QEMU once; results per case."""
    work = Path(work_dir)
    sources = write_models(cases, work / "model")
    app = write_harness(cases, work / "app_board.c", timing=timing, repeats=repeats)
    elf = build_elf(BOARD, [*sources, app], include_dirs=[work / "model"], out_dir=work, name="model_harness",
                    defines={"TFC_PROFILE": None} if timing else None)
    result = run_elf(elf, timeout=timeout, icount=timing)
    if result.exit_code != 0:
        raise RuntimeError(f"model harness exited {result.exit_code} under QEMU:\n{result.stdout}\n{result.stderr}")
    runs = []
    for compiled, _ in cases:
        instructions, per_op = None, None
        if timing:
            ticks = parse_ticks(result.stdout, compiled)
            if ticks is None:
                raise RuntimeError(f"no tick count for {compiled.prefix} in the harness output:\n{result.stdout}")
            instructions = ticks[0] * INSTRUCTIONS_PER_TICK / ticks[1]
            per_op = {k: v * INSTRUCTIONS_PER_TICK / ticks[1] for k, v in parse_op_ticks(result.stdout, compiled).items()}
        runs.append(BoardRun(parse_outputs(result.stdout, compiled), instructions, per_op))
    return runs


def run_qemu(compiled: CompiledModel, inputs: np.ndarray, work_dir: Path | str, *, timing: bool = False,
             repeats: int = 10) -> BoardRun:
    """One model under QEMU."""
    return run_qemu_many([(compiled, inputs)], work_dir, timing=timing, repeats=repeats)[0]


def flash_bytes(compiled: CompiledModel, work_dir: Path | str, optimize: str = "-O2", reachable_only: bool = True) -> int:
    """text + data of the generated code for Cortex-M4F, by ``arm-none-eabi-size``.

    ``reachable_only``: the objects are first linked into one relocatable
    object keeping only the sections reachable from ``{prefix}_invoke`` and
    the two size functions (``ld -r --gc-sections``), so a kernel file's
    unused variants (the float32 twin of an int8 kernel) are not counted.
    Otherwise every object as compiled.
    """
    work = Path(work_dir)
    model_dir = work / "model"
    compiled.sources.write(model_dir)
    objects = []
    for name in sorted(n for n in compiled.sources.files if n.endswith(".c")):
        source = model_dir / name
        obj = work / (source.stem + ".o")
        subprocess.run([GCC, *CPU_FLAGS, "-std=c99", optimize, "-ffunction-sections", "-fdata-sections", f"-I{model_dir}",
                        "-c", str(source), "-o", str(obj)], check=True, capture_output=True, text=True)
        objects.append(str(obj))
    if reachable_only:
        p = compiled.prefix
        linked = work / f"{p}_reachable.o"
        subprocess.run(["arm-none-eabi-ld", "-r", "--gc-sections", "-e", f"{p}_invoke", "-u", f"{p}_input_bytes",
                        "-u", f"{p}_output_bytes", "-o", str(linked), *objects], check=True, capture_output=True, text=True)
        objects = [str(linked)]
    done = subprocess.run(["arm-none-eabi-size", "-B", *objects], check=True, capture_output=True, text=True)
    total = 0
    for line in done.stdout.splitlines()[1:]:
        fields = line.split()
        total += int(fields[0]) + int(fields[1])
    return total
