"""The model compiler against TFLite Micro: RAM, flash, instructions and exactness per model (issue 14).

For every model: the op census and MACs; ``MODEL_ARENA_BYTES`` (ours: the
arena beyond the caller's input/output buffers, and with them) beside TFLM's
used arena (``print_allocations()``: total = planner head + persistent
tail); the flash of the generated objects (``arm-none-eabi-size``, text +
data, -O2, Cortex-M4F: what is reachable from the model's three functions
after ``ld -r --gc-sections``, and all objects as compiled; libc's
memcpy/memmove/roundf not counted) beside the .tflite file size; instructions per
inference under QEMU mps2-an386 with ``-icount shift=0`` (timer ticks x 40,
mean of ``--repeats`` runs) and instructions per MAC of the CONV_2D and
FULLY_CONNECTED steps; and exactness: host output vs TFLM on seeded random
inputs (int8 bit-identical, float max |diff|) and QEMU vs host bytes.

Models: the project's sine backbones (int8 and float, 1-40-40) and its
keywords (DS-CNN), characters (CNN) and presence (MLP) int8 backbones, every
small model the compiler tests build (tests/edge/compiler_models.py), and
any .tflite given on the command line. Usage::

    python bench/compiler.py                          # -> runs/bench/compiler.json
    python bench/compiler.py person_detect.tflite --no-zoo --out runs/bench/x.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests" / "edge"):  # run as a script; the model zoo lives beside the tests
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from edge.compiler import UnsupportedModelError, compile_model  # noqa: E402
from edge.compiler.board_run import flash_bytes, run_qemu  # noqa: E402
from edge.compiler.harness import run_host  # noqa: E402
from edge.compiler.tflm_probe import tflm_arena, tflm_invoke  # noqa: E402
from ontology.tflite_facts import read_facts  # noqa: E402  (the registry's description of the same file)


def _random_inputs(compiled, n: int, seed: int) -> np.ndarray:
    x = compiled.graph.tensors[compiled.graph.input]
    rng = np.random.default_rng(seed)
    if x.type_name in ("int8", "uint8", "int16", "int32"):
        info = np.iinfo(x.dtype)
        return rng.integers(info.min, int(info.max) + 1, size=(n, *x.shape), dtype=x.dtype)
    return rng.normal(0.0, 1.0, size=(n, *x.shape)).astype(np.float32)


def measure(name: str, path: Path, work: Path, samples: int, repeats: int) -> dict[str, Any]:
    """Every figure for one model; an unsupported model gets its refusal instead."""
    data = path.read_bytes()
    row: dict[str, Any] = {"name": name, "file": str(path), "model_file_bytes": len(data)}
    try:
        compiled = compile_model(data, prefix="model")
    except UnsupportedModelError as exc:
        return row | {"refused": str(exc)}
    inputs = _random_inputs(compiled, samples, seed=1)
    tflm = tflm_arena(path)
    facts = read_facts(data)
    ours_host = run_host(compiled, inputs, work / "host")
    ref = tflm_invoke(path, inputs, work / "tflm")
    board = run_qemu(compiled, inputs[:1], work / "board", timing=True, repeats=repeats)
    qemu_outputs = run_qemu(compiled, inputs[: min(samples, 8)], work / "board_exact").outputs
    per_mac: dict[str, float] = {}
    for kind in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
        steps = [i for i, s in enumerate(compiled.steps) if s.op.name == kind and s.macs]
        if steps and board.op_instructions:
            per_mac[kind] = round(sum(board.op_instructions[i] for i in steps) / sum(compiled.steps[i].macs for i in steps), 2)
    int8_out = ref.dtype == np.int8
    io = compiled.input_bytes + compiled.output_bytes
    return row | {
        "dtype": compiled.graph.tensors[compiled.graph.input].type_name,
        "ops": compiled.op_counts,
        "macs": compiled.macs,
        "arena_bytes": compiled.arena_bytes,
        "arena_plus_io_bytes": compiled.arena_bytes + io,
        "tflm_arena_total": tflm.total,
        "tflm_arena_head": tflm.head,
        "tflm_arena_tail": tflm.tail,
        "arena_vs_tflm": round((compiled.arena_bytes + io) / tflm.total, 4),
        "describer_arena_estimate": facts.tflm_arena_bytes,  # tf:tensorArenaBytes, what matchmaking compares
        "describer_estimate_vs_tflm": round(facts.tflm_arena_bytes / tflm.total, 4),
        "flash_bytes": flash_bytes(compiled, work / "flash"),  # reachable from the model's three functions
        "flash_bytes_all_objects": flash_bytes(compiled, work / "flash_all", reachable_only=False),
        "instructions_per_inference": board.instructions_per_inference,
        "instructions_per_mac": per_mac,
        "exact": {
            "samples": samples,
            "host_vs_tflm_bit_identical": bool(ours_host.tobytes() == ref.tobytes()),
            "host_vs_tflm_max_abs_diff": float(np.max(np.abs(ours_host.astype(np.float64) - ref.astype(np.float64)))),
            "within_tolerance": bool(ours_host.tobytes() == ref.tobytes()) if int8_out
            else bool(np.max(np.abs(ours_host - ref)) <= 1e-5),
            "qemu_vs_host_same_bytes": bool(qemu_outputs.tobytes() == ours_host[: len(qemu_outputs)].tobytes()),
        },
    }


def _zoo(folder: Path) -> list[tuple[str, Path]]:
    from compiler_models import ALL_MODELS, build_model_bytes
    from tflite_models import export_backbones

    backbones = export_backbones(folder)
    models = [("sine_backbone_int8", backbones.int8_path), ("sine_backbone_float", backbones.float_path)]
    for name in ALL_MODELS:
        path = folder / f"{name}.tflite"
        path.write_bytes(build_model_bytes(name))
        models.append((name, path))
    return models


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | ops | MACs | arena ours (+io) | TFLM arena | flash ours | .tflite | instr/inference | exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "refused" in r or "failed" in r:
            lines.append(f"| {r['name']} | {'refused' if 'refused' in r else 'failed'}: {r.get('refused') or r.get('failed')} |")
            continue
        ops = sum(r["ops"].values())
        exact = "bit-identical" if r["exact"]["host_vs_tflm_bit_identical"] else f"max diff {r['exact']['host_vs_tflm_max_abs_diff']:.1e}"
        lines.append(f"| {r['name']} | {ops} | {r['macs']} | {r['arena_bytes']} ({r['arena_plus_io_bytes']}) | {r['tflm_arena_total']} | "
                     f"{r['flash_bytes']} | {r['model_file_bytes']} | {r['instructions_per_inference']:.0f} | {exact} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="extra .tflite files to measure")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "compiler.json")
    parser.add_argument("--no-zoo", action="store_true", help="measure only the models given")
    parser.add_argument("--samples", type=int, default=32, help="seeded random inputs per model for exactness")
    parser.add_argument("--repeats", type=int, default=10, help="inferences timed per model under QEMU")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_compiler_") as tmp:
        work = Path(tmp)
        models = [] if args.no_zoo else _zoo(work / "zoo")
        models += [(p.stem, p) for p in args.models]
        for i, (name, path) in enumerate(models):
            try:
                rows.append(measure(name, path, work / f"m{i}", args.samples, args.repeats))
            except Exception as exc:  # noqa: BLE001 - one model's failure is a finding, not the end of the run
                rows.append({"name": name, "file": str(path), "failed": f"{type(exc).__name__}: {exc}"[:2000]})
            keys = ("arena_bytes", "tflm_arena_total", "flash_bytes", "instructions_per_inference", "exact", "refused", "failed")
            print(f"{name}: {json.dumps({k: rows[-1][k] for k in keys if k in rows[-1]})}", flush=True)
    measured = [r for r in rows if "refused" not in r and "failed" not in r]
    ratios = [r["arena_plus_io_bytes"] / r["tflm_arena_total"] for r in measured]
    arena_only = [r["arena_bytes"] / r["tflm_arena_total"] for r in measured]
    flash = [r["flash_bytes"] / r["model_file_bytes"] for r in measured]
    summary = {
        "median_arena_vs_tflm": round(statistics.median(arena_only), 4) if arena_only else None,
        "max_arena_vs_tflm": round(max(arena_only), 4) if arena_only else None,
        "median_flash_vs_model_file": round(statistics.median(flash), 4) if flash else None,
        "models": len(rows),
        "refused": sum("refused" in r for r in rows),
        "failed": sum("failed" in r for r in rows),
        "all_exact": all(r["exact"]["within_tolerance"] and r["exact"]["qemu_vs_host_same_bytes"] for r in measured),
        "median_arena_plus_io_vs_tflm": round(statistics.median(ratios), 4) if ratios else None,
        "max_arena_plus_io_vs_tflm": round(max(ratios), 4) if ratios else None,
        "arena_never_more_than_tflm": all(x <= 1 for x in arena_only),
        "arena_plus_io_never_more_than_tflm": all(x <= 1 for x in ratios),
        "arena_plus_io_more_than_tflm": [r["name"] for r in measured if r["arena_plus_io_bytes"] > r["tflm_arena_total"]],
        "describer_estimate_vs_tflm_range": [min(r["describer_estimate_vs_tflm"] for r in measured),
                                             max(r["describer_estimate_vs_tflm"] for r in measured)] if measured else None,
    }
    report = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "command": " ".join(["python", "bench/compiler.py", *(argv if argv is not None else sys.argv[1:])]),
        "elapsed_s": round(time.monotonic() - started, 1),
        "summary": summary,
        "models": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(rows))
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
