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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge import record_keys as keys
from edge.wire import MessageKind, TaskAssignment, decode_weights, encode_weights
from firmware_sim.device import SimulatedDevice
from firmware_sim.device_round import RoundPlan, run_round, shared_spec


@dataclass(frozen=True)
class RoundResult:
    update: bytes  # UPDATE payload to publish
    telemetry: dict[str, float | int | str]


def run_task(
    device: SimulatedDevice, private_init: dict[str, np.ndarray], task_json: bytes, model: bytes
) -> RoundResult:
    """One round on ``device`` (model deployed); raises WireFormatError for a task or model it refuses."""
    task = TaskAssignment.from_json(task_json)
    learner = device.learner
    assert learner is not None, "deploy a model first"
    evaluate = task.hyperparameters.get(keys.MESSAGE_TYPE) == "evaluate"
    plan = RoundPlan.from_hyperparameters(task.hyperparameters, top_p=task.top_p, evaluate=evaluate)
    spec = shared_spec(learner, plan.private_names)
    theta = decode_weights(model, spec, expected_kind=MessageKind.MODEL, expected_round_id=task.round_id).dense

    outcome = run_round(device, private_init, theta, plan, received_bytes=len(model) + len(task_json))
    update = encode_weights(
        outcome.dense, sparse=outcome.sparse, round_id=task.round_id, device_id=device.device_id,
        num_examples=outcome.num_examples, metrics=outcome.metrics,
    )  # fmt: skip
    telemetry = {
        keys.BYTES_SENT: outcome.bytes_sent,
        keys.BYTES_RECEIVED: outcome.bytes_received,
        keys.DEVICE_ENERGY_J: outcome.energy_j,
        keys.PROFILE: device.profile.name,
        "round-id": task.round_id,
    }
    return RoundResult(update, telemetry)
