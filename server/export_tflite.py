"""A run's meta-model as the TFLite training graph a device installs (``tinyfleet export tflite --run W``).

Why here and not in ``server/export_run.py``: this needs TensorFlow, which only this export does.
The graph is the project's builtin-ops training graph (:mod:`server.models.sine_mlp`, the contract
:class:`edge.tflite_learner.TFLiteTrainer` runs) with θ as its weights and the learned step sizes in
its step-size variables, so ``train`` steps each weight by ``lr · step size · gradient`` from the
start, as the demo's ``tinyreptile/tflite-trainer`` row does.

The sine task is a regressor (mean squared error, :class:`edge.mlp.NumpyMLP`); a task scored by accuracy
(``firmware_sim.device_tasks``) trains a classifier (:class:`edge.mlp_classifier.MLPClassifier`), whose graph differs only in the
loss: softmax cross-entropy with ``y`` the one-hot label (the trainer's ``y[1, out]`` input), the
loss ``-log(max(p_label, 1e-12))`` as numpy clips it, and the output delta ``softmax(z) − y``.
"""

from __future__ import annotations

import math
from pathlib import Path

import tensorflow as tf

from server.export_run import ExportError, RunModel, write_manifest
from server.models.sine_mlp import SIGNATURES, MLPTrainingModule, build_training_module, convert_training_module

_LOG_FLOOR = math.log(1e-12)


class ClassifierTrainingModule(MLPTrainingModule):
    """The training graph of :class:`edge.mlp_classifier.MLPClassifier`: the same signatures, a cross-entropy ``train``.

    ``y`` is the one-hot label. The backward pass and the refusal of a non-finite step are those of
    :class:`server.models.sine_mlp.MLPTrainingModule`; only the loss and the output delta differ.
    """

    def _loss_and_delta(self, out: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        log_p = tf.nn.log_softmax(out)
        loss = -tf.reduce_sum(y * tf.maximum(log_p, _LOG_FLOOR))
        return loss, tf.nn.softmax(out) - y  # batch of exactly one sample


def is_classifier(model: RunModel) -> bool:
    """What the task's devices train (``firmware_sim.device_tasks``: metric "mse" is the regressor); a task this
    process does not know (a user's, registered from its folder elsewhere) is a classifier if it has > 1 output."""
    from firmware_sim.device_tasks import UnknownTaskError, device_task

    try:
        return device_task(model.task).metric != "mse"
    except UnknownTaskError:
        return model.layer_sizes[-1] > 1


def training_graph(model: RunModel) -> bytes:
    """The .tflite bytes of ``model``'s training graph, θ as its weights and its step sizes (ones if none)."""
    module = build_training_module(model.layer_sizes, model.theta, step_sizes=model.step_sizes)
    if is_classifier(model):
        if model.layer_sizes[-1] < 2:
            raise ExportError(f"task {model.task!r} is a classifier but its MLP has {model.layer_sizes[-1]} output")
        module = ClassifierTrainingModule(module.layer_sizes, model.theta, model.step_sizes)
    return convert_training_module(module)


def write_tflite(model: RunModel, out: Path) -> list[Path]:
    """``out/<task>_train.tflite`` and the manifest, which says how the graph's ``y`` is laid out."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{model.task}_train.tflite"
    path.write_bytes(training_graph(model))
    labels = "one-hot class label, y[1, n_classes]" if is_classifier(model) else "regression target, y[1, n_out]"
    return [path, write_manifest(model, out, file=path.name, signatures=list(SIGNATURES), y=labels)]
