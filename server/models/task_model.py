"""The artefact a task ships to a device, and the one function that builds it (scale, train, export).

:class:`TaskModel` holds the int8 backbone, its float reference, the input
scaler and the initial head; :meth:`TaskModel.save` writes the files a device
or the registry loads.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.online_head import OnlineHead
from server.models.architecture import Architecture
from server.models.backbone_export import export_backbone
from server.models.input_scaler import InputScaler
from server.models.training import TrainConfig, TrainResult, train_classifier


@dataclass(eq=False)
class TaskModel:
    """What a task ships to a device: int8 backbone, its float reference, the input scaler and the initial head."""

    task: str
    arch: Architecture
    int8_model: bytes
    float_model: bytes
    scaler: InputScaler
    initial_head: dict[str, np.ndarray]
    classes: tuple[str, ...]
    train: TrainResult
    info: dict[str, object] = field(default_factory=dict)  # data sizes, timings, split

    @property
    def n_features(self) -> int:
        return self.arch.n_features

    @property
    def n_outputs(self) -> int:
        return int(self.initial_head["head_w"].shape[1])

    def head(self, seed: int = 0) -> OnlineHead:
        """An OnlineHead holding the initial head weights."""
        head = OnlineHead(self.n_features, self.n_outputs, "classification", seed)
        head.set_weights(self.initial_head)
        return head

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``<task>.tflite`` (int8), ``<task>_float.tflite``, ``<task>_head.npz`` and ``<task>.json``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "int8": out / f"{self.task}.tflite",
            "float": out / f"{self.task}_float.tflite",
            "head": out / f"{self.task}_head.npz",
            "meta": out / f"{self.task}.json",
        }
        paths["int8"].write_bytes(self.int8_model)
        paths["float"].write_bytes(self.float_model)
        np.savez(paths["head"], **self.initial_head)
        meta = {
            "task": self.task,
            "input_shape": list(self.arch.input_shape),
            "n_features": self.n_features,
            "classes": list(self.classes),
            "scaler": self.scaler.as_dict(),
            "int8_sha256": hashlib.sha256(self.int8_model).hexdigest(),
            "train_accuracy": self.train.train_accuracy,
            "train_seconds": self.train.seconds,
            **self.info,
        }
        paths["meta"].write_text(json.dumps(meta, indent=2, default=str))
        return paths


def build_task_model(
    task: str,
    arch: Architecture,
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    scaler: InputScaler,
    config: TrainConfig,
    n_representative: int = 300,
    info: dict[str, object] | None = None,
) -> TaskModel:
    """Train on raw samples ``x`` (scaled here with ``scaler``), then export int8 and float backbones."""
    start = time.perf_counter()
    scaled = scaler(x)
    result = train_classifier(arch, scaled, y, len(classes), config)
    pick = np.random.default_rng(config.seed).permutation(len(scaled))[:n_representative]
    int8_model = export_backbone(arch, result.backbone, scaled[pick])
    float_model = export_backbone(arch, result.backbone, None)
    details = dict(info or {})
    details.update(n_train=len(x), export_seconds=time.perf_counter() - start - result.seconds)
    return TaskModel(task, arch, int8_model, float_model, scaler, result.head, tuple(classes), result, details)
