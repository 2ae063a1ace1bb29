"""Flower messages <-> wire protocol, for the MQTT grid; no MQTT client here.

The grid hands a strategy's ``Message`` to :func:`to_wire` (MODEL payload +
JSON task) and turns a device's UPDATE payload back into a Flower reply with
:func:`reply_from_update`. Kept apart from the transport so the translation is
tested without a broker, and so the refusal rules live in one place:

- the reply carries exactly what was asked: names and shapes of the θ that
  was sent (a sparse update is checked against its dense shape), nothing for
  an evaluation;
- a sparse update becomes a ``sparse-delta`` record when the task asked for
  Top-P (TinyMetaFed applies it sparsely), otherwise φ = θ + δ in ``arrays``
  (what a Flower ClientApp sends, so TinyReptile runs unchanged);
- bytes are counted from the actual payloads: ``bytes-received`` is the MODEL
  payload plus the task JSON the device got, ``bytes-sent`` the UPDATE;
- every reply names the device it came from (:data:`PARTICIPANT` config
  record), taken from the topic the broker authenticated, not from the
  payload, so a round's PROV-O provenance can list its participants
  (:func:`server.registry_link.participants_of`). Flower-path replies name
  theirs with the ``device-seed`` metric instead.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.sparse_records import sparse_to_array_record
from edge.wire import DEFAULT_MAX_PAYLOAD, MessageKind, SparseTensor, TaskAssignment
from edge.wire import apply_sparse, check_spec, decode_weights, encode_model
from edge.wire.control import MAX_HYPERPARAMETERS, MAX_STRING_LEN

log = logging.getLogger(__name__)

MESSAGE_TYPE = keys.MESSAGE_TYPE  # task hyperparameter: "train" or "evaluate"
#: Config record of a reply naming the device that sent it, under :data:`DEVICE_ID`.
PARTICIPANT = "participant"
DEVICE_ID = "device-id"


def node_id_of(device_id: str) -> int:
    """A stable 63-bit Flower node id for a device id, the same after a server restart."""
    value = int.from_bytes(hashlib.sha256(device_id.encode("ascii")).digest()[:8], "little") >> 1
    return value if value > 1 else value + 2  # 0 is invalid and 1 is the SuperLink's own id


@dataclass(frozen=True)
class WireRequest:
    """What the grid publishes for one Flower message, and what it needs to read the reply."""

    message: Message
    device_id: str
    round_id: int
    model: bytes
    task: bytes
    theta: dict[str, np.ndarray]
    sparse_reply: bool  # the task asked for Top-P; keep the reply sparse
    evaluate: bool


def _hyperparameters(config: ConfigRecord, message_type: str) -> dict[str, int | float | bool | str]:
    out: dict[str, int | float | bool | str] = {MESSAGE_TYPE: message_type}
    for name, value in config.items():
        if name == keys.TOP_P:
            continue
        if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= MAX_STRING_LEN):
            out[name] = value
        else:
            log.warning("config entry %r (%s) cannot travel in a task and is not sent", name, type(value).__name__)
    if len(out) > MAX_HYPERPARAMETERS:
        raise ValueError(f"{len(out)} task hyperparameters > {MAX_HYPERPARAMETERS}")
    return out


def to_wire(
    message: Message, device_id: str, round_id: int, deadline_s: float, max_size: int = DEFAULT_MAX_PAYLOAD
) -> WireRequest:
    """MODEL payload (θ as sent by the strategy) and task JSON for one message; raises on what cannot be sent."""
    content = message.content
    theta = from_array_record(content.array_records[keys.ARRAYS]) if keys.ARRAYS in content.array_records else {}
    config = content.config_records.get(keys.CONFIG, ConfigRecord())
    message_type = message.metadata.message_type
    evaluate = message_type == MessageType.EVALUATE
    top_p = config.get(keys.TOP_P)
    top_p = float(top_p) if isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and 0 < top_p < 1 else None
    task = TaskAssignment(
        round_id=round_id,
        deadline_s=deadline_s,
        hyperparameters=_hyperparameters(config, "evaluate" if evaluate else "train"),
        top_p=top_p,
    )
    return WireRequest(
        message=message,
        device_id=device_id,
        round_id=round_id,
        model=encode_model(theta, round_id=round_id, max_size=max_size),
        task=task.to_json(),
        theta=theta,
        sparse_reply=top_p is not None,
        evaluate=evaluate,
    )


def reply_from_update(request: WireRequest, payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD) -> Message:
    """The Flower reply for a device's UPDATE payload; raises ``WireFormatError`` (drop it, log the code)."""
    update = decode_weights(
        payload,
        expected_kind=MessageKind.UPDATE,
        expected_round_id=request.round_id,
        expected_device_id=request.device_id,
        max_size=max_size,
    )
    spec = {} if request.evaluate else {k: (v.shape, v.dtype) for k, v in request.theta.items()}
    check_spec(update.tensors, spec)
    metrics = MetricRecord({name: float(value) for name, value in update.metrics.items()})
    metrics[keys.NUM_EXAMPLES] = update.num_examples
    metrics[keys.BYTES_RECEIVED] = len(request.model) + len(request.task)
    metrics[keys.BYTES_SENT] = len(payload)
    content = RecordDict({keys.METRICS: metrics, PARTICIPANT: ConfigRecord({DEVICE_ID: request.device_id})})
    if not request.evaluate:
        sparse = {
            name: value if isinstance(value, SparseTensor) else _all_entries(value)
            for name, value in update.tensors.items()
        }
        if request.sparse_reply:
            content[keys.SPARSE_DELTA] = sparse_to_array_record(sparse)
        else:
            content[keys.ARRAYS] = to_array_record(apply_sparse(request.theta, sparse, 1.0))
    return Message(content=content, reply_to=request.message)


def reply_device_id(message: Message) -> str | None:
    """The device an MQTT-path reply came from (see :data:`PARTICIPANT`); None for other replies."""
    if message.has_error():
        return None
    record = message.content.config_records.get(PARTICIPANT)
    value = record.get(DEVICE_ID) if record is not None else None
    return value if isinstance(value, str) and value else None


def _all_entries(array: np.ndarray) -> SparseTensor:
    flat = np.asarray(array).reshape(-1)
    return SparseTensor(array.shape, np.arange(flat.size, dtype=np.uint32), flat.copy())


__all__ = ["DEVICE_ID", "MESSAGE_TYPE", "PARTICIPANT", "WireRequest", "node_id_of", "reply_device_id", "reply_from_update", "to_wire"]
