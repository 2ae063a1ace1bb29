"""Imprinting: a classifier's output layer written from class means of its last hidden layer, one sample at a time.

A device that starts an output layer from nothing (a new class, a new
device, TinyMetaFed's private head) can learn it by SGD from zero, or write it
in closed form. With ``μ_c`` the running mean of the last hidden layer ``h``
over the samples of class ``c`` so far, column ``c`` becomes

    w_c = μ_c,    b_c = −½‖μ_c‖²

so the logit of class ``c`` is ``½‖h‖² − ½‖h − μ_c‖²``: the softmax output
layer is exactly a nearest-class-mean (prototype) classifier over the learned
features (Snell et al. 2017; the initialisation of Proto-MAML, Triantafillou
et al. 2020; "weight imprinting", Qi et al. 2018, which Coral's on-device
learning ships). SGD from a zero layer with a small rate converges to the
same prototypes but without the ``−½‖μ_c‖²`` bias, i.e. a dot-product rather
than a distance, which scores worse on unseen classes.

Why it suits a microcontroller: each sample costs the forward pass the
device runs anyway plus ``hidden`` multiply-adds into one column; no
backward pass, no learning rate to tune, and the state is the output layer
itself plus one counter per class. A class that has not been seen yet keeps
its firmware column (zeros: logit 0), so classes come online as their first
sample arrives.

Works on :class:`edge.mlp_classifier.MLPClassifier`; anything else is
refused, since a regression output has no classes to average.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

import numpy as np

from edge.adaptation import Sample
from edge.learner import Learner
from edge.mlp import mlp_forward
from edge.mlp_classifier import MLPClassifier, softmax
from edge.validation import as_float_array


def output_layer_names(learner: MLPClassifier) -> tuple[str, str]:
    last = learner.n_layers - 1
    return f"w{last}", f"b{last}"


def check_imprintable(learner: Learner, names: Collection[str]) -> MLPClassifier:
    """``learner`` as a classifier whose output layer is exactly ``names``; ValueError saying why not."""
    if not isinstance(learner, MLPClassifier):
        raise ValueError(f"imprinting needs a classifier (MLPClassifier); {type(learner).__name__} has no classes")
    expected = output_layer_names(learner)
    if set(names) != set(expected):
        raise ValueError(f"imprinting writes the output layer {list(expected)} and nothing else; asked for {sorted(names)}")
    return learner


class Imprinter:
    """The running class means behind one imprinted output layer, updated one labelled sample at a time.

    A class's mean moves by ``(h − μ_c) · max(1/n_c, min_rate)``: with
    ``min_rate`` 0 it is the exact mean of the ``n_c`` samples seen; with a
    floor it becomes an exponential moving average once ``n_c > 1/min_rate``,
    so the prototypes follow a drifting stream. Either way it is one SGD step
    on ``½‖μ_c − h‖²``. ``counts`` resumes a layer already imprinted on that
    many samples per class.
    """

    def __init__(self, learner: MLPClassifier, counts: np.ndarray | None = None, min_rate: float = 0.0) -> None:
        if not 0.0 <= min_rate <= 1.0:
            raise ValueError(f"min_rate is a step in [0, 1], got {min_rate}")
        self.learner = learner
        self.w_name, self.b_name = output_layer_names(learner)
        self.counts = np.zeros(learner.n_classes, dtype=np.int64) if counts is None else np.array(counts, dtype=np.int64)
        if self.counts.shape != (learner.n_classes,) or self.counts.min() < 0:
            raise ValueError(f"counts must be {learner.n_classes} non-negative class counts, got {counts!r}")
        self.min_rate = min_rate

    def learn_one(self, x: np.ndarray, y: object) -> float:
        """Fold one sample into its class's mean and rewrite that class's column; the loss before the update.

        A refused sample or label (InvalidInputError) leaves the layer and the counts as they were.
        """
        xs = as_float_array("sample x", x, (self.learner.layer_sizes[0],)).reshape(1, -1)
        label = int(self.learner._labels(y, 1)[0])
        weights = self.learner.get_weights()
        activations = mlp_forward(weights, xs, self.learner.n_layers)
        loss = float(-np.log(max(float(softmax(activations[-1])[0, label]), 1e-12)))
        features = activations[-2][0]
        count = int(self.counts[label]) + 1
        w, b = weights[self.w_name], weights[self.b_name]
        mean = w[:, label] if count > 1 else np.zeros_like(features)
        mean = mean + (features - mean) * max(1.0 / count, self.min_rate)
        w[:, label] = mean
        b[label] = -0.5 * float(mean @ mean)
        self.learner.set_weights({**weights, self.w_name: w, self.b_name: b})  # refuses a non-finite mean
        self.counts[label] = count
        return loss


def imprint_output_layer(learner: Learner, stream: Iterator[Sample], samples: int, names: Collection[str]) -> list[float]:
    """Imprint ``learner``'s output layer (``names``) on the next ``samples`` of ``stream``; the losses before each.

    Columns start from whatever the learner holds (the firmware's zeros); a
    class's column is overwritten by its first sample, so only classes never
    seen keep it.
    """
    imprinter = Imprinter(check_imprintable(learner, names))
    losses = []
    for _ in range(samples):
        x, y = next(stream)
        losses.append(imprinter.learn_one(x, y))
    return losses
