"""A run's meta-model as what a device installs: read it from a run directory, write it as ``.npz`` or C arrays.

Why a module of its own: ``tinyfleet export FORMAT --run W`` (``server/cli_export.py``) turns the last
checkpoint of a server run into device files, and every format starts from the same thing: θ, the
step sizes TinyReptile learned (``server.strategies.step_size_learning``, kept in the checkpoint's
strategy state), and what the run was (its task, layer sizes, round, strategy, TinyMetaFed's private
part), all read from the checkpoint's meta, which holds the run's ``FederationSettings`` as a dict.
:func:`load_run` is that one reader; the TFLite export (``server/export_tflite.py``) and the Arduino
library (``edge/firmware/arduino_library.py``) take its :class:`RunModel`.

A run directory is what ``tinyfleet server --workdir W`` writes (``server/core/run_dir.py``): the
checkpoints are in ``W/checkpoints``. A checkpoint directory itself (one holding ``latest.json``) is
taken as well, since a run config may name its own.

    >>> RunModel.c_layout_names(3)
    ['w0', 'b0', 'w1', 'b1', 'w2', 'b2']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.firmware.device import c_floats
from edge.mlp import mlp_weight_names
from edge.step_sizes import check_scales
from edge.validation import InvalidInputError
from server.core.checkpoint import LATEST, Checkpointer
from server.core.run_dir import CHECKPOINTS
from server.strategies.step_size_learning import step_sizes_from_state

DEFAULT_TASK = "sine"  # a checkpoint written before runs named their task trained the sine MLP
MANIFEST = "manifest.json"


class ExportError(ValueError):
    """The run or model cannot be exported; the message says why on one line."""


@dataclass(frozen=True)
class RunModel:
    """A run's meta-model at its last checkpoint: θ, learned step sizes (None if the run learned none), what it was."""

    theta: dict[str, np.ndarray]
    step_sizes: dict[str, np.ndarray] | None
    task: str
    layer_sizes: tuple[int, ...]
    server_round: int
    strategy: str
    private_names: tuple[str, ...]  # TinyMetaFed's device-private part (empty for other strategies)
    source: Path  # the checkpoint directory it was read from

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @staticmethod
    def c_layout_names(n_layers: int) -> list[str]:
        """The order edge/firmware/device/mlp.h keeps tensors in: w0, b0, w1, b1, ..."""
        return mlp_weight_names(n_layers)

    def flat(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """``arrays`` (θ or step sizes) as mlp.h's contiguous ``params``: each tensor row-major, in layout order."""
        return np.concatenate([np.asarray(arrays[n], np.float32).ravel() for n in self.c_layout_names(self.n_layers)])

    def manifest(self) -> dict[str, object]:
        """The small JSON a device tool reads beside the arrays."""
        return {
            "task": self.task, "layer_sizes": list(self.layer_sizes), "round": self.server_round,
            "strategy": self.strategy, "private_names": list(self.private_names),
            "weights": self.c_layout_names(self.n_layers), "step_sizes": self.step_sizes is not None,
            "source": str(self.source),
        }  # fmt: skip


def checkpoint_dir(run: Path) -> Path:
    """Where ``run``'s checkpoints are: ``run/checkpoints`` for a workdir, ``run`` itself if it holds ``latest.json``."""
    if not run.exists():
        raise ExportError(f"run directory {run} does not exist")
    if not run.is_dir():
        raise ExportError(f"{run} is not a run directory (give the --workdir of `tinyfleet server`)")
    if (run / LATEST).is_file():
        return run
    if (run / CHECKPOINTS / LATEST).is_file():
        return run / CHECKPOINTS
    raise ExportError(f"{run} holds no checkpoint (no {CHECKPOINTS}/{LATEST}): has a round of that run finished?")


def load_run(run: Path | str) -> RunModel:
    """The meta-model at ``run``'s last checkpoint; ExportError (one line) if there is none or it does not hang together."""
    directory = checkpoint_dir(Path(run))
    try:
        checkpoint = Checkpointer(directory).load_latest()
    except (OSError, ValueError, KeyError) as exc:  # a torn or foreign latest.json / npz
        raise ExportError(f"cannot read the checkpoint in {directory}: {exc}") from None
    if checkpoint is None or not checkpoint.weights:
        raise ExportError(f"{directory} holds no checkpoint weights")
    settings = checkpoint.meta.get("settings") or {}
    strategy = str(checkpoint.meta.get("strategy") or settings.get("strategy") or "unknown")
    theta = {k: np.asarray(v, np.float32) for k, v in checkpoint.weights.items()}
    sizes = _layer_sizes(settings, theta, directory)
    steps = step_sizes_from_state(checkpoint.strategy_state)
    if steps is not None:
        try:
            steps = check_scales(steps, theta)
        except InvalidInputError as exc:
            raise ExportError(f"the step sizes in {directory} do not fit θ: {exc}") from None
    private = tuple(settings.get("metafed", {}).get("private_names", ())) if strategy == "tinymetafed" else ()
    task = str(settings.get("device", {}).get("task") or settings.get("task") or DEFAULT_TASK)  # FederationSettings.device.task
    return RunModel(theta, steps, task, sizes, checkpoint.server_round, strategy, private, directory.resolve())


def _layer_sizes(settings: Mapping[str, object], theta: Mapping[str, np.ndarray], where: Path) -> tuple[int, ...]:
    """The MLP's sizes, from the settings when they say, checked against θ's shapes (which decide if they do not)."""
    n_layers = len(theta) // 2
    names = mlp_weight_names(n_layers)
    if set(theta) != set(names):
        raise ExportError(f"the checkpoint in {where} holds {sorted(theta)}, not the MLP weights {names}")
    try:
        shapes = [tuple(theta[f"w{i}"].shape) for i in range(n_layers)]
        sizes = (shapes[0][0], *(s[1] for s in shapes))
        consistent = all(len(s) == 2 for s in shapes) and all(
            shapes[i][0] == sizes[i] and theta[f"b{i}"].shape == (sizes[i + 1],) for i in range(n_layers)
        )
    except IndexError:
        consistent = False
    if not consistent:
        raise ExportError(f"the checkpoint in {where} is not an MLP: shapes {[theta[n].shape for n in names]}")
    declared = settings.get("layer_sizes")
    if declared is not None and tuple(int(s) for s in declared) != tuple(int(s) for s in sizes):  # type: ignore[union-attr]
        raise ExportError(f"the checkpoint in {where} says layer sizes {list(declared)} but θ is {list(sizes)}")  # type: ignore[arg-type]
    return tuple(int(s) for s in sizes)


def write_npz(model: RunModel, out: Path) -> list[Path]:
    """``theta.npz`` (θ by weight name), ``step_sizes.npz`` (if learned) and ``manifest.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "theta.npz"]
    np.savez(written[0], **model.theta)
    if model.step_sizes is not None:
        written.append(out / "step_sizes.npz")
        np.savez(written[-1], **model.step_sizes)
    return [*written, write_manifest(model, out)]


def write_manifest(model: RunModel, out: Path, **extra: object) -> Path:
    """``out/manifest.json``: :meth:`RunModel.manifest` plus what the format adds (e.g. its files)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    path.write_text(json.dumps({**model.manifest(), **extra}, indent=2) + "\n")
    return path


def c_identifier(prefix: str) -> str:
    """``prefix`` if it is a C identifier; ExportError otherwise (it names every symbol and file)."""
    if not prefix.isidentifier() or not prefix.isascii():
        raise ExportError(f"--prefix {prefix!r} is not a C identifier")
    return prefix


def c_sources(model: RunModel, prefix: str = "model") -> dict[str, str]:
    """``{prefix}.h`` and ``{prefix}.c``: θ (and step sizes) as const float arrays in mlp.h's ``params`` layout.

    The floats are hex literals (:func:`edge.firmware.device.c_floats`), so the C array holds θ's bits.
    A firmware installs θ with ``tf_mlp_init(&m, P_N_LAYERS, P_sizes, arena, n)`` and
    ``memcpy(m.params, P_theta, sizeof P_theta)``.
    """
    p, up = c_identifier(prefix), prefix.upper()
    offsets, at = [], 0
    for name in model.c_layout_names(model.n_layers):
        offsets.append((name, at, int(model.theta[name].size)))
        at += int(model.theta[name].size)
    header = [
        f"/* {p}.h - generated by `tinyfleet export c --run`: the meta-model of a TinyFleet run for edge/firmware/device/mlp.h.",
        f" * task {model.task}, layers {'-'.join(map(str, model.layer_sizes))}, round {model.server_round}, "
        f"strategy {model.strategy}{', private ' + ','.join(model.private_names) if model.private_names else ''}.",
        " * Layout: w0, b0, w1, b1, ... contiguous, each row-major (fan_in x fan_out): mlp.h's params. */",
        f"#ifndef {up}_H", f"#define {up}_H", "", "#include <stdint.h>", "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"#define {up}_N_LAYERS {model.n_layers}u",
        f"#define {up}_N_PARAMS {at}u",
        f"#define {up}_HAS_STEP_SIZES {1 if model.step_sizes is not None else 0}",
        f"#define {up}_ROUND {model.server_round}u",
        f'#define {up}_TASK "{model.task}"',
        *(f"#define {up}_OFFSET_{name.upper()} {start}u /* {count} floats */" for name, start, count in offsets),
        "", f"extern const uint32_t {p}_sizes[{up}_N_LAYERS + 1];",
        f"extern const float {p}_theta[{up}_N_PARAMS];",
        f"extern const float {p}_step_sizes[{up}_N_PARAMS]; /* per-weight multipliers of the rate; all 1 if none were learned */",
        "", "#ifdef __cplusplus", "}", "#endif", "", "#endif", "",
    ]  # fmt: skip
    steps = model.flat(model.step_sizes) if model.step_sizes is not None else np.ones(at, np.float32)
    body = [
        f"/* {p}.c - generated by `tinyfleet export c --run` (see {p}.h). */", f'#include "{p}.h"', "",
        f"const uint32_t {p}_sizes[{up}_N_LAYERS + 1] = {{{', '.join(f'{s}u' for s in model.layer_sizes)}}};",
        _extern(c_floats(f"{p}_theta", model.flat(model.theta))),
        _extern(c_floats(f"{p}_step_sizes", steps)), "",
    ]  # fmt: skip
    return {f"{p}.h": "\n".join(header), f"{p}.c": "\n".join(body)}


def _extern(definition: str) -> str:
    """c_floats writes a file-local ``static const float``; the model's arrays are the header's externs."""
    return definition.replace("static const float", "const float", 1)


def write_c(model: RunModel, out: Path, prefix: str = "model") -> list[Path]:
    """Write :func:`c_sources` and the manifest to ``out``; the paths written."""
    sources = c_sources(model, prefix)  # a bad prefix is refused before anything is written
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sources.items():
        written.append(out / name)
        written[-1].write_text(text)
    return [*written, write_manifest(model, out, prefix=prefix)]
