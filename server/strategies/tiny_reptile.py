"""TinyReptile: federated, online Reptile for fleets of tiny devices.

Ren et al., IJCNN 2023 (arXiv 2304.05201), after Nichol et al.'s Reptile. The
server keeps the meta-initialisation θ. Each round it sends θ to a few sampled
devices (one by default: a microcontroller fleet is rarely online at once);
each device adapts online on its own stream — one SGD step per sample, every
sample seen once — and returns φ. The server moves θ towards the mean φ:

    θ ← θ + ε_t · (mean(φ) − θ)

with ε_t annealed towards zero (optionally with heavy-ball momentum on the
Reptile direction d = mean φ − θ, ``outer_momentum`` μ > 0: m ← μ·m + d and
θ ← θ + ε_t·m, or with ``nesterov`` θ ← θ + ε_t·(d + μ·m); on the sine task
this reaches a given K-shot error in far fewer rounds), so θ becomes a point from which a few online
steps reach any device's task, rather than the average of the tasks (which
is what FedAvg converges to).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edge import record_keys as keys
from edge import weights as W
from edge.flower_records import from_array_record, to_array_record
from server.strategies.common import mean_metrics, round_rng, sample_node_ids
from server.strategies.screening import screen_replies
from server.strategies.schedules import Anneal, annealed_step_size
from server.strategies.step_size_learning import StepSizeLearning

log = logging.getLogger(__name__)

META_STEP_SIZE = "meta-step-size"
CLIENTS = "clients"
STEP_SIZE_CLIENTS = "step-size-clients"


@dataclass(frozen=True)
class MetaConfig:
    """What every meta-learning strategy shares: the outer loop's schedule and sampling, named as in Reptile.

    TinyReptile and TinyMetaFed each add their own fields to it; neither
    inherits a field it would have to refuse.
    """

    clients_per_round: int = 1
    meta_step_size: float = 1.0  # ε at round 1
    final_meta_step_size: float = 0.0  # ε at the last round
    anneal: Anneal = "cosine"
    outer_momentum: float = 0.0  # μ; 0 is the paper's plain outer step
    nesterov: bool = False  # look-ahead momentum: step along d + μ·m instead of m
    total_rounds: int = 1000  # the schedule's length, fixed across resumes
    evaluate_clients: int = 0  # devices asked for a federated evaluation each round
    min_available_nodes: int = 1
    node_timeout_s: float = 120.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clients_per_round < 1:
            raise ValueError("clients_per_round must be >= 1")
        if not 0.0 <= self.final_meta_step_size <= 1.0 or not 0.0 < self.meta_step_size <= 1.0:
            raise ValueError("meta step sizes must lie in (0, 1] (final: [0, 1])")
        if not 0.0 <= self.outer_momentum < 1.0:
            raise ValueError("outer_momentum must lie in [0, 1)")


@dataclass(frozen=True)
class TinyReptileConfig(MetaConfig):
    """TinyReptile's hyperparameters: the shared outer loop plus Meta-SGD step sizes."""

    # Meta-learned per-weight step sizes (Meta-SGD, edge/step_sizes.py): Adam rate on their log; 0 = off.
    step_size_learning_rate: float = 0.0
    step_size_base_rate: float = 0.02  # the devices' shared adaptation rate, which the step sizes multiply
    step_size_shots: int = 5  # online steps a device differentiates through (the K it will adapt with)
    step_size_query: int = 20  # fresh samples the adapted model is then scored on

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step_size_learning_rate < 0.0:
            raise ValueError("step_size_learning_rate must be >= 0 (0 turns step-size learning off)")


class TinyReptile(Strategy):
    """Flower Message-API strategy; ``round_offset`` continues a resumed run's schedule."""

    def __init__(self, config: MetaConfig = TinyReptileConfig(), round_offset: int = 0) -> None:
        self.config = config
        self.round_offset = round_offset
        self._theta: dict[str, np.ndarray] | None = None
        self._momentum: dict[str, np.ndarray] | None = None
        self.step_sizes: StepSizeLearning | None = None
        if isinstance(config, TinyReptileConfig) and config.step_size_learning_rate > 0.0:
            self.step_sizes = StepSizeLearning(
                config.step_size_learning_rate, config.step_size_base_rate, config.step_size_shots, config.step_size_query
            )

    def strategy_state(self) -> dict[str, np.ndarray]:
        """What a checkpoint must hold besides θ for a resumed run to continue identically."""
        state = {f"momentum/{k}": v for k, v in (self._momentum or {}).items()}
        return state | (self.step_sizes.state() if self.step_sizes else {})

    def restore_strategy_state(self, state: dict[str, np.ndarray]) -> None:
        momentum = {k.removeprefix("momentum/"): v for k, v in state.items() if k.startswith("momentum/")}
        self._momentum = momentum or None
        if self.step_sizes:
            self.step_sizes.restore(state)

    def epsilon(self, server_round: int) -> float:
        return annealed_step_size(
            server_round + self.round_offset,
            self.config.total_rounds,
            self.config.meta_step_size,
            self.config.final_meta_step_size,
            self.config.anneal,
        )

    def summary(self) -> None:
        log.info("TinyReptile %s (round offset %d)", asdict(self.config), self.round_offset)

    def _messages(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, count: int, kind: str
    ) -> list[Message]:
        # Devices are drawn over the grid's device order with an RNG of (seed, round): see common.py.
        rng = round_rng(self.config.seed, server_round + self.round_offset, kind)
        node_ids = sample_node_ids(grid, count, self.config.min_available_nodes, self.config.node_timeout_s, rng)
        sent_config = ConfigRecord(dict(config))  # never mutate the caller's config
        sent_config[keys.SERVER_ROUND] = server_round + self.round_offset
        record = RecordDict({keys.ARRAYS: arrays, keys.CONFIG: sent_config})
        if self.step_sizes and kind == MessageType.TRAIN and self._theta is not None:
            self.step_sizes.attach(record, sent_config, self._theta)
        return [Message(content=record, message_type=kind, dst_node_id=node) for node in node_ids]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._theta = from_array_record(arrays)
        return self._messages(server_round, arrays, config, grid, self.config.clients_per_round, MessageType.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self._theta is None:
            raise RuntimeError("aggregate_train called before configure_train")
        accepted = screen_replies(replies, self._theta, hypergradients=self.step_sizes is not None)
        if not accepted:
            log.warning("round %d: no usable reply; θ unchanged", server_round + self.round_offset)
            return None, None
        hypergradients = 0
        if self.step_sizes:
            gradients = [r.hypergradient for r in accepted if r.hypergradient is not None]
            hypergradients = self.step_sizes.update(gradients, self._theta)
        phi = W.mean([r.weights for r in accepted if r.weights is not None])
        epsilon = self.epsilon(server_round)
        if self.config.outer_momentum > 0.0:
            self._theta = W.add(self._theta, W.scale(self.momentum_step(W.subtract(phi, self._theta)), epsilon))
        else:
            self._theta = W.interpolate(self._theta, phi, epsilon)
        metrics = mean_metrics([r.metrics for r in accepted])
        metrics[META_STEP_SIZE] = epsilon
        metrics[CLIENTS] = len(accepted)
        if self.step_sizes:
            metrics[STEP_SIZE_CLIENTS] = hypergradients
        return to_array_record(self._theta), MetricRecord(metrics)

    def momentum_step(self, direction: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The step to scale by ε for this round's Reptile direction, with (Nesterov) outer momentum.

        m ← μ·m + d; the step is m, or d + μ·m with Nesterov's look-ahead. The
        buffer covers exactly the names in ``direction`` (TinyMetaFed: the shared part).
        """
        previous = self._momentum or {k: np.zeros_like(v) for k, v in direction.items()}
        mu = self.config.outer_momentum
        self._momentum = W.add(W.scale(previous, mu), direction)
        return W.add(direction, W.scale(self._momentum, mu)) if self.config.nesterov else self._momentum

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.config.evaluate_clients == 0:
            return []
        return self._messages(server_round, arrays, config, grid, self.config.evaluate_clients, MessageType.EVALUATE)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = [
            m.content.metric_records[keys.METRICS]
            for m in replies
            if not m.has_error() and keys.METRICS in m.content.metric_records
        ]
        return MetricRecord(mean_metrics(metrics)) if metrics else None
