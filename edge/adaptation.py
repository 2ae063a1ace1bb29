"""What a device does with a model it receives: adapt online on its own stream.

One function shared by the Flower ClientApp, the MQTT firmware and the
evaluation of unseen devices, so "K-shot online adaptation" means the same
thing everywhere: the first ``probe`` samples of the stream are held back to
score the model before and after; each of the next ``shots`` samples gets one
SGD step and is then dropped (``epochs`` > 1 replays them, which is how
FedAvg's local epochs are expressed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edge.learner import Learner

Sample = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class AdaptationReport:
    samples_used: int
    loss_before: float  # on the held-back probe samples, with the received weights
    loss_after: float  # on the same probe samples, after adaptation
    prequential_loss: float  # mean loss of each sample just before the step it caused


def _probe_loss(learner: Learner, probe: list[Sample]) -> float:
    if not probe:
        return float("nan")
    x = np.concatenate([np.reshape(s[0], (1, -1)) for s in probe])
    y = np.concatenate([np.reshape(s[1], (1, -1)) for s in probe])
    return learner.loss(x, y)


def adapt_online(
    learner: Learner,
    stream: Iterator[Sample] | Iterable[Sample],
    shots: int,
    learning_rate: float,
    probe: int = 0,
    epochs: int = 1,
) -> AdaptationReport:
    """Adapt ``learner`` in place on ``shots`` fresh samples from ``stream``."""
    if shots < 0 or probe < 0 or epochs < 1:
        raise ValueError("shots and probe must be >= 0 and epochs >= 1")
    iterator = iter(stream)
    probe_samples = [next(iterator) for _ in range(probe)]
    before = _probe_loss(learner, probe_samples)
    seen: list[Sample] = []
    losses: list[float] = []
    for _ in range(shots):
        x, y = next(iterator)
        losses.append(learner.learn_one(x, y, learning_rate))
        if epochs > 1:
            seen.append((x, y))
    for _ in range(epochs - 1):
        for x, y in seen:
            learner.learn_one(x, y, learning_rate)
    return AdaptationReport(
        samples_used=shots,
        loss_before=before,
        loss_after=_probe_loss(learner, probe_samples),
        prequential_loss=float(np.mean(losses)) if losses else float("nan"),
    )
