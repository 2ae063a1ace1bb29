"""Train a small backbone in TensorFlow, quantise it to full-int8 TFLite and check it fits a device.

The pipeline every task model (:mod:`server.models.characters`,
:mod:`server.models.keywords`, :mod:`server.models.presence`) shares:

1. **Train** a classifier ``input -> backbone -> features -> head`` with plain
   ``tf.Variable`` weights, a hand-written forward pass and Adam (no Keras:
   Keras 3 layers inside a ``tf.Module`` do not convert cleanly, and the same
   forward function must serve training and export).
2. **Export** the backbone alone (input -> penultimate-layer features) with
   its trained weights as graph constants: a full-integer int8 ``.tflite``
   (int8 input and output, calibrated on a representative dataset) for the
   device, and a float32 ``.tflite`` as the reference it is measured against.
   The input is flat, ``(n, prod(input_shape))``, and reshaped inside the
   graph, which is the layout :class:`edge.tflite_learner.FrozenBackbone`
   expects.
3. Keep the trained **head** ``{head_w, head_b}`` as the initial weights of the
   on-device :class:`edge.online_head.OnlineHead`.
4. **Check the fit** through the registry's describer
   (:func:`ontology.describe_model.describe_model_bytes`): flash = model size,
   RAM = tensor arena (TFLM greedy-planner replay) + the TinyOL head's
   :meth:`~edge.online_head.OnlineHead.memory_footprint`.

Inputs reach the backbone already scaled by an :class:`InputScaler` (a
per-column affine map, optionally after ``log1p``), which the device applies in
numpy before quantising: int8 input has one scale for all columns, so raw
columns of very different ranges (CO2 in ppm next to a temperature slope)
would lose most of their resolution.

The pipeline is split by job, one module each: :mod:`server.models.architecture`
(layers, initial weights, forward pass), :mod:`server.models.input_scaler`,
:mod:`server.models.training`, :mod:`server.models.backbone_export`,
:mod:`server.models.task_model` (the artefact and :func:`build_task_model`),
:mod:`server.models.device_fit` (fit and head-step cost on a device profile),
:mod:`server.models.online_eval` (streaming a TinyOL head and scoring it) and
:mod:`server.models.head_step` (the head step as a TFLite graph, for the
benchmark). This module re-exports every name, so the task models, tests and
``bench/task_models.py`` keep importing from ``server.models.tinyml``.
"""

from __future__ import annotations

from server.models.architecture import (
    Architecture,
    Conv,
    Dense,
    DepthwiseConv,
    GlobalAveragePool,
    Layer,
    MaxPool,
    forward,
    init_params,
)
from server.models.backbone_export import export_backbone
from server.models.device_fit import (
    HEAD_UPDATE_BUDGET,
    DeviceUpdateCost,
    FitReport,
    device_update_cost,
    fit_report,
    task_fit,
)
from server.models.head_step import InterpretedHeadStep, export_head_step
from server.models.input_scaler import InputScaler, identity_scaler
from server.models.online_eval import (
    GrowingClassifier,
    empty_head,
    head_learning_rate,
    imprint_accuracy,
    online_accuracy,
    score,
)
from server.models.task_model import TaskModel, build_task_model
from server.models.training import TrainConfig, TrainResult, float_features, train_classifier

__all__ = [
    "Architecture", "Conv", "Dense", "DepthwiseConv", "GlobalAveragePool", "Layer", "MaxPool", "forward", "init_params",
    "export_backbone",
    "HEAD_UPDATE_BUDGET", "DeviceUpdateCost", "FitReport", "device_update_cost", "fit_report", "task_fit",
    "InterpretedHeadStep", "export_head_step",
    "InputScaler", "identity_scaler",
    "GrowingClassifier", "empty_head", "head_learning_rate", "imprint_accuracy", "online_accuracy", "score",
    "TaskModel", "build_task_model",
    "TrainConfig", "TrainResult", "float_features", "train_classifier",
]
