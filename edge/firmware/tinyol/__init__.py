"""TinyOL on the board: build and run the measurement image of a compiled int8 backbone + the float TinyOL head.

Why: the device learner of the TinyML tasks is the frozen int8 backbone
(``edge.compiler`` output) feeding the TinyOL head (``edge/c/tinyol_head.c``);
``tinyol_learner.c`` is the glue. The tests need its outputs as raw bytes
(to compare them with TFLite's and numpy's) and the benchmark needs its
instruction counts under ``-icount shift=0``; both come from one image,
``measure_main.c`` built with the backbone's C and a generated
``vectors.h`` (the samples, the initial head, the backbone's quantisation):

    case = TinyOLCase(model=tflite_bytes, head_w=w, head_b=b, task="classification",
                      xs=scaled_samples, labels=labels, learning_rate=0.05)
    image = build_image(case, Path("/tmp/tinyol"), timing_steps=50, infer_repeats=3)
    run = run_image(image)          # QEMU mps2-an386; run.features, run.params_sgd, run.instructions

Samples are the task's raw inputs with its InputScaler's ``mean``, ``scale``
and ``log_columns`` in the case (the board scales them, as a device does), or
already-scaled inputs without (as :class:`edge.tflite_learner.FrozenBackbone`
takes them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.compiler import CompiledModel, compile_model
from edge.firmware.build import ImageSize, build_elf, image_size
from edge.firmware.device import c_floats, c_header
from edge.firmware.qemu import run_elf

TINYOL_DIR = Path(__file__).resolve().parent
LEARNER_C = TINYOL_DIR / "tinyol_learner.c"
MEASURE_MAIN_C = TINYOL_DIR / "measure_main.c"
HEAD_C = TINYOL_DIR.parents[1] / "c" / "tinyol_head.c"
BACKBONE_PREFIX = "backbone"
TASK_KINDS = {"classification": 0, "regression": 1}  # tinyol_task_t


@dataclass(frozen=True, eq=False)  # holds arrays
class TinyOLCase:
    """One backbone + head and the samples the image runs: what the test compares and the bench times."""

    model: bytes  # a .tflite with int8 input and int8 output (the task's backbone)
    head_w: np.ndarray  # (n_features, n_outputs)
    head_b: np.ndarray  # (n_outputs,)
    task: str  # "classification" or "regression"
    xs: np.ndarray  # (n, n_inputs) float32, already scaled
    labels: np.ndarray | None = None  # (n,) class indices, classification
    targets: np.ndarray | None = None  # (n, n_outputs) float32, regression
    learning_rate: float = 0.05
    min_rate: float = 0.0
    # the task's InputScaler (server/models/input_scaler.py), applied on the board: xs are then raw samples
    scaler_mean: np.ndarray | None = None  # (columns,): column c = element i % columns of a sample
    scaler_scale: np.ndarray | None = None
    log_columns: tuple[int, ...] = ()


@dataclass(frozen=True)
class TinyOLImage:
    elf: Path
    compiled: CompiledModel
    case: TinyOLCase
    size: ImageSize
    sample_bytes: int  # flash taken by the embedded samples (a board reads a sensor instead)


@dataclass(frozen=True, eq=False)
class TinyOLRun:
    """What the image printed, as arrays; ``instructions`` per call (timing builds), by the names in measure_main.c."""

    infer_status: list[int]  # per sample: 0, or the tinyol_status_t that refused it (its rows below stay zero)
    q_inputs: np.ndarray  # (n, n_inputs) int8
    features_q: np.ndarray  # (n, n_features) int8
    logits: np.ndarray  # (n, n_outputs) float32
    sgd_status: list[int]
    sgd_losses: np.ndarray
    params_sgd: np.ndarray  # (n_features + 1, n_outputs) float32, after one step per sample
    imprint_status: list[int] = field(default_factory=list)
    imprint_losses: np.ndarray | None = None
    params_imprint: np.ndarray | None = None
    counts: list[int] = field(default_factory=list)
    instructions: dict[str, float] = field(default_factory=dict)


def _check_case(case: TinyOLCase, compiled: CompiledModel) -> tuple[int, int, int]:
    graph = compiled.graph
    x, y = graph.tensors[graph.input], graph.tensors[graph.output]
    if x.type_name != "int8" or y.type_name != "int8":
        raise ValueError(f"the TinyOL image needs an int8-in, int8-out backbone; this one is {x.type_name} -> {y.type_name}")
    n_features, n_outputs = case.head_w.shape if case.head_w.ndim == 2 else (-1, -1)
    if n_features != y.elements or case.head_b.shape != (n_outputs,):
        raise ValueError(f"head of shape {case.head_w.shape} + {case.head_b.shape} does not fit {y.elements} backbone features")
    if case.task not in TASK_KINDS:
        raise ValueError(f"task must be one of {sorted(TASK_KINDS)}, got {case.task!r}")
    if case.xs.ndim != 2 or case.xs.shape[1] != x.elements or len(case.xs) == 0:
        raise ValueError(f"samples must be (n > 0, {x.elements}), got {case.xs.shape}")
    if case.scaler_mean is not None:
        columns = np.asarray(case.scaler_mean).size
        if np.asarray(case.scaler_scale).shape != (columns,) or x.elements % columns or any(not 0 <= c < min(columns, 32) for c in case.log_columns):
            raise ValueError(f"a scaler of {columns} columns (log columns {case.log_columns}) does not fit {x.elements} inputs")
    return x.elements, n_features, n_outputs


def build_image(case: TinyOLCase, out_dir: Path | str, *, board: str = "mps2-an386", timing_steps: int = 0,
                infer_repeats: int = 1) -> TinyOLImage:
    """Compile the backbone, write ``vectors.h`` and build ``measure_main.c`` for ``board`` into ``out_dir``.

    ``timing_steps`` > 0 adds the timing phase: ``infer_repeats`` inferences and backbone passes,
    ``timing_steps`` head forwards, SGD steps and imprints. ValueError for a model or case the image cannot run.
    """
    out = Path(out_dir)
    compiled = compile_model(case.model, prefix=BACKBONE_PREFIX)
    n_inputs, n_features, n_outputs = _check_case(case, compiled)
    compiled.sources.write(out / "model")
    graph = compiled.graph
    x, y = graph.tensors[graph.input], graph.tensors[graph.output]
    n = len(case.xs)
    labels = np.zeros(n, np.int64) if case.labels is None else np.asarray(case.labels, np.int64).reshape(n)
    targets = np.zeros((n, n_outputs), np.float32) if case.targets is None else np.asarray(case.targets, np.float32)
    init = np.concatenate([np.asarray(case.head_w, np.float32), np.asarray(case.head_b, np.float32).reshape(1, -1)])
    defines = {
        "N_INPUTS": n_inputs, "N_FEATURES": n_features, "N_OUTPUTS": n_outputs, "N_SAMPLES": n,
        "TASK_KIND": TASK_KINDS[case.task], "LEARNING_RATE": f"{np.float32(case.learning_rate).item().hex()}f",
        "MIN_RATE": f"{np.float32(case.min_rate).item().hex()}f",
        "IN_SCALE": f"{np.float32(x.scale).item().hex()}f", "IN_ZERO_POINT": x.zero_point,
        "OUT_SCALE": f"{np.float32(y.scale).item().hex()}f", "OUT_ZERO_POINT": y.zero_point,
        "TIMING_STEPS": int(timing_steps), "INFER_REPEATS": int(infer_repeats),
        "SCALER_COLUMNS": 0 if case.scaler_mean is None else np.asarray(case.scaler_mean).size,
        "SCALER_LOG_MASK": f"0x{sum(1 << c for c in case.log_columns):08x}u",
    }  # fmt: skip
    arrays = [c_floats("XS", np.asarray(case.xs, np.float32)), c_floats("TARGETS", targets), c_floats("HEAD_INIT", init),
              f"static const int LABELS[{n}] = {{{', '.join(str(int(v)) for v in labels)}}};"]  # fmt: skip
    if case.scaler_mean is None:
        defines.update(SCALER_MEAN="0", SCALER_SCALE="0")
    else:
        arrays += [c_floats("SCALER_MEAN_VALUES", np.asarray(case.scaler_mean, np.float32).ravel()),
                   c_floats("SCALER_SCALE_VALUES", np.asarray(case.scaler_scale, np.float32).ravel())]
        defines.update(SCALER_MEAN="SCALER_MEAN_VALUES", SCALER_SCALE="SCALER_SCALE_VALUES")
    c_header(out / "vectors.h", defines, arrays)
    sources = [MEASURE_MAIN_C, LEARNER_C, HEAD_C, *sorted((out / "model").glob("*.c"))]
    elf = build_elf(board, sources, include_dirs=[out, out / "model", TINYOL_DIR, HEAD_C.parent], out_dir=out,
                    name="tinyol_measure", defines={"TINYOL_NO_TIMING": None})  # fmt: skip
    return TinyOLImage(elf, compiled, case, image_size(elf), n * (n_inputs + n_outputs + 1) * 4)


def _hex_rows(text: str, tag: str, dtype: type, n: int, width: int) -> np.ndarray:
    """Rows ``<tag> <i> <hex>`` into an (n, width) array; rows of refused samples stay zero."""
    rows = np.zeros((n, width), dtype)
    for m in re.finditer(rf"^{tag} (\d+) ([0-9a-f]+)\s*$", text, re.M):
        rows[int(m.group(1))] = np.frombuffer(bytes.fromhex(m.group(2)), dtype)
    return rows


def _steps(text: str, tag: str) -> tuple[list[int], np.ndarray]:
    found = re.findall(rf"^{tag} \d+ (-?\d+)\s+([0-9a-f]{{8}})\s*$", text, re.M)
    return [int(s) for s, _ in found], np.array([np.frombuffer(bytes.fromhex(h), np.float32)[0] for _, h in found], np.float32)


def _params(text: str, tag: str, shape: tuple[int, int]) -> np.ndarray | None:
    m = re.search(rf"^params {tag} ([0-9a-f]+)\s*$", text, re.M)
    return None if m is None else np.frombuffer(bytes.fromhex(m.group(1)), np.float32).reshape(shape).copy()


def run_image(image: TinyOLImage, timeout: float = 120.0) -> TinyOLRun:
    """Run the image under QEMU (``-icount shift=0``: the counts are instructions); RuntimeError unless it exits 0."""
    result = run_elf(image.elf, timeout=timeout, icount=True)
    text = result.stdout
    if result.exit_code != 0 or "done" not in text:
        raise RuntimeError(f"{image.elf.name} exited {result.exit_code} under QEMU:\n{text[-2000:]}\n{result.stderr[-500:]}")
    graph = image.compiled.graph
    n_inputs, n_features = graph.tensors[graph.input].elements, graph.tensors[graph.output].elements
    n_outputs, n = image.case.head_b.shape[0], len(image.case.xs)
    infer_status = [int(s) for s in re.findall(r"^infer \d+ (-?\d+)\s*$", text, re.M)]
    sgd_status, sgd_losses = _steps(text, "sgd")
    imprint_status, imprint_losses = _steps(text, "imprint")
    counts = re.search(r"^counts((?: \d+)*)\s*$", text, re.M)
    per_tick = re.search(r"^per_tick (\d+)", text, re.M)
    instructions = {}
    if per_tick is not None:
        for name, ticks, repeats in re.findall(r"^ticks (\w+) (\d+) (\d+)\s*$", text, re.M):
            instructions[name] = int(ticks) * int(per_tick.group(1)) / int(repeats)
    return TinyOLRun(
        infer_status=infer_status, q_inputs=_hex_rows(text, "q", np.int8, n, n_inputs),
        features_q=_hex_rows(text, "feat", np.int8, n, n_features), logits=_hex_rows(text, "logits", np.float32, n, n_outputs), sgd_status=sgd_status, sgd_losses=sgd_losses,
        params_sgd=_params(text, "sgd", (n_features + 1, n_outputs)), imprint_status=imprint_status,
        imprint_losses=imprint_losses if imprint_status else None,
        params_imprint=_params(text, "imprint", (n_features + 1, n_outputs)),
        counts=[int(c) for c in counts.group(1).split()] if counts else [], instructions=instructions,
    )  # fmt: skip


def dequantize(q: np.ndarray, compiled: CompiledModel) -> np.ndarray:
    """The backbone's int8 features as the head reads them: ``(q - z) * s`` in float32 (tinyol_learner.c)."""
    y = compiled.graph.tensors[compiled.graph.output]
    return ((np.asarray(q).astype(np.float32) - np.float32(y.zero_point)) * np.float32(y.scale)).astype(np.float32)
