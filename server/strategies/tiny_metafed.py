"""TinyMetaFed: TinyReptile with partial local reconstruction and Top-P% updates.

Ren et al., arXiv 2307.06822. Three changes to :class:`TinyReptile`, nothing else:

1. **Partial local reconstruction.** The weights named in ``private_names``
   (the head by default) are never sent down nor up. Each device rebuilds them
   from its own local initialisation on its first samples, then adapts the
   shared part (:func:`edge.reconstruction.reconstruct_and_adapt`). The server
   keeps its copy of the private part untouched: it is only the shape (and the
   local init) that ships with the firmware.
2. **Top-P% selective communication.** A device replies with the ``top_p``
   fraction of largest-magnitude entries of φ − θ (shared part) as a sparse
   update (:mod:`edge.sparse_records`); the server sums the replies sparsely and
   applies them once:

       θ_shared ← θ_shared + (ε_t / n) · Σ_k sparse(φ_k − θ_shared)

   A dense reply (``arrays`` = φ, e.g. ``top_p = 1``) is accepted too.
3. **Cosine-annealed ε_t** by default (``anneal="cosine"``).

Online learning is unchanged from TinyReptile: each sample is seen once.
Bytes sent and received per device per round are read from each reply's
metrics (measured from the payloads by the MQTT grid or the device) and kept
in :attr:`TinyMetaFed.traffic`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
from flwr.serverapp import Grid

from edge import record_keys as keys
from edge import weights as W
from edge.flower_records import from_array_record, to_array_record
from edge.reconstruction import RECONSTRUCTION_RULES, split_weights
from server.strategies.common import mean_metrics
from server.strategies.screening import screen_replies
from server.strategies.sparse_math import apply_sparse, sum_sparse
from server.strategies.tiny_reptile import CLIENTS, META_STEP_SIZE, MetaConfig, TinyReptile

log = logging.getLogger(__name__)

UPLINK_DENSITY = "uplink-density"  # fraction of shared entries the accepted replies carried


@dataclass(frozen=True)
class TinyMetaFedConfig(MetaConfig):
    """The shared outer loop (:class:`MetaConfig`) plus TinyMetaFed's own: the private part, its rebuilding, Top-P."""

    private_names: tuple[str, ...] = ("w2", "b2")  # the 1-40-40-1 MLP's head
    top_p: float = 0.1  # kept fraction of update entries; 1.0 = dense updates
    reconstruction_samples: int = 5
    reconstruction_lr: float = 0.02
    # "sgd": the private part by SGD from the device's init; "imprint": a classifier's private output layer
    # written from class means (edge.imprinting), no rate.
    reconstruction_rule: str = "sgd"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p is the kept fraction in (0, 1], e.g. 0.1 for Top-10%; got {self.top_p}")
        if self.reconstruction_samples < 0 or self.reconstruction_lr < 0:
            raise ValueError("reconstruction_samples and reconstruction_lr must be >= 0")
        if self.reconstruction_rule not in RECONSTRUCTION_RULES:
            raise ValueError(f"reconstruction_rule {self.reconstruction_rule!r} is not one of {RECONSTRUCTION_RULES}")
        if any("," in name for name in self.private_names):
            raise ValueError("private weight names must not contain ','")


class TinyMetaFed(TinyReptile):
    """Flower Message-API strategy; only configure_*/aggregate_train differ from TinyReptile."""

    config: TinyMetaFedConfig

    def __init__(self, config: TinyMetaFedConfig = TinyMetaFedConfig(), round_offset: int = 0) -> None:
        super().__init__(config, round_offset)
        self.traffic: dict[int, dict[int, dict[str, float]]] = {}  # round -> node -> bytes sent/received

    def summary(self) -> None:
        log.info("TinyMetaFed %s (round offset %d)", self.config, self.round_offset)

    def _shared_request(self, arrays: ArrayRecord, config: ConfigRecord) -> tuple[ArrayRecord, ConfigRecord]:
        """θ without the private part, and a copy of ``config`` telling devices how to rebuild it."""
        shared, _ = split_weights(from_array_record(arrays), self.config.private_names)
        sent = ConfigRecord(dict(config))
        sent[keys.TOP_P] = self.config.top_p
        sent[keys.PRIVATE_NAMES] = ",".join(self.config.private_names)
        sent[keys.RECONSTRUCTION_SAMPLES] = self.config.reconstruction_samples
        sent[keys.RECONSTRUCTION_LR] = self.config.reconstruction_lr
        if self.config.reconstruction_rule != "sgd":  # absent means SGD: older firmware sees the frames it knows
            sent[keys.RECONSTRUCTION_RULE] = self.config.reconstruction_rule
        return to_array_record(shared), sent

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._theta = from_array_record(arrays)
        shared, sent = self._shared_request(arrays, config)
        return self._messages(server_round, shared, sent, grid, self.config.clients_per_round, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.config.evaluate_clients == 0:
            return []
        shared, sent = self._shared_request(arrays, config)
        return self._messages(server_round, shared, sent, grid, self.config.evaluate_clients, MessageType.EVALUATE)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self._theta is None:
            raise RuntimeError("aggregate_train called before configure_train")
        shared, private = split_weights(self._theta, self.config.private_names)
        accepted = screen_replies(replies, shared, sparse=True)
        absolute = server_round + self.round_offset
        if not accepted:
            log.warning("round %d: no usable reply; θ unchanged", absolute)
            return None, None
        epsilon = self.epsilon(server_round)
        total = sum_sparse([r.delta for r in accepted if r.delta is not None])
        if self.config.outer_momentum > 0.0:  # the momentum buffer is dense: it remembers every entry ever sent
            direction = apply_sparse({k: np.zeros_like(v) for k, v in shared.items()}, total, 1.0 / len(accepted))
            shared = W.add(shared, W.scale(self.momentum_step(direction), epsilon))
        else:
            shared = apply_sparse(shared, total, epsilon / len(accepted))
        self._theta = {name: (shared[name] if name in shared else private[name]) for name in self._theta}
        self.traffic[absolute] = {
            r.node: {k: float(r.metrics[k]) for k in (keys.BYTES_RECEIVED, keys.BYTES_SENT) if k in r.metrics} for r in accepted
        }
        metrics = mean_metrics([r.metrics for r in accepted])
        metrics[META_STEP_SIZE] = epsilon
        metrics[CLIENTS] = len(accepted)
        n_shared = sum(v.size for v in shared.values()) or 1
        metrics[UPLINK_DENSITY] = sum(st.nnz for r in accepted for st in (r.delta or {}).values()) / (n_shared * len(accepted))
        return to_array_record(self._theta), MetricRecord(metrics)
