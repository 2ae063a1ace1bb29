"""What a simulated MCU does with one task: bytes in, bytes out, no MQTT here.

Given the MODEL payload and the task JSON it received, the device checks the
model against its own firmware's weight table (names, shapes, dtypes), runs
the transport-independent round of :mod:`firmware_sim.device_round` (partial
local reconstruction when the task names private weights, online adaptation,
Top-P sparse delta if the task asks) and packs its UPDATE payload through
:mod:`edge.wire` like a C firmware would. Its ledger books the bytes actually
received and sent and the compute; the energy follows from the profile.
Anything refused raises :class:`WireFormatError` before any state changes, so
a bad packet costs the device nothing but the radio time.

Meta-learned step sizes (TinyReptile with ``step_size_learning_rate`` > 0):
the task then names the step-size hyperparameters and a STEP_SIZES payload
comes with the MODEL. The device checks both before the round; after it, it
measures the hypergradient on its next samples with
:func:`measure_hypergradient`, the function the Flower ClientApp calls too,
and packs it as a HYPERGRADIENT payload to publish before its UPDATE. The
measurement's compute and bytes are part of the round's cost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge import record_keys as keys
from edge.learner import Learner
from edge.mlp import NumpyMLP, regression_gradients
from edge.mlp_classifier import MLPClassifier
from edge.reconstruction import parse_private_names
from edge.step_sizes import stream_hypergradient
from edge.wire import MessageKind, TaskAssignment, WireFormatError, decode_step_sizes, decode_weights
from edge.wire import encode_hypergradient, encode_weights
from firmware_sim.device import Ledger, SimulatedDevice
from firmware_sim.device_round import RoundOutcome, RoundPlan, run_round, shared_spec

log = logging.getLogger(__name__)

Weights = dict[str, np.ndarray]
STEP_SIZE_KEYS = (keys.STEP_SIZE_BASE_RATE, keys.STEP_SIZE_SHOTS, keys.STEP_SIZE_QUERY)


@dataclass(frozen=True)
class StepSizePlan:
    """What the server asked a device to measure for the step sizes this round, whatever the transport."""

    base_rate: float  # the shared adaptation rate the step sizes multiply
    shots: int  # online steps the hypergradient differentiates through
    query: int  # samples the adapted model is then scored on

    @staticmethod
    def requested(values: Mapping[str, object]) -> bool:
        """Whether a task's hyperparameters (or a Flower config) name a step-size measurement."""
        return any(key in values for key in STEP_SIZE_KEYS)

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, object], learner: Learner | None) -> StepSizePlan:
        """Parse and check the plan and that ``learner`` can carry it out; WireFormatError before anything changes."""
        shots, query = (_at_least_one(values, key) for key in (keys.STEP_SIZE_SHOTS, keys.STEP_SIZE_QUERY))
        rate = values.get(keys.STEP_SIZE_BASE_RATE)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and 0 < rate <= 10):
            raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.STEP_SIZE_BASE_RATE} = {rate!r} must be a rate in (0, 10]")
        if not isinstance(learner, NumpyMLP) or isinstance(learner, MLPClassifier):
            raise WireFormatError(
                WireFormatError.BAD_FIELD,
                f"learner {type(learner).__name__} cannot measure step-size hypergradients (needs the numpy regressor)",
            )
        return cls(float(rate), shots, query)


def _at_least_one(values: Mapping[str, object], key: str) -> int:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{key} = {value!r} must be a whole number >= 1")
    return int(value)


def measure_hypergradient(
    device: SimulatedDevice, theta: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray], plan: StepSizePlan
) -> tuple[Weights, float]:
    """d(query loss after K online steps from θ)/d(log step size) on the device's next K + Q samples, and that loss.

    Shared by the Flower ClientApp and the MQTT firmware so both measure the
    same thing on the same samples: the ones after the round's own, so θ's
    update and the step sizes' never see the same sample. Books the compute
    (3·K + Q gradient evaluations on K + Q samples) on the device's ledger;
    the transport books the bytes it moved. ``plan`` was checked against the
    device's learner (:meth:`StepSizePlan.from_hyperparameters`).
    """
    learner = device.learner
    assert isinstance(learner, NumpyMLP), "check the plan against the learner first"
    hypergradient, query_loss = stream_hypergradient(
        theta, scales, plan.base_rate, device.stream, plan.shots, plan.query, regression_gradients(learner.layer_sizes)
    )
    device.charge_compute(steps=3 * plan.shots + plan.query, evaluations=0, samples=plan.shots + plan.query)
    return hypergradient, query_loss


@dataclass(frozen=True)
class RoundResult:
    update: bytes  # UPDATE payload to publish
    telemetry: dict[str, float | int | str]
    hypergradient: bytes | None = None  # HYPERGRADIENT payload to publish before the UPDATE, if step sizes came


def expects_step_sizes(task: TaskAssignment) -> bool:
    """Whether a device waits for a STEP_SIZES payload for this task: a whole-model training round naming a
    step-size measurement. TinyMetaFed and evaluation rounds ignore step sizes, as on the Flower path."""
    values = task.hyperparameters
    return (
        StepSizePlan.requested(values)
        and values.get(keys.MESSAGE_TYPE) != "evaluate"
        and not parse_private_names(str(values.get(keys.PRIVATE_NAMES, "")))
    )


def run_task(
    device: SimulatedDevice,
    private_init: dict[str, np.ndarray],
    task_json: bytes,
    model: bytes,
    step_sizes: bytes | None = None,
    *,
    measures_step_sizes: bool = True,
) -> RoundResult:
    """One round on ``device`` (model deployed); raises WireFormatError for a task or payload it refuses.

    ``step_sizes`` is the round's STEP_SIZES payload; it is required when the
    task names a step-size measurement in a whole-model training round and
    ignored otherwise (a TinyMetaFed or evaluation round, as on the Flower path).
    ``measures_step_sizes=False`` plays firmware from before the feature: it
    ignores the step-size hyperparameters and trains as it always did.
    """
    task = TaskAssignment.from_json(task_json)
    learner = device.learner
    assert learner is not None, "deploy a model first"
    evaluate = task.hyperparameters.get(keys.MESSAGE_TYPE) == "evaluate"
    plan = RoundPlan.from_hyperparameters(task.hyperparameters, top_p=task.top_p, evaluate=evaluate)
    spec = shared_spec(learner, plan.private_names)
    theta = decode_weights(model, spec, expected_kind=MessageKind.MODEL, expected_round_id=task.round_id).dense
    measurement: tuple[StepSizePlan, Weights] | None = None
    received = len(model) + len(task_json)
    if measures_step_sizes and expects_step_sizes(task):
        step_plan = StepSizePlan.from_hyperparameters(task.hyperparameters, learner)
        if step_sizes is None:
            raise WireFormatError(WireFormatError.BAD_FIELD, f"round {task.round_id} asks for step sizes but none came")
        measurement = step_plan, decode_step_sizes(step_sizes, spec, expected_round_id=task.round_id)
        received += len(step_sizes)

    outcome = run_round(device, private_init, theta, plan, received_bytes=received)
    metrics, hypergradient, extra = outcome.metrics, None, Ledger()
    if measurement is not None:
        hypergradient, metrics, extra = _hypergradient_payload(device, theta, *measurement, task.round_id, outcome)
    update = encode_weights(
        outcome.dense, sparse=outcome.sparse, round_id=task.round_id, device_id=device.device_id,
        num_examples=outcome.num_examples, metrics=metrics,
    )  # fmt: skip
    telemetry = {
        keys.BYTES_SENT: outcome.bytes_sent + extra.bytes_sent,
        keys.BYTES_RECEIVED: outcome.bytes_received,
        keys.DEVICE_ENERGY_J: outcome.energy_j + extra.energy_j,
        keys.PROFILE: device.profile.name,
        "round-id": task.round_id,
    }
    return RoundResult(update, telemetry, hypergradient)


def _hypergradient_payload(
    device: SimulatedDevice, theta: Weights, plan: StepSizePlan, scales: Weights, round_id: int, outcome: RoundOutcome
) -> tuple[bytes | None, dict[str, float], Ledger]:
    """Measure, pack the HYPERGRADIENT, and add its cost to the round's: (payload, UPDATE metrics, extra cost).

    The round was closed by :func:`run_round`; the measurement and the bytes
    it sends are booked as the rest of the same round (one round on the ledger,
    its time and energy in the UPDATE's metrics). A hypergradient that cannot
    be sent (NaN after a diverged measurement) is dropped: the UPDATE still goes.
    """
    at = Ledger(**vars(device.ledger))
    hypergradient, query_loss = measure_hypergradient(device, theta, scales, plan)
    try:
        payload = encode_hypergradient(
            hypergradient, round_id=round_id, device_id=device.device_id, num_examples=plan.shots + plan.query,
            metrics={keys.STEP_SIZE_QUERY_LOSS: query_loss},
        )  # fmt: skip
    except WireFormatError as exc:
        log.warning("%s measured no usable hypergradient in round %d; its UPDATE goes alone: %s", device.device_id, round_id, exc)
        payload = None
    device.send(len(payload) if payload else 0)
    cost = device.close_round(at)
    device.ledger.rounds = at.rounds  # the same round: run_round counted it already
    metrics = dict(outcome.metrics)
    metrics[keys.DEVICE_TIME_S] += cost.compute_s + cost.radio_s
    metrics[keys.DEVICE_ENERGY_J] += cost.energy_j
    extra = Ledger(bytes_sent=device.ledger.bytes_sent - at.bytes_sent, energy_j=cost.energy_j)
    return payload, metrics, extra
