"""Shared constants and builders of the TFLite edge tests (a plain module: `conftest` is ambiguous)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.mlp import NumpyMLP
from firmware_sim.tasks.sine import SineStream, sample_task

LAYER_SIZES = (1, 40, 40, 1)
SEED = 0  # the training model starts from init_mlp_weights(LAYER_SIZES, SEED), like NumpyMLP(LAYER_SIZES, SEED)


@dataclass(frozen=True)
class BackboneModels:
    weights: dict[str, np.ndarray]  # whole pretrained MLP; its last layer is the head
    int8_path: Path
    float_path: Path


def pretrained_sine_weights(steps: int = 1500) -> dict[str, np.ndarray]:
    """A quick NumpyMLP fit of one sine task: non-zero biases and features that mean something."""
    mlp = NumpyMLP(LAYER_SIZES, seed=3)
    for x, y in SineStream(sample_task(7), seed=7).take(steps):
        mlp.learn_one(x, y, 0.01)
    return mlp.get_weights()


def export_training(folder: Path) -> Path:
    from server.models.sine_mlp import export_training_model

    return export_training_model(folder / "sine_train.tflite", LAYER_SIZES, seed=SEED)


def export_backbones(folder: Path) -> BackboneModels:
    from server.models.backbone_head import export_float_backbone, export_int8_backbone

    weights = pretrained_sine_weights()
    calibration = np.linspace(-5.0, 5.0, 256, dtype=np.float32).reshape(-1, 1)
    return BackboneModels(
        weights=weights,
        int8_path=export_int8_backbone(weights, folder / "backbone_int8.tflite", calibration, n_layers=3),
        float_path=export_float_backbone(weights, folder / "backbone_float.tflite", n_layers=3),
    )
