"""Pieces every TinyFleet strategy shares: reproducible sampling with a deadline, reply screening.

Why sampling needs care: Flower's simulation engine (and a SuperLink) gives
every node a fresh random 64-bit id each run, and which device a node plays
(its ``partition-id``) is unrelated to that id. Sampling over sorted node ids
with a seeded RNG therefore still picks different *devices* every run. The
:class:`DeviceOrderedGrid` asks each node once which device it plays and lists
nodes in device order, and the strategies draw each round's sample from that
order with an RNG seeded by (seed, absolute round): the same settings pick
the same devices every round of every run, and a resumed run picks what an
uninterrupted one would have.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from edge import record_keys as keys

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


def round_rng(seed: int, absolute_round: int, purpose: str = "train") -> random.Random:
    """The sampling RNG of one round: a function of (seed, round, purpose) only, so resuming does not change it."""
    return random.Random(f"tinyfleet-sample/{purpose}/{seed}/{absolute_round}")


def ordered_node_ids(grid: Grid, nodes: Iterable[int]) -> list[int]:
    """``nodes`` in the grid's canonical order: by device for a :class:`DeviceOrderedGrid`, else by node id.

    MQTT node ids are hashes of device ids, stable across runs, so sorting them is enough there.
    """
    if isinstance(grid, DeviceOrderedGrid):
        return grid.in_device_order(nodes)
    return sorted(nodes)


def sample_node_ids(grid: Grid, count: int, minimum: int, timeout_s: float, rng: random.Random) -> list[int]:
    nodes = wait_for_nodes(grid, max(minimum, count), timeout_s)
    return rng.sample(ordered_node_ids(grid, nodes), count)


class DeviceOrderedGrid(Grid):
    """A Flower grid whose nodes are listed, and whose replies are returned, in the order of their devices.

    On first sight of a node it sends it one ``query`` message carrying
    ``config`` (the same round configuration a training request carries, so
    the node resolves its device exactly as it will when training) and reads
    the device seed from the reply's ``device-seed`` metric. Nodes that do not
    answer are listed after the known ones, by node id, and are not asked
    again. Replies of a round are sorted the same way, so an average over them
    adds the same numbers in the same order every run (bit-identical θ).
    Everything else is delegated to the wrapped grid (set e.g. the
    simulation's ``pull_interval`` on it before wrapping).
    """

    def __init__(self, grid: Grid, config: ConfigRecord, timeout_s: float) -> None:
        self.grid = grid
        self._config = config
        self._timeout_s = timeout_s
        self._device: dict[int, int | None] = {}

    def device_of(self, node_id: int) -> int | None:
        """The device seed ``node_id`` said it plays (None if it has not answered)."""
        return self._device.get(node_id)

    def _key(self, node_id: int) -> tuple[int, int]:
        device = self._device.get(node_id)
        return (0, device) if device is not None else (1, node_id)

    def in_device_order(self, nodes: Iterable[int]) -> list[int]:
        return sorted(nodes, key=self._key)

    def _discover(self, nodes: list[int]) -> None:
        record = RecordDict({keys.CONFIG: ConfigRecord(dict(self._config))})
        asked = [Message(content=record, message_type=MessageType.QUERY, dst_node_id=n) for n in nodes]
        for node in nodes:
            self._device[node] = None  # asked once, whatever the answer
        for reply in self.grid.send_and_receive(asked, timeout=self._timeout_s):
            if reply.has_error() or keys.METRICS not in reply.content.metric_records:
                continue
            seed = reply.content.metric_records[keys.METRICS].get(keys.DEVICE_SEED)
            if isinstance(seed, (int, float)):
                self._device[reply.metadata.src_node_id] = int(seed)
        missing = [n for n in nodes if self._device[n] is None]
        if missing:
            log.warning("%d node(s) did not say which device they play; they are sampled after the others", len(missing))

    def get_node_ids(self) -> list[int]:
        nodes = list(self.grid.get_node_ids())
        unknown = [n for n in nodes if n not in self._device]
        if unknown:
            self._discover(sorted(unknown))
        return self.in_device_order(nodes)

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(  # type: ignore[no-untyped-def]
        self, content, message_type, dst_node_id, group_id, ttl=None
    ) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        return sorted(replies, key=lambda m: self._key(m.metadata.src_node_id))


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
