"""Partial local reconstruction (TinyMetaFed), the device side.

Part of the model — by default the head — is *private*: it never leaves the
device and the server never sends it. Each round the device rebuilds it from a
local initialisation on the first few samples of its stream, with the shared
part frozen, and only then adapts the shared part (private part frozen), as in
Federated Reconstruction (Singhal et al., 2021). Why: the head is what differs
most between devices (a sine's amplitude is the head's scale), so averaging it
across devices only cancels out, while rebuilding it locally is cheap and
leaves the uplink to the part that generalises. Every sample is seen once.

Works with any :class:`edge.learner.Learner`: the frozen arrays are restored
after each SGD step, so a learner needs no notion of trainable subsets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from edge.adaptation import Sample, _probe_loss
from edge.imprinting import check_imprintable, imprint_output_layer
from edge.learner import Learner

# How the private part is rebuilt: SGD from the local init, or (a classifier's output layer) imprinted
# from class means (edge.imprinting).
RECONSTRUCTION_RULES = ("sgd", "imprint")


def split_weights(
    weights: Mapping[str, np.ndarray], private_names: Collection[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(shared, private) parts of a weight set; every private name must exist."""
    unknown = sorted(set(private_names) - set(weights))
    if unknown:
        raise ValueError(f"private weight names {unknown} are not in the model ({sorted(weights)})")
    shared = {k: v for k, v in weights.items() if k not in private_names}
    private = {k: v for k, v in weights.items() if k in private_names}
    return shared, private


def parse_private_names(text: str) -> tuple[str, ...]:
    """``"w2,b2"`` -> ``("w2", "b2")``; the empty string means no private part."""
    return tuple(name for name in (part.strip() for part in text.split(",")) if name)


def train_subset(
    learner: Learner,
    stream: Iterator[Sample],
    samples: int,
    learning_rate: float,
    trainable: Collection[str],
    epochs: int = 1,
) -> list[float]:
    """One SGD step per fresh sample that changes only the ``trainable`` arrays; the losses before each step.

    ``epochs`` > 1 replays the same samples, in the order they came, that many times in all (FedAvg's local
    epochs), in the order :func:`edge.adaptation.adapt_online` uses; the losses returned are the first pass's
    (prequential). The replayed samples are the only extra RAM.
    """
    if epochs < 1:
        raise ValueError("epochs must be >= 1")

    everything = set(learner.weight_spec) <= set(trainable)  # the whole model learns: nothing to restore

    def step(x: object, y: object) -> float:
        if everything:
            return learner.learn_one(x, y, learning_rate)
        frozen = {k: v for k, v in learner.get_weights().items() if k not in trainable}
        loss = learner.learn_one(x, y, learning_rate)
        if frozen:
            learner.set_weights({**learner.get_weights(), **frozen})
        return loss

    losses, seen = [], []
    for _ in range(samples):
        x, y = next(stream)
        losses.append(step(x, y))
        if epochs > 1:
            seen.append((x, y))
    for _ in range(epochs - 1):
        for x, y in seen:
            step(x, y)
    return losses


@dataclass(frozen=True)
class ReconstructionReport:
    samples_used: int  # reconstruction + adaptation samples (the probe is extra)
    loss_before: float  # probe loss with θ and the rebuilt private part, before adapting θ
    loss_after: float  # probe loss after adapting the shared part
    reconstruction_loss: float  # mean prequential loss while rebuilding the private part
    prequential_loss: float  # mean prequential loss while adapting the shared part


def reconstruct_and_adapt(
    learner: Learner,
    theta_shared: Mapping[str, np.ndarray],
    private_init: Mapping[str, np.ndarray],
    stream: Iterator[Sample],
    *,
    reconstruction_samples: int,
    reconstruction_lr: float,
    shots: int,
    learning_rate: float,
    probe: int = 0,
    rule: str = "sgd",
    epochs: int = 1,
) -> tuple[dict[str, np.ndarray], ReconstructionReport]:
    """Install θ (shared) + the local init (private), rebuild the private part, adapt the shared part.

    The stream is consumed in this order: ``probe`` held-back samples (scored,
    never trained on), ``reconstruction_samples`` for the private part, then
    ``shots`` for the shared part. Returns φ (shared part only) and a report.
    ``rule`` "imprint" writes the private output layer from class means
    instead of SGD (``reconstruction_lr`` is then unused). ``epochs`` replays
    the ``shots`` adaptation samples (FedAvg's local epochs); with no private
    part this is exactly :func:`edge.adaptation.adapt_online`.
    """
    if min(reconstruction_samples, shots, probe) < 0:
        raise ValueError("sample counts must be >= 0")
    if rule not in RECONSTRUCTION_RULES:
        raise ValueError(f"reconstruction rule {rule!r} is not one of {RECONSTRUCTION_RULES}")
    overlap = sorted(set(theta_shared) & set(private_init))
    if overlap:
        raise ValueError(f"names both shared and private: {overlap}")
    if rule == "imprint":
        check_imprintable(learner, private_init)
    learner.set_weights({**theta_shared, **private_init})
    iterator = iter(stream)
    probe_samples = [next(iterator) for _ in range(probe)]
    if rule == "imprint":
        recon = imprint_output_layer(learner, iterator, reconstruction_samples, names=set(private_init))
    else:
        recon = train_subset(learner, iterator, reconstruction_samples, reconstruction_lr, trainable=set(private_init))
    before = _probe_loss(learner, probe_samples)
    adapt = train_subset(learner, iterator, shots, learning_rate, trainable=set(theta_shared), epochs=epochs)
    after = _probe_loss(learner, probe_samples)
    phi = learner.get_weights()
    report = ReconstructionReport(
        samples_used=reconstruction_samples + shots,
        loss_before=before,
        loss_after=after,
        reconstruction_loss=float(np.mean(recon)) if recon else float("nan"),
        prequential_loss=float(np.mean(adapt)) if adapt else float("nan"),
    )
    return {k: phi[k] for k in theta_shared}, report
