"""Online learning on top of a frozen backbone: stream samples through a TinyOL head, then score it.

The evaluation the task benchmarks and tests share: a head that grows a class
per new label (:class:`GrowingClassifier`), the SGD learning rate that makes a
first step move a logit by a fixed amount, imprinting as the learning-rate-free
alternative, and plain or balanced accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.online_head import OnlineHead
from server.models.input_scaler import InputScaler


def head_learning_rate(features: np.ndarray, step: float = 1.0) -> float:
    """SGD learning rate for a head on these features: ``step / mean ||f||²``.

    One SGD step on a zero head moves the true class's logit by about
    ``lr · ||f||²``, so this makes a first step move it by ``step``, whatever
    scale the backbone's features have.
    """
    energy = float(np.mean(np.sum(np.asarray(features, np.float64) ** 2, axis=1)))
    return step / max(energy, 1e-6)


def empty_head(n_features: int) -> OnlineHead:
    """A classification head that knows no class yet: one zero output, grown with ``add_class``."""
    head = OnlineHead(n_features, 1, "classification")
    head.set_weights({"head_w": np.zeros((n_features, 1), np.float32), "head_b": np.zeros(1, np.float32)})
    return head


class GrowingClassifier:
    """Device-side label bookkeeping around a learner whose head grows a class per new label (TinyOL).

    Labels are whatever the stream says (words, class ids); the head's output
    ``i`` is the ``i``-th label seen. ``learner`` is a
    :class:`~edge.tflite_learner.BackboneHeadLearner` on :func:`empty_head`.
    """

    def __init__(self, learner: object) -> None:
        self.learner = learner
        self.labels: list[object] = []

    def learn_one(self, x: np.ndarray, label: object, learning_rate: float) -> float:
        if label not in self.labels:
            if self.labels:  # the empty head already has one output for the first label
                self.learner.head.add_class()  # type: ignore[attr-defined]
            self.labels.append(label)
        return self.learner.learn_one(x, self.labels.index(label), learning_rate)  # type: ignore[attr-defined]

    def predict_labels(self, x: np.ndarray) -> list[object]:
        return [self.labels[i] for i in self.learner.predict(x).argmax(axis=1)]  # type: ignore[attr-defined]


def online_accuracy(
    backbone: object,
    scaler: InputScaler,
    train_x: np.ndarray,
    train_y: Sequence[object],
    test_x: np.ndarray,
    test_y: Sequence[object],
    learning_rate: float,
    head: OnlineHead | None = None,
    shuffle_seed: int | None = 0,
    balanced: bool = False,
) -> float:
    """Stream ``train`` once through a TinyOL head on ``backbone`` (one SGD step per sample), then score ``test``.

    ``backbone`` is a :class:`~edge.tflite_learner.FrozenBackbone`. With no
    ``head`` the head starts empty and grows a class per new label; with one,
    labels must be its output indices. The score is accuracy over ``test``
    (labels the head never saw count as wrong), or with ``balanced`` the mean
    of the per-class recalls (for skewed streams such as mostly-empty rooms).
    """
    from edge.tflite_learner import BackboneHeadLearner

    learner = BackboneHeadLearner(backbone, head if head is not None else empty_head(backbone.n_features))  # type: ignore[arg-type]
    xs = scaler(train_x)
    order = np.arange(len(xs)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(xs))
    if head is None:
        device = GrowingClassifier(learner)
        for i in order:
            device.learn_one(xs[i], train_y[i], learning_rate)
        predicted = device.predict_labels(scaler(test_x))
    else:
        for i in order:
            learner.learn_one(xs[i], int(train_y[i]), learning_rate)  # type: ignore[arg-type]
        predicted = list(learner.predict(scaler(test_x)).argmax(axis=1))
    return score(predicted, test_y, balanced)


def imprint_accuracy(
    backbone: object,
    scaler: object,
    train_x: np.ndarray,
    train_y: list[object],
    test_x: np.ndarray,
    test_y: list[object],
    shuffle_seed: int | None = 0,
    balanced: bool = False,
    min_rate: float = 0.0,
) -> float:
    """:func:`online_accuracy`'s episode (same order, same scoring) with the head imprinted: an empty head grown a
    class per new label, ``imprint_one`` on each support sample, no learning rate."""
    head = empty_head(backbone.n_features)  # type: ignore[attr-defined]
    labels: list[object] = []
    xs = scaler(train_x)  # type: ignore[operator]
    order = np.arange(len(xs)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(xs))
    for i in order:
        if train_y[i] not in labels:
            if labels:  # the empty head already has one output for the first label
                head.add_class()
            labels.append(train_y[i])
        features = backbone.feature_vector(xs[i])  # type: ignore[attr-defined]
        head.imprint_one(features, labels.index(train_y[i]), min_rate)
    predicted = [labels[i] for i in head.predict(backbone.features(scaler(test_x))).argmax(axis=1)]  # type: ignore[operator]
    return score(predicted, test_y, balanced)


def score(predicted: Sequence[object], truth: Sequence[object], balanced: bool = False) -> float:
    """Accuracy, or balanced accuracy (mean recall over the classes present in ``truth``)."""
    hits = np.array([p == t for p, t in zip(predicted, truth)], bool)
    if not balanced:
        return float(hits.mean())
    truth_list = list(truth)
    return float(np.mean([hits[[t == c for t in truth_list]].mean() for c in set(truth_list)]))
