"""One reply screening for every strategy: what a round may aggregate, checked once, with one error type.

A device's reply reaches a strategy through any grid (Flower simulation, a
SuperLink, MQTT). Whatever carried it, the strategy must not let one broken
or malicious device stop the round or poison θ. So every strategy screens
its replies here, once:

- error replies are dropped (a device's exception, a timeout);
- a second reply from the same node in one round is dropped (a replayed or
  duplicated message must not count twice);
- the update must match what the strategy sent: dense φ with exactly θ's
  names, shapes and dtypes, finite; or, where the strategy accepts it, a
  Top-P sparse delta over those names with valid indices and finite values;
- a step-size hypergradient, if present, must match θ too; a bad one is
  dropped alone and the update still counts.

Each refusal is logged with the node and its reason (:class:`ReplyRefused`).
Replies to messages this round did not send never get here: the grids pair
replies with the messages they pushed (the MQTT grid also drops a reply from
a device other than the one asked, by its broker-authenticated topic).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Message, MetricRecord

from edge import record_keys as keys
from edge import weights as W
from edge.flower_records import from_array_record
from edge.sparse_records import sparse_from_array_record
from edge.step_sizes import scale_spec
from edge.validation import InvalidInputError, WeightSpec, check_weights
from edge.wire.sparse import SparseTensor, top_p_sparsify

log = logging.getLogger(__name__)


class ReplyRefused(InvalidInputError):
    """A reply a strategy will not aggregate, and why."""


@dataclass(frozen=True)
class ScreenedReply:
    """A reply fit to aggregate: its node, its update, its metrics and (if sent and valid) its hypergradient."""

    node: int
    weights: dict[str, np.ndarray] | None  # dense φ (when screened without ``sparse``)
    delta: dict[str, SparseTensor] | None  # φ − θ as sparse tensors (when screened with ``sparse``)
    metrics: MetricRecord
    hypergradient: dict[str, np.ndarray] | None = None


def _spec(reference: Mapping[str, np.ndarray]) -> WeightSpec:
    return {k: (np.shape(v), np.asarray(v).dtype) for k, v in reference.items()}


def _update(message: Message, reference: Mapping[str, np.ndarray], sparse: bool) -> tuple[dict | None, dict | None]:
    records = message.content.array_records
    spec = _spec(reference)
    try:
        if sparse and keys.SPARSE_DELTA in records:
            return None, sparse_from_array_record(records[keys.SPARSE_DELTA], spec)
        if keys.ARRAYS not in records:
            expected = f"'{keys.SPARSE_DELTA}' or '{keys.ARRAYS}'" if sparse else f"'{keys.ARRAYS}'"
            raise ReplyRefused(f"no {expected} record")
        phi = check_weights(from_array_record(records[keys.ARRAYS]), spec)
    except ReplyRefused:
        raise
    except InvalidInputError as exc:
        raise ReplyRefused(str(exc)) from exc
    if sparse:  # a dense reply to a sparse-capable strategy: all of its entries, as a delta
        return None, top_p_sparsify(W.subtract(phi, dict(reference)), 1.0)
    return phi, None


def _hypergradient(message: Message, reference: Mapping[str, np.ndarray], node: int) -> dict[str, np.ndarray] | None:
    record = message.content.array_records.get(keys.HYPERGRADIENT)
    if record is None:
        return None
    try:
        return check_weights(from_array_record(record), scale_spec(reference))
    except InvalidInputError as exc:
        log.warning("node %s step-size hypergradient refused: %s", node, exc)
        return None


def screen_replies(
    replies: Iterable[Message],
    reference: Mapping[str, np.ndarray],
    *,
    sparse: bool = False,
    hypergradients: bool = False,
) -> list[ScreenedReply]:
    """The replies fit to aggregate against ``reference`` (θ as sent), in the order they came; the rest logged.

    ``sparse``: accept Top-P sparse deltas (TinyMetaFed) and return every update as one.
    ``hypergradients``: also screen each accepted reply's step-size hypergradient.
    """
    accepted: list[ScreenedReply] = []
    seen: set[int] = set()
    for message in replies:
        node = message.metadata.src_node_id
        if message.has_error():
            log.warning("node %s replied with an error: %s", node, message.error.reason)
            continue
        if node in seen:
            log.warning("node %s replied twice this round; the duplicate is dropped", node)
            continue
        try:
            weights, delta = _update(message, reference, sparse)
        except ReplyRefused as exc:
            log.warning("node %s reply refused: %s", node, exc)
            continue
        seen.add(node)
        metrics = message.content.metric_records.get(keys.METRICS, MetricRecord())
        hyper = _hypergradient(message, reference, node) if hypergradients else None
        accepted.append(ScreenedReply(node, weights, delta, metrics, hyper))
    return accepted
