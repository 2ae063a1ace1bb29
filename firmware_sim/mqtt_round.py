"""What a simulated MCU does with one task: bytes in, bytes out, no MQTT here.

Given the MODEL payload and the task JSON it received, the device checks the
model against its own firmware's weight table (names, shapes, dtypes), adapts
online (with partial local reconstruction when the task names private
weights), and builds its UPDATE payload (Top-P sparse if the task asks), all
through :mod:`edge.wire` like a C firmware would. Its ledger books the bytes
actually received and sent and the compute; the energy follows from the
profile. Anything refused raises :class:`WireFormatError` before any state
changes, so a bad packet costs the device nothing but the radio time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge import record_keys as keys
from edge.reconstruction import parse_private_names, reconstruct_and_adapt, split_weights
from edge.wire import MessageKind, TaskAssignment, WireFormatError, decode_weights, encode_weights, encoded_size
from edge.wire import top_p_sparsify
from firmware_sim.device import Ledger, SimulatedDevice


@dataclass(frozen=True)
class RoundResult:
    update: bytes  # UPDATE payload to publish
    telemetry: dict[str, float | int | str]


def _int(task: TaskAssignment, key: str, default: int) -> int:
    value = task.hyperparameters.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise WireFormatError(WireFormatError.BAD_FIELD, f"task hyperparameter {key} = {value!r} is not a count")
    return int(value)


def _float(task: TaskAssignment, key: str, default: float) -> float:
    value = task.hyperparameters.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"task hyperparameter {key} = {value!r} is out of range")
    return float(value)


def run_task(
    device: SimulatedDevice, private_init: dict[str, np.ndarray], task_json: bytes, model: bytes
) -> RoundResult:
    """One round on ``device`` (model deployed); raises WireFormatError for a task or model it refuses."""
    task = TaskAssignment.from_json(task_json)
    learner = device.learner
    assert learner is not None, "deploy a model first"
    private_names = parse_private_names(str(task.hyperparameters.get(keys.PRIVATE_NAMES, "")))
    local_spec = dict(learner.weight_spec)
    unknown = sorted(set(private_names) - set(local_spec))
    if unknown:
        raise WireFormatError(WireFormatError.SPEC_MISMATCH, f"private names {unknown} are not weights of this firmware")
    shared_spec = {k: v for k, v in local_spec.items() if k not in private_names}
    theta = decode_weights(model, shared_spec, expected_kind=MessageKind.MODEL, expected_round_id=task.round_id).dense
    evaluate = task.hyperparameters.get(keys.MESSAGE_TYPE) == "evaluate"
    shots = _int(task, keys.STREAM_SAMPLES, 10)
    probe = _int(task, keys.PROBE_SAMPLES, 0)
    recon = _int(task, keys.RECONSTRUCTION_SAMPLES, 0) if private_names else 0
    lr = _float(task, keys.INNER_LEARNING_RATE, 0.02)

    at_start = Ledger(**vars(device.ledger))
    device.ledger.bytes_received += len(model) + len(task_json)
    _, private = split_weights(private_init, private_names) if private_names else ({}, {})
    phi, report = reconstruct_and_adapt(
        learner, theta, private, device.stream,
        reconstruction_samples=recon, reconstruction_lr=_float(task, keys.RECONSTRUCTION_LR, 0.02),
        shots=shots, learning_rate=lr, probe=probe,
    )
    device.charge_compute(steps=recon + shots, evaluations=2 * probe, samples=recon + shots + probe)

    dense: dict[str, np.ndarray] | None = None
    sparse = None
    if not evaluate:
        delta = {k: (phi[k] - theta[k]).astype(theta[k].dtype) for k in theta}
        if task.top_p is not None:
            sparse = top_p_sparsify(delta, task.top_p)
        else:
            dense = delta
    metrics = {
        keys.LOSS_BEFORE: report.loss_before,
        keys.LOSS_AFTER: report.loss_after,
        keys.PREQUENTIAL_LOSS: report.prequential_loss,
        keys.DEVICE_TIME_S: 0.0,
        keys.DEVICE_ENERGY_J: 0.0,
    }
    if private_names:
        metrics[keys.RECONSTRUCTION_LOSS] = report.reconstruction_loss
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}  # no probe -> no probe losses
    # the payload's size does not depend on the metric values, so energy can include the bytes it costs
    device.send(encoded_size(dense, sparse=sparse, device_id=device.device_id, metrics=metrics))
    cost = device.close_round(at_start)
    metrics[keys.DEVICE_TIME_S] = cost.compute_s + cost.radio_s
    metrics[keys.DEVICE_ENERGY_J] = cost.energy_j
    update = encode_weights(
        dense, sparse=sparse, round_id=task.round_id, device_id=device.device_id,
        num_examples=report.samples_used, metrics=metrics,
    )
    telemetry = {
        keys.BYTES_SENT: device.ledger.bytes_sent - at_start.bytes_sent,
        keys.BYTES_RECEIVED: device.ledger.bytes_received - at_start.bytes_received,
        keys.DEVICE_ENERGY_J: cost.energy_j,
        keys.PROFILE: device.profile.name,
        "round-id": task.round_id,
    }
    return RoundResult(update, telemetry)
