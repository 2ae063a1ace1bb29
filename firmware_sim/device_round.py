"""One TinyMetaFed round on a device, whatever carried the model in: MQTT or Flower.

Why one function: an MQTT microcontroller (:mod:`firmware_sim.mqtt_round`) and
a Flower SuperNode (:mod:`firmware_sim.client_app`) must do exactly the same
thing with θ — rebuild the private part from the local init, adapt the shared
part online, send the Top-P% (or dense) delta — and book exactly the same
costs, or comparing the two transports would compare two algorithms. The
transports only differ in how θ arrives and how the reply is packed; that
stays with them. Bytes sent are the length of the UPDATE payload the wire
codec would produce for this reply (:func:`edge.wire.encoded_size`), so the
Flower path reports what the same update costs on the radio.

Every hyperparameter is checked in :meth:`RoundPlan.from_hyperparameters`
before the device's ledger or learner is touched: a refused task costs the
device nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge import record_keys as keys
from edge.learner import Learner
from edge.mlp import init_mlp_weights
from edge.imprinting import check_imprintable
from edge.reconstruction import RECONSTRUCTION_RULES, parse_private_names, reconstruct_and_adapt, split_weights
from edge.validation import WeightSpec
from edge.wire import SparseTensor, WireFormatError, encoded_size, top_p_sparsify
from firmware_sim.device import Ledger, SimulatedDevice

PRIVATE_INIT_SEED_OFFSET = 10_000  # a device's firmware-local init of its private part: seed + offset


def local_init(device_seed: int, layer_sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """The weights a device's firmware ships with; its private part is where reconstruction starts.

    Shared by the MQTT fleet, the Flower ClientApp and the unseen-device
    evaluation so that "the device's local init" is one thing everywhere.
    """
    return init_mlp_weights(layer_sizes, seed=PRIVATE_INIT_SEED_OFFSET + device_seed)


def _count(values: Mapping[str, object], key: str, default: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise WireFormatError(WireFormatError.BAD_FIELD, f"task hyperparameter {key} = {value!r} is not a count")
    return int(value)


def _rate(values: Mapping[str, object], key: str, default: float) -> float:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"task hyperparameter {key} = {value!r} is out of range")
    return float(value)


def _epochs(values: Mapping[str, object]) -> int:
    """FedAvg's local epochs: a count of at least 1 (absent: 1)."""
    epochs = _count(values, keys.LOCAL_EPOCHS, 1)
    if epochs < 1:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"task hyperparameter {keys.LOCAL_EPOCHS} = {epochs} is not >= 1")
    return epochs


def kept_fraction(value: object) -> float | None:
    """A Top-P fraction strictly inside (0, 1), or None for a dense update (absent, 1.0 or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        return None
    return float(value)


@dataclass(frozen=True)
class RoundPlan:
    """What the server asked the device to do this round, independent of the transport."""

    private_names: tuple[str, ...] = ()
    shots: int = 10
    epochs: int = 1  # passes over the shots (FedAvg's local epochs)
    probe: int = 0
    reconstruction_samples: int = 0
    learning_rate: float = 0.02
    reconstruction_lr: float = 0.02
    reconstruction_rule: str = "sgd"  # or "imprint" (a classifier's output layer from class means)
    top_p: float | None = None  # kept fraction for a sparse update; None = dense
    evaluate: bool = False

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, object], *, top_p: float | None, evaluate: bool) -> RoundPlan:
        """Parse a task's hyperparameters (MQTT task JSON or Flower ConfigRecord); WireFormatError if refused."""
        names = values.get(keys.PRIVATE_NAMES, "")
        if not isinstance(names, str):
            raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.PRIVATE_NAMES} must be a string, got {names!r}")
        private = parse_private_names(names)
        rule = values.get(keys.RECONSTRUCTION_RULE, "sgd")
        if rule not in RECONSTRUCTION_RULES:
            raise WireFormatError(
                WireFormatError.BAD_FIELD, f"{keys.RECONSTRUCTION_RULE} = {rule!r} is not one of {RECONSTRUCTION_RULES}"
            )
        return cls(
            private_names=private,
            shots=_count(values, keys.STREAM_SAMPLES, 10),
            epochs=_epochs(values),
            probe=_count(values, keys.PROBE_SAMPLES, 0),
            reconstruction_samples=_count(values, keys.RECONSTRUCTION_SAMPLES, 0) if private else 0,
            learning_rate=_rate(values, keys.INNER_LEARNING_RATE, 0.02),
            reconstruction_lr=_rate(values, keys.RECONSTRUCTION_LR, 0.02),
            reconstruction_rule=str(rule),
            top_p=top_p,
            evaluate=evaluate,
        )


def shared_spec(learner: Learner, private_names: Sequence[str]) -> WeightSpec:
    """The part of the device's own weight table the server sends; refuses private names it does not have."""
    local = dict(learner.weight_spec)
    unknown = sorted(set(private_names) - set(local))
    if unknown:
        raise WireFormatError(WireFormatError.SPEC_MISMATCH, f"private names {unknown} are not weights of this firmware")
    return {k: v for k, v in local.items() if k not in private_names}


@dataclass(frozen=True)
class RoundOutcome:
    """The device's reply, before a transport packs it."""

    dense: dict[str, np.ndarray] | None  # δ = φ − θ (shared part) for a dense update
    sparse: dict[str, SparseTensor] | None  # Top-P of δ for a sparse update
    metrics: dict[str, float]  # what the UPDATE payload carries
    num_examples: int
    bytes_sent: int  # length of the UPDATE payload for this reply
    bytes_received: int
    energy_j: float


def run_round(
    device: SimulatedDevice,
    private_init: Mapping[str, np.ndarray],
    theta_shared: Mapping[str, np.ndarray],
    plan: RoundPlan,
    received_bytes: int,
) -> RoundOutcome:
    """Reconstruct, adapt, build the update and book the round on ``device`` (its model deployed).

    ``theta_shared`` must already be checked against :func:`shared_spec`;
    ``received_bytes`` is what the transport delivered (payloads as received).
    """
    learner = device.learner
    if learner is None:
        raise RuntimeError(f"device {device.device_id} has no model deployed")
    if plan.reconstruction_rule == "imprint":
        try:
            check_imprintable(learner, plan.private_names)
        except ValueError as exc:
            raise WireFormatError(WireFormatError.BAD_FIELD, str(exc)) from exc
    at_start = Ledger(**vars(device.ledger))
    device.ledger.bytes_received += received_bytes
    _, private = split_weights(private_init, plan.private_names) if plan.private_names else ({}, {})
    theta = dict(theta_shared)
    phi, report = reconstruct_and_adapt(
        learner, theta, private, device.stream,
        reconstruction_samples=plan.reconstruction_samples, reconstruction_lr=plan.reconstruction_lr,
        shots=plan.shots, learning_rate=plan.learning_rate, probe=plan.probe, rule=plan.reconstruction_rule,
        epochs=plan.epochs,
    )  # fmt: skip
    samples = plan.reconstruction_samples + plan.shots
    steps = plan.reconstruction_samples + plan.shots * plan.epochs
    device.charge_compute(steps=steps, evaluations=2 * plan.probe, samples=samples + plan.probe)

    dense: dict[str, np.ndarray] | None = None
    sparse: dict[str, SparseTensor] | None = None
    if not plan.evaluate:
        delta = {k: (phi[k] - theta[k]).astype(theta[k].dtype) for k in theta}
        if plan.top_p is not None:
            sparse = top_p_sparsify(delta, plan.top_p)
        else:
            dense = delta
    metrics = {
        keys.LOSS_BEFORE: report.loss_before,
        keys.LOSS_AFTER: report.loss_after,
        keys.PREQUENTIAL_LOSS: report.prequential_loss,
        keys.DEVICE_TIME_S: 0.0,
        keys.DEVICE_ENERGY_J: 0.0,
    }
    if plan.private_names:
        metrics[keys.RECONSTRUCTION_LOSS] = report.reconstruction_loss
    metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}  # no probe -> no probe losses
    # the payload's size does not depend on the metric values, so energy can include the bytes it costs
    device.send(encoded_size(dense, sparse=sparse, device_id=device.device_id, metrics=metrics))
    cost = device.close_round(at_start)
    metrics[keys.DEVICE_TIME_S] = cost.compute_s + cost.radio_s
    metrics[keys.DEVICE_ENERGY_J] = cost.energy_j
    return RoundOutcome(
        dense=dense,
        sparse=sparse,
        metrics=metrics,
        num_examples=report.samples_used,
        bytes_sent=device.ledger.bytes_sent - at_start.bytes_sent,
        bytes_received=device.ledger.bytes_received - at_start.bytes_received,
        energy_j=cost.energy_j,
    )
