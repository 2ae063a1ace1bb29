"""The MQTT binding of the round contract, device side: bytes in, bytes out, no MQTT client here.

A device receives a TASK (JSON), a MODEL payload and, when the task measures
step sizes, a STEP_SIZES payload. This module decodes them into the round
contract's :class:`edge.round_contract.RoundRequest` and θ, checking θ against
the device's own firmware weight table (names, shapes, dtypes), runs the one
device round (:func:`edge.device_round.run_device_round`, the function the
Flower ClientApps call too) and packs its :class:`edge.round_contract.RoundReply`
as an UPDATE payload (φ − θ dense, or the Top-P sparse delta) and, if step
sizes came, a HYPERGRADIENT payload to publish before it, like a C firmware
would. The bytes the device books are exactly these payloads' lengths.
Anything refused raises :class:`WireFormatError` before any state changes,
so a bad packet costs the device nothing but the radio time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge import record_keys as keys
from edge.device import SimulatedDevice
from edge.device_round import run_device_round, shared_spec
from edge.round_contract import RoundReply, RoundRequest
from edge.wire import DEFAULT_MAX_PAYLOAD, MessageKind, TaskAssignment, WireFormatError, decode_step_sizes, decode_weights
from edge.wire import encode_hypergradient, encode_weights

log = logging.getLogger(__name__)

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class RoundResult:
    update: bytes  # UPDATE payload to publish
    telemetry: dict[str, float | int | str]
    hypergradient: bytes | None = None  # HYPERGRADIENT payload to publish before the UPDATE, if step sizes came
    reply: RoundReply | None = None  # the contract's reply these payloads pack


def request_of(task: TaskAssignment, *, measures_step_sizes: bool = True) -> RoundRequest:
    """The round contract's request a TASK carries; WireFormatError if refused.

    ``measures_step_sizes=False`` plays firmware from before the feature: it
    ignores the step-size hyperparameters and trains as it always did.
    """
    values: dict[str, object] = dict(task.hyperparameters)
    if task.top_p is not None:
        values[keys.TOP_P] = task.top_p
    request = RoundRequest.from_hyperparameters(values)
    return request if measures_step_sizes else request.with_(step_sizes=None)


def expects_step_sizes(task: TaskAssignment) -> bool:
    """Whether a device waits for a STEP_SIZES payload for this task (a whole-model training round measuring them)."""
    try:
        return request_of(task).measures_step_sizes
    except WireFormatError:
        return False  # the round itself will refuse the task, with the reason


def run_task(
    device: SimulatedDevice,
    private_init: Mapping[str, np.ndarray],
    task_json: bytes,
    model: bytes,
    step_sizes: bytes | None = None,
    *,
    measures_step_sizes: bool = True,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    device_task: str | None = None,
) -> RoundResult:
    """One round on ``device`` (model deployed); raises WireFormatError for a task or payload it refuses.

    ``max_payload`` is the firmware's receive buffer: the cap on what it decodes and encodes. A device that
    knows its task (``device_task``) refuses a round for another one, naming both."""
    task = TaskAssignment.from_json(task_json)
    learner = device.learner
    assert learner is not None, "deploy a model first"
    request = request_of(task, measures_step_sizes=measures_step_sizes)
    asked = request.extras.get(keys.TASK)
    if device_task is not None and asked is not None and asked != device_task:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"this device learns {device_task}; the round is for task {asked!r}")
    spec = shared_spec(learner, request.private_names)
    theta = decode_weights(model, spec, expected_kind=MessageKind.MODEL, expected_round_id=task.round_id,
                           max_size=max_payload).dense
    received = len(model) + len(task_json)
    scales = None
    if request.measures_step_sizes:
        if step_sizes is None:
            raise WireFormatError(WireFormatError.BAD_FIELD, f"round {task.round_id} asks for step sizes but none came")
        scales = decode_step_sizes(step_sizes, spec, expected_round_id=task.round_id, max_size=max_payload)
        received += len(step_sizes)
    reply = run_device_round(device, request, theta, received_bytes=received, private_init=private_init, step_sizes=scales)
    update, hypergradient = encode_reply(reply, request, theta, task.round_id, max_payload)
    if request.radio:  # the device booked exactly what it publishes
        assert reply.bytes_sent == len(update) + len(hypergradient or b""), (reply.bytes_sent, len(update))
    telemetry = {
        keys.BYTES_SENT: reply.bytes_sent,
        keys.BYTES_RECEIVED: reply.bytes_received,
        keys.DEVICE_ENERGY_J: reply.energy_j,
        keys.PROFILE: device.profile.name,
        "round-id": task.round_id,
    }
    return RoundResult(update, telemetry, hypergradient, reply)


def encode_reply(
    reply: RoundReply, request: RoundRequest, theta: Mapping[str, np.ndarray], round_id: int,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> tuple[bytes, bytes | None]:
    """(UPDATE, HYPERGRADIENT or None) payloads of a reply; a dense reply travels as δ = φ − θ."""
    dense = None
    if reply.weights is not None:
        dense = {k: (reply.weights[k] - theta[k]).astype(theta[k].dtype) for k in theta}
    metrics = {**reply.metrics, keys.DEVICE_TIME_S: reply.time_s, keys.DEVICE_ENERGY_J: reply.energy_j}
    update = encode_weights(
        dense, sparse=reply.sparse_delta, round_id=round_id, device_id=reply.device_id,
        num_examples=reply.num_examples, metrics=metrics, max_size=max_payload,
    )  # fmt: skip
    hypergradient = None
    if reply.hypergradient is not None:
        assert reply.step_size_query_loss is not None and request.step_sizes is not None
        hypergradient = encode_hypergradient(
            reply.hypergradient, round_id=round_id, device_id=reply.device_id,
            num_examples=request.step_sizes.shots + request.step_sizes.query,
            metrics={keys.STEP_SIZE_QUERY_LOSS: reply.step_size_query_loss}, max_size=max_payload,
        )  # fmt: skip
    return update, hypergradient

