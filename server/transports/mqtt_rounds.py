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
- meta-learned step sizes (a ``step-sizes`` record in the message) travel as a
  STEP_SIZES payload after the MODEL; the device's HYPERGRADIENT payload,
  checked on its own by :func:`hypergradient_from_payload`, becomes the
  reply's ``hypergradient`` record and ``step-size-query-loss`` metric
  (what a Flower ClientApp sends), its bytes counted in ``bytes-sent`` and the
  STEP_SIZES payload's in ``bytes-received``. A refused hypergradient never
  costs the UPDATE it came with;
- every reply names the device it came from (:data:`PARTICIPANT` config
  record), taken from the topic the broker authenticated, not from the
  payload, so a round's PROV-O provenance can list its participants
  (:func:`server.registry.registry_link.participants_of`). Flower-path replies name
  theirs with the ``device-seed`` metric instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from edge.round_contract import kept_fraction
from edge.identity import node_id_of  # re-exported: the grid names nodes by it
from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.sparse_records import sparse_to_array_record
from edge.step_sizes import scale_spec
from edge.wire import DEFAULT_MAX_PAYLOAD, MessageKind, SparseTensor, TaskAssignment, WireFormatError
from edge.wire import check_spec, decode_hypergradient, decode_weights, encode_model, encode_step_sizes
from edge.wire.control import MAX_HYPERPARAMETERS, MAX_STRING_LEN
from server.strategies.sparse_math import apply_sparse

log = logging.getLogger(__name__)

MESSAGE_TYPE = keys.MESSAGE_TYPE  # task hyperparameter: "train" or "evaluate"
#: Config record of a reply naming the device that sent it, under :data:`DEVICE_ID`.
PARTICIPANT = "participant"
DEVICE_ID = "device-id"


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
    step_sizes: bytes | None = None  # STEP_SIZES payload published after the MODEL, if the strategy sent step sizes

    @property
    def bytes_received(self) -> int:
        """What the device's radio received for this request."""
        return len(self.model) + len(self.task) + len(self.step_sizes or b"")


@dataclass(frozen=True)
class Hypergradient:
    """A device's checked HYPERGRADIENT payload, waiting for the UPDATE of the same round."""

    arrays: dict[str, np.ndarray]
    query_loss: float | None
    nbytes: int


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
    top_p = kept_fraction(config.get(keys.TOP_P))  # the contract's rule: a fraction inside (0, 1), else dense
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
        step_sizes=_step_sizes_payload(content, theta, round_id, max_size),
    )


def _step_sizes_payload(content: RecordDict, theta: dict[str, np.ndarray], round_id: int, max_size: int) -> bytes | None:
    """The STEP_SIZES payload of a request carrying step sizes (None without); refused unless they fit θ."""
    if keys.STEP_SIZES not in content.array_records:
        return None
    scales = from_array_record(content.array_records[keys.STEP_SIZES])
    check_spec(scales, scale_spec(theta))
    return encode_step_sizes(scales, round_id=round_id, max_size=max_size)


def hypergradient_from_payload(request: WireRequest, payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD) -> Hypergradient:
    """A device's HYPERGRADIENT for ``request``; raises ``WireFormatError`` (drop it alone, log the code).

    Refused unless the request sent step sizes, and unless it is dense,
    finite float32 with exactly θ's names and shapes, from the asked device, for its round.
    """
    if request.step_sizes is None:
        raise WireFormatError(WireFormatError.BAD_KIND, f"round {request.round_id} sent no step sizes; no hypergradient expected")
    message = decode_hypergradient(
        payload, scale_spec(request.theta), expected_round_id=request.round_id,
        expected_device_id=request.device_id, max_size=max_size,
    )  # fmt: skip
    return Hypergradient(dict(message.dense), message.metrics.get(keys.STEP_SIZE_QUERY_LOSS), len(payload))


def reply_from_update(
    request: WireRequest, payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD, hypergradient: Hypergradient | None = None
) -> Message:
    """The Flower reply for a device's UPDATE payload (and the HYPERGRADIENT it sent before, if any);
    raises ``WireFormatError`` (drop it, log the code)."""
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
    metrics[keys.BYTES_RECEIVED] = request.bytes_received
    metrics[keys.BYTES_SENT] = len(payload) + (hypergradient.nbytes if hypergradient else 0)
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
        if hypergradient is not None:
            content[keys.HYPERGRADIENT] = to_array_record(hypergradient.arrays)
            if hypergradient.query_loss is not None:
                metrics[keys.STEP_SIZE_QUERY_LOSS] = hypergradient.query_loss
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


__all__ = [
    "DEVICE_ID", "MESSAGE_TYPE", "PARTICIPANT", "Hypergradient", "WireRequest", "hypergradient_from_payload", "node_id_of",
    "reply_device_id", "reply_from_update", "to_wire",
]
