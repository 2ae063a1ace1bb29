"""Tasks as plugins, server side: each task's default method, so `tinyfleet server --task T` runs T's tuned method.

The device half of a task (its data, learner, firmware init) is
:mod:`firmware_sim.device_tasks`; this module adds what a federation of it
defaults to. For sine that is the demo's TinyReptile (:class:`FederationSettings`'
own defaults, docs/tuning.md). For the classifier tasks it is the method the
task benchmark (:mod:`server.experiments.task_bench`) measured: its settings
come from :data:`TASK_METHODS` here, so the benchmark and a deployed federation
of the same task cannot drift apart. A user's own task takes
:class:`TaskMethod`'s defaults unless its task folder says otherwise.

    >>> settings = task_settings("keywords", "tinymetafed")
    >>> settings.device.task, settings.layer_sizes, settings.metafed.private_names
    ('keywords', (120, 64, 64, 4), ('w2', 'b2'))
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from edge.identity import DEFAULT_FAMILY
from firmware_sim.device_tasks import DeviceTask, device_task
from server.core.federation import DeviceRoundConfig, FederationSettings
from server.strategies.tiny_metafed import TinyMetaFedConfig
from server.strategies.tiny_reptile import TinyReptileConfig


@dataclass(frozen=True)
class TaskMethod:
    """A classifier task's federated method: what its federations (and its benchmark) default to."""

    rounds: int = 300  # every federated method gets as many rounds
    meta_clients_per_round: int = 5  # TinyReptile and TinyMetaFed
    meta_samples_per_round: int = 50  # each seen once
    meta_step_size: float = 1.0
    outer_momentum: float = 0.0
    top_p: float = 0.25
    reconstruction_samples: int = 25
    reconstruction_lr: float = 0.1
    reconstruction_rule: str = "sgd"  # how TinyMetaFed's training rounds rebuild the private output layer
    fedavg_clients_per_round: int = 5
    fedavg_samples: int = 32
    fedavg_epochs: int = 5
    seed: int = 0


# Keywords cost ~15-35 ms a sample (room reverberation and the MFCC front end, both FFTs), a hundred times a
# character: fewer rounds keep its run near the others'. 56 samples per device-round (8 rebuild TinyMetaFed's
# output layer, 48 adapt the rest), not 24: with 16 the shared part was starved (FedAvg's device takes 80 steps a
# round) and TinyMetaFed's K = 5 validation accuracy went 0.873 -> 0.935.
TASK_METHODS: dict[str, TaskMethod] = {
    "characters": TaskMethod(),
    "presence": TaskMethod(),
    "keywords": TaskMethod(rounds=100, meta_samples_per_round=56, reconstruction_samples=8, fedavg_samples=16),
}
METHOD_FIELDS = tuple(f.name for f in fields(TaskMethod))


def task_method(task: str) -> TaskMethod:
    """The method a classifier task defaults to; a user's task: the defaults with its task.toml's ``[method]``
    table over them (a name :class:`TaskMethod` lacks, or a value of the wrong type, is refused naming it)."""
    if task in TASK_METHODS:
        return TASK_METHODS[task]
    overrides = dict(getattr(device_task(task), "method", {}) or {})
    unknown = sorted(set(overrides) - set(METHOD_FIELDS))
    if unknown:
        raise ValueError(f"task {task!r}: [method] keys {unknown} are not method settings; known: {', '.join(METHOD_FIELDS)}")
    defaults = TaskMethod()
    for name, value in overrides.items():
        wanted = type(getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, (wanted, int) if wanted is float else wanted):
            raise ValueError(f"task {task!r}: [method] {name} = {value!r} must be a {wanted.__name__}")
    return replace(defaults, **overrides)


def method_settings(task: DeviceTask, method: TaskMethod, strategy: str, learning_rate: float,
                    checkpoint_dir: str = "runs/federation") -> FederationSettings:
    """The federation ``strategy`` runs for a classifier ``task`` under ``method``.

    ``strategy`` is a server strategy or the benchmark's ``local-only`` (a
    fleet of one that never talks to anyone: TinyReptile with no radio).
    """
    meta = dict(
        clients_per_round=method.meta_clients_per_round, meta_step_size=method.meta_step_size,
        final_meta_step_size=0.0, anneal="cosine", outer_momentum=method.outer_momentum, nesterov=True,
        seed=method.seed,
    )  # fmt: skip
    common = dict(
        strategy=strategy, num_rounds=method.rounds, layer_sizes=task.layer_sizes, init_seed=method.seed,
        checkpoint_dir=checkpoint_dir,
    )  # fmt: skip
    if strategy == "fedavg":
        device = DeviceRoundConfig(task=task.name, inner_learning_rate=learning_rate,
                                   stream_samples=method.fedavg_samples, local_epochs=method.fedavg_epochs)  # fmt: skip
        return FederationSettings(**common, fedavg_clients_per_round=method.fedavg_clients_per_round, device=device)
    device = DeviceRoundConfig(task=task.name, inner_learning_rate=learning_rate, stream_samples=method.meta_samples_per_round)
    if strategy == "tinyreptile":
        return FederationSettings(**common, reptile=TinyReptileConfig(**meta), device=device)
    if strategy == "local-only":
        alone = TinyReptileConfig(**{**meta, "clients_per_round": 1})
        return FederationSettings(**{**common, "strategy": "tinyreptile"}, reptile=alone, device=replace(device, radio=False))
    metafed = TinyMetaFedConfig(
        **meta, private_names=task.private_names, top_p=method.top_p,
        reconstruction_samples=method.reconstruction_samples, reconstruction_lr=method.reconstruction_lr,
        reconstruction_rule=method.reconstruction_rule,
    )  # fmt: skip
    # the device's stream covers reconstruction then adaptation: the same samples per round as TinyReptile's
    device = replace(device, stream_samples=max(1, method.meta_samples_per_round - method.reconstruction_samples))
    return FederationSettings(**common, metafed=metafed, device=device)


def task_settings(task: str, strategy: str | None = None) -> FederationSettings:
    """What a federation of ``task`` runs by default with ``strategy`` (None: the task's default strategy)."""
    strategy = strategy or FederationSettings.strategy
    if task == DEFAULT_FAMILY:
        return FederationSettings(strategy=strategy)  # the demo's method (sine_reptile_method and its kin)
    descriptor = device_task(task)
    return method_settings(descriptor, task_method(task), strategy, _learning_rate(task))


def _learning_rate(task: str) -> float:
    """The per-sample SGD rate of a task's devices: the family's for a built-in, a user task's own otherwise."""
    from firmware_sim.task_families import task_family

    try:
        return task_family(task).learning_rate
    except (KeyError, ValueError):
        return float(getattr(device_task(task), "learning_rate", DeviceRoundConfig.inner_learning_rate))
