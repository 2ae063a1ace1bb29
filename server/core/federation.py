"""The ServerApp: one federation run with a named strategy, checkpointed every round.

The same ``run_federation`` drives Flower's simulation engine and a Flower
deployment (any ``Grid``). The meta-model is written to the checkpoint
directory after every round; on start, an existing checkpoint is resumed from
its round, with the ε schedule continuing where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from edge import record_keys as keys
from edge.flower_records import to_array_record
from edge.mlp import init_mlp_weights
from server.core.checkpoint import Checkpointer
from server.core.round_loop import PARTICIPANT_DEVICES, PARTICIPANTS, Observer, RoundCallback, RoundReport, StatefulStrategy
from server.core.round_loop import callback_observer, run_rounds
from server.strategies.common import DeviceOrderedGrid, wait_for_nodes
from server.strategies.seeded_fedavg import SeededFedAvg
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig
from server.strategies.tiny_reptile import MetaConfig, TinyReptile, TinyReptileConfig

log = logging.getLogger(__name__)

STRATEGIES = ("tinyreptile", "tinymetafed", "fedavg")
__all__ = ["PARTICIPANTS", "PARTICIPANT_DEVICES", "RoundCallback", "run_federation"]  # and the settings types


@dataclass(frozen=True)
class DeviceRoundConfig:
    """What every device is told to do with the model in a round."""

    task: str = "sine"  # which task the devices learn (firmware_sim.device_tasks): sine, characters, keywords, ...
    inner_learning_rate: float = 0.02
    stream_samples: int = 10
    probe_samples: int = 5
    local_epochs: int = 1
    device_seed_base: int = 0
    drift_per_sample: float = 0.0
    learner: str = "numpy"
    model_path: str = ""
    device_seeds: tuple[int, ...] = ()  # which devices the nodes play (e.g. chosen by a registry query)
    radio: bool = True  # False: the device learns alone (local-only baseline); its rounds book no radio bytes

    def as_config_record(self) -> ConfigRecord:
        record = ConfigRecord(
            {
                keys.TASK: self.task,
                keys.INNER_LEARNING_RATE: self.inner_learning_rate,
                keys.STREAM_SAMPLES: self.stream_samples,
                keys.PROBE_SAMPLES: self.probe_samples,
                keys.LOCAL_EPOCHS: self.local_epochs,
                keys.DEVICE_SEED_BASE: self.device_seed_base,
                keys.DRIFT_PER_SAMPLE: self.drift_per_sample,
                keys.LEARNER: self.learner,
                keys.MODEL_PATH: self.model_path,
            }
        )
        if self.device_seeds:
            record[keys.DEVICE_SEEDS] = [int(seed) for seed in self.device_seeds]
        if not self.radio:
            record[keys.RADIO] = False
        return record


def sine_reptile_method() -> TinyReptileConfig:
    """The demo's TinyReptile, every run's default (docs/tuning.md): 20 devices a round, ε cosine-annealed from
    0.8 with Nesterov momentum 0.95, and per-weight step sizes learned by Adam at 0.01."""
    return TinyReptileConfig(
        clients_per_round=20, meta_step_size=0.8, final_meta_step_size=0.0, anneal="cosine",
        outer_momentum=0.95, nesterov=True, step_size_learning_rate=0.01,
    )


def sine_metafed_method() -> TinyMetaFedConfig:
    """TinyMetaFed with the demo's outer loop (every field it shares with :func:`sine_reptile_method`), so a flat
    run config, which has one value per key, means the same for both strategies."""
    shared = {f.name: getattr(sine_reptile_method(), f.name) for f in fields(MetaConfig)}
    return TinyMetaFedConfig(**shared)


def sine_device_round() -> DeviceRoundConfig:
    """The demo's TinyReptile device round: 50 fresh samples each used once (probe 5, rate 0.02)."""
    return DeviceRoundConfig(stream_samples=50)


@dataclass(frozen=True)
class FederationSettings:
    """A federation run. The defaults are the demo's TinyReptile method, so `tinyfleet server` reproduces it."""

    strategy: str = "tinyreptile"
    num_rounds: int = 1000
    layer_sizes: tuple[int, ...] = (1, 40, 40, 1)
    init_seed: int = 0  # θ at round 0 and FedAvg's device sampling; TinyReptile/TinyMetaFed sample with their config's seed
    checkpoint_dir: str = "runs/federation"
    reptile: TinyReptileConfig = field(default_factory=sine_reptile_method)
    metafed: TinyMetaFedConfig = field(default_factory=sine_metafed_method)
    device: DeviceRoundConfig = field(default_factory=sine_device_round)
    fedavg_clients_per_round: int = 5
    node_timeout_s: float = 120.0
    grid_pull_interval_s: float = 0.01

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.num_rounds < 1:
            raise ValueError("num_rounds must be >= 1")
        if self.strategy == "tinymetafed":
            unknown = sorted(set(self.metafed.private_names) - set(initial_weights(self)))
            if unknown:
                raise ValueError(f"private names {unknown} are not weights of a {self.layer_sizes} MLP")

    @property
    def min_nodes(self) -> int:
        """Devices that must be connected before the first round: one round's sample, at least."""
        if self.strategy == "tinyreptile":
            return max(self.reptile.clients_per_round, self.reptile.min_available_nodes)
        if self.strategy == "tinymetafed":
            return max(self.metafed.clients_per_round, self.metafed.min_available_nodes)
        return self.fedavg_clients_per_round

    def as_dict(self) -> dict:
        return asdict(self)


def build_strategy(settings: FederationSettings, round_offset: int) -> Strategy:
    if settings.strategy == "tinyreptile":
        reptile = replace(settings.reptile, total_rounds=settings.num_rounds, node_timeout_s=settings.node_timeout_s)
        return TinyReptile(reptile, round_offset=round_offset)
    if settings.strategy == "tinymetafed":
        metafed = replace(settings.metafed, total_rounds=settings.num_rounds, node_timeout_s=settings.node_timeout_s)
        return TinyMetaFed(metafed, round_offset=round_offset)
    return SeededFedAvg(
        seed=settings.init_seed,
        round_offset=round_offset,
        node_timeout_s=settings.node_timeout_s,
        fraction_train=1e-9,  # i.e. exactly min_train_nodes devices per round
        min_train_nodes=settings.fedavg_clients_per_round,
        min_available_nodes=settings.fedavg_clients_per_round,
        fraction_evaluate=0.0,
    )


def initial_weights(settings: FederationSettings) -> dict[str, np.ndarray]:
    """θ at round 0: a fresh MLP of the settings' layer sizes, or the task's own model (a user's trained one)."""
    from firmware_sim.device_tasks import device_task

    task = device_task(settings.device.task)
    if task.initial_weights is not None:
        return task.theta0(settings.init_seed)
    return init_mlp_weights(settings.layer_sizes, settings.init_seed)


def train_config(settings: FederationSettings) -> ConfigRecord:
    """What every device is told each round; TinyMetaFed devices also learn the model's layer sizes.

    A device rebuilding a private head must know its shape, which the shared
    part it receives does not tell (see :mod:`firmware_sim.client_app`).
    """
    config = settings.device.as_config_record()
    if settings.strategy == "tinymetafed":
        config[keys.LAYER_SIZES] = ",".join(str(n) for n in settings.layer_sizes)
    return config


def run_federation(
    grid: Grid, settings: FederationSettings, on_round: RoundCallback | None = None, observers: Sequence[Observer] = ()
) -> Path:
    """Run (or resume) the federation to ``settings.num_rounds``; return the checkpoint directory.

    After each round the checkpoint is written, then ``observers`` and ``on_round`` are told, in that order.
    """
    checkpointer = Checkpointer(settings.checkpoint_dir)
    resumed = checkpointer.load_latest()
    if resumed is not None and resumed.meta.get("strategy") != settings.strategy:
        raise ValueError(
            f"checkpoint in {settings.checkpoint_dir} is from strategy {resumed.meta.get('strategy')!r}, "
            f"not {settings.strategy!r}; use another directory"
        )
    start_round = resumed.server_round if resumed else 0
    theta = resumed.weights if resumed else initial_weights(settings)
    if start_round >= settings.num_rounds:
        log.info("checkpoint already at round %d of %d; nothing to do", start_round, settings.num_rounds)
        return checkpointer.directory
    if hasattr(grid, "pull_interval"):
        grid.pull_interval = settings.grid_pull_interval_s  # simulation polls every 0.1 s by default
    if _node_ids_are_random(grid):
        grid = DeviceOrderedGrid(grid, train_config(settings), settings.node_timeout_s)
    wait_for_nodes(grid, settings.min_nodes, settings.node_timeout_s)

    strategy = build_strategy(settings, round_offset=start_round)
    if resumed is not None and isinstance(strategy, StatefulStrategy):
        strategy.restore_strategy_state(resumed.strategy_state)
    meta = {"strategy": settings.strategy, "settings": settings.as_dict()}

    def checkpoint(report: RoundReport) -> None:  # the first observer: a round is durable before anyone hears of it
        state = strategy.strategy_state() if isinstance(strategy, StatefulStrategy) else None
        checkpointer.save(report.server_round, report.weights, {**meta, "metrics": report.as_metrics()}, state)

    everyone = [checkpoint, *observers, *([callback_observer(on_round)] if on_round is not None else [])]
    config = train_config(settings)
    run_rounds(
        strategy, grid, to_array_record(theta), num_rounds=settings.num_rounds - start_round, config=config,
        timeout=settings.node_timeout_s, round_offset=start_round, observers=everyone,
    )  # fmt: skip
    return checkpointer.directory


def _node_ids_are_random(grid: Grid) -> bool:
    """Whether node ids say nothing about devices (Flower's engines), so sampling must go by device.

    A grid declares ``stable_node_ids = True`` when its node id names the same
    device every run (an MQTT grid hashes the device id); Flower's simulation
    and SuperLink draw a random id per node per run and declare nothing.
    """
    return not getattr(grid, "stable_node_ids", False)


def make_server_app(settings: FederationSettings, on_round: RoundCallback | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(grid, settings, on_round)

    return app
