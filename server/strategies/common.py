"""Pieces every TinyFleet strategy shares: sampling with a deadline, reply screening."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import Message, MetricRecord
from flwr.serverapp import Grid

from edge import record_keys as keys
from edge.flower_records import from_array_record
from edge.validation import InvalidInputError, check_weights

log = logging.getLogger(__name__)


def wait_for_nodes(grid: Grid, minimum: int, timeout_s: float, poll_s: float = 0.2) -> list[int]:
    """Node ids once at least ``minimum`` are connected; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= minimum:
            return nodes
        if time.monotonic() >= deadline:
            raise TimeoutError(f"only {len(nodes)} of the {minimum} required nodes connected within {timeout_s:.0f} s")
        time.sleep(poll_s)


def sample_node_ids(grid: Grid, count: int, minimum: int, timeout_s: float, rng: random.Random) -> list[int]:
    nodes = wait_for_nodes(grid, max(minimum, count), timeout_s)
    return rng.sample(sorted(nodes), count)


def screen_replies(
    replies: Iterable[Message], reference: Mapping[str, np.ndarray]
) -> list[tuple[int, dict[str, np.ndarray], MetricRecord]]:
    """Keep replies whose weights match ``reference`` in names, shapes, dtypes and are finite.

    A refused reply is logged with its reason and dropped: one broken or
    malicious device must not stop the round or poison θ.
    """
    spec = {k: (v.shape, v.dtype) for k, v in reference.items()}
    accepted = []
    for message in replies:
        node = message.metadata.src_node_id
        if message.has_error():
            log.warning("node %s replied with an error: %s", node, message.error.reason)
            continue
        content = message.content
        if keys.ARRAYS not in content.array_records:
            log.warning("node %s reply has no '%s' record; dropped", node, keys.ARRAYS)
            continue
        try:
            weights = check_weights(from_array_record(content.array_records[keys.ARRAYS]), spec)
        except InvalidInputError as exc:
            log.warning("node %s reply refused: %s", node, exc)
            continue
        metrics = content.metric_records.get(keys.METRICS, MetricRecord())
        accepted.append((node, weights, metrics))
    return accepted


def mean_metrics(metrics: list[MetricRecord], weight_key: str = keys.NUM_EXAMPLES) -> dict[str, float]:
    """Example-weighted means of losses; sums of counters (bytes, samples, energy)."""
    summed = {keys.SAMPLES_USED, keys.BYTES_RECEIVED, keys.BYTES_SENT, keys.DEVICE_ENERGY_J, keys.NUM_EXAMPLES}
    out: dict[str, float] = {}
    weights = [float(m.get(weight_key, 1.0)) for m in metrics]
    total = sum(weights) or 1.0
    names = sorted({k for m in metrics for k in m})
    for name in names:
        if name == keys.DEVICE_SEED:  # an identity, not a quantity
            continue
        values = [(float(m[name]), w) for m, w in zip(metrics, weights) if name in m and isinstance(m[name], (int, float))]
        if not values:
            continue
        if name in summed:
            out[name] = float(sum(v for v, _ in values))
        else:
            finite = [(v, w) for v, w in values if np.isfinite(v)]
            if finite:
                out[name] = float(sum(v * w for v, w in finite) / (sum(w for _, w in finite) or total))
    return out
