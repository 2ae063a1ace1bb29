"""Flower's FedAvg, unchanged except that it draws its devices reproducibly.

Flower's ``FedAvg.configure_train`` samples node ids with the process-wide
``random`` module. Seeding that module does not make a run repeatable: node ids
are random per run (so the same positions are different devices), and anything
else in the server process that draws from ``random`` shifts the sequence.
This subclass draws the same number of nodes, uniformly without replacement as
Flower does, but from the grid's device order
(:func:`server.strategies.common.ordered_node_ids`) with an RNG of its own
seeded by (seed, round). Local training, the example-weighted average and the
metrics are Flower's own: the baseline stays FedAvg as practitioners run it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from server.strategies.common import round_rng, sample_node_ids

log = logging.getLogger(__name__)


class SeededFedAvg(FedAvg):
    """``FedAvg`` whose per-round sample is a function of (``seed``, absolute round) and the devices present."""

    def __init__(self, *, seed: int = 0, round_offset: int = 0, node_timeout_s: float = 120.0, **fedavg: Any) -> None:
        super().__init__(**fedavg)
        self.seed = seed
        self.round_offset = round_offset
        self.node_timeout_s = node_timeout_s

    def _sample(self, grid: Grid, server_round: int, fraction: float, minimum: int, purpose: str) -> list[int]:
        """Flower's sample size rule (``max(int(n · fraction), minimum)``), drawn with our RNG."""
        available = len(list(grid.get_node_ids()))
        size = max(int(available * fraction), minimum)
        rng = round_rng(self.seed, server_round + self.round_offset, purpose)
        return sample_node_ids(grid, size, self.min_available_nodes, self.node_timeout_s, rng)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.fraction_train == 0.0:
            return []
        node_ids = self._sample(grid, server_round, self.fraction_train, self.min_train_nodes, MessageType.TRAIN)
        # Flower's FedAvg tells devices the run-relative round; the absolute one keeps a resumed
        # run's devices on fresh samples (devices key their stream by it) and changes nothing else.
        config["server-round"] = server_round + self.round_offset
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, node_ids, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.fraction_evaluate == 0.0:
            return []
        node_ids = self._sample(grid, server_round, self.fraction_evaluate, self.min_evaluate_nodes, MessageType.EVALUATE)
        config["server-round"] = server_round + self.round_offset
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, node_ids, MessageType.EVALUATE)
