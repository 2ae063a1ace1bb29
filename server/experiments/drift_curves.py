"""Concept drift on a deployed device: accuracy over its stream with online learning on and off.

An unseen device installs a method's initialisation and adapts on its K-shot
episode exactly as in :func:`server.experiments.task_bench.adapted_learner`. Then two
copies of it face the same stream of its classes, which starts drifting at
sample ``drift_start`` (the family's ``drifting`` stream: a writer's slant, a
room's noise, a room's sensors). Both predict each sample before its label is
used (prequential, test-then-train); the *online* copy then learns from it,
the *frozen* copy never learns again. The online step is the one
the device's output layer was built with: cross-entropy SGD on every weight
at the family's rate, or, for an imprinted output layer, the class means
tracked with a step of at least the family's rate (hidden layers frozen;
cross-entropy SGD at that rate through an imprinted layer's large logits
collapses: 0.57 on characters' validation devices, against 0.92 tracking the
means). The curves are the mean accuracy over devices in consecutive windows
of the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.imprinting import Imprinter
from edge.mlp_classifier import MLPClassifier
from firmware_sim.task_families import TaskFamily
from firmware_sim.tasks.episodes import Episode
from server.experiments.task_bench import TaskBenchConfig, adapted_learner


@dataclass(frozen=True)
class DriftConfig:
    method: str = "tinymetafed"
    shots: int = 5
    n_devices: int = 20
    samples: int = 600
    drift_start: int = 200
    window: int = 50

    @classmethod
    def for_task(cls, task: str, **overrides: object) -> DriftConfig:
        return cls(**{**DRIFT_PRESETS.get(task, {}), **overrides})  # type: ignore[arg-type]


DRIFT_PRESETS: dict[str, dict[str, object]] = {
    "keywords": dict(n_devices=10, samples=400, drift_start=150),  # ~15-35 ms a clip: see server.core.tasks.TASK_METHODS
}


def _copy(learner: MLPClassifier, family: TaskFamily) -> MLPClassifier:
    twin = MLPClassifier(family.layer_sizes)
    twin.set_weights(learner.get_weights())
    return twin


def online_step(
    config: TaskBenchConfig, family: TaskFamily, method: str, learner: MLPClassifier, episode: Episode
) -> Callable[[np.ndarray, object], float]:
    """How ``learner``, adapted on ``episode`` by ``method``'s new-device rule, keeps learning from one more sample."""
    if method in config.imprinting:
        counts = np.bincount(episode.support_y, minlength=learner.n_classes)
        return Imprinter(learner, counts, min_rate=family.learning_rate).learn_one
    return lambda x, y: learner.learn_one(x, y, family.learning_rate)


def drift_curves(
    config: TaskBenchConfig, family: TaskFamily, weights: dict[str, np.ndarray] | None, drift: DriftConfig
) -> dict[str, object]:
    """``{"window_end": [...], "online": [...], "frozen": [...]}`` plus the settings; accuracies per window."""
    if drift.samples % drift.window or not 0 <= drift.drift_start < drift.samples:
        raise ValueError("samples must be a multiple of window, and drift_start inside the stream")
    hits = {"online": np.zeros((drift.n_devices, drift.samples)), "frozen": np.zeros((drift.n_devices, drift.samples))}
    for j in range(drift.n_devices):
        device = config.eval_device_base + j
        episode = family.episode(device, drift.shots, config.n_query)
        online = adapted_learner(config, family, drift.method, weights, device, episode)
        frozen = _copy(online, family)
        learn = online_step(config, family, drift.method, online, episode)
        stream = family.drifting(device, drift.drift_start)
        for i in range(drift.samples):
            x, y = next(stream)
            batch = x.reshape(1, -1)
            hits["online"][j, i] = online.predict_labels(batch)[0] == y
            hits["frozen"][j, i] = frozen.predict_labels(batch)[0] == y
            learn(x, y)
    windows = drift.samples // drift.window
    curves = {name: h.reshape(drift.n_devices, windows, drift.window).mean(axis=(0, 2)).tolist() for name, h in hits.items()}
    after = slice(drift.drift_start // drift.window + 2, windows)  # once the drift has fully set in
    return {
        "drift": family.drift,
        "settings": drift.__dict__,
        "window_end": [(w + 1) * drift.window for w in range(windows)],
        **curves,
        "before_drift": {name: float(np.mean(c[: drift.drift_start // drift.window])) for name, c in curves.items()},
        "after_drift": {name: float(np.mean(c[after])) for name, c in curves.items()},
    }
