"""Every method on one TinyML task: what a new device reaches after K shots, and what training cost.

Methods, all training the same :class:`edge.mlp_classifier.MLPClassifier`
(see :mod:`firmware_sim.task_families`), all scored on the same unseen
devices (``TEST_SEED_BASE`` onwards) with the same K-shot episodes:

- **tinymetafed** — :class:`server.strategies.tiny_metafed.TinyMetaFed`: the
  output layer stays on each device; Top-P% sparse uplink. A new device
  rebuilds its output layer from its firmware init on the K shots (shared
  part frozen), by SGD at a rate as in a training round or by imprinting
  it from class means (:mod:`edge.imprinting`), whichever scores better on
  validation devices; the shared part then adapts on the same shots if
  ``metafed_adapt_shared`` is set.
- **tinyreptile** — :class:`server.strategies.tiny_reptile.TinyReptile`, whole
  model shared; a new device adapts every weight online on its K shots.
- **fedavg** — Flower's ``FedAvg`` as practitioners run it (a few devices per
  round, several local epochs); new devices adapt like TinyReptile's.
- **local-only** — no federation: one device learns alone on its own stream
  for as many rounds (TinyReptile's device loop on a fleet of one, no
  radio), and a new device adapts that model like TinyReptile's.
- **from-scratch** — the firmware init (:func:`firmware_sim.task_client_app.firmware_init`)
  adapted online on the K shots: what on-device learning does with no prior.
  Every weight is trained by SGD, the classical baseline.

Control rows (:data:`CONTROLS`) give a baseline's hidden layers TinyMetaFed's
new-device rule; they train nothing and cost nothing of their own:

- **fedavg-rebuilt-head** — FedAvg's θ with its output layer replaced by the
  device firmware's (zero) one, rebuilt on the K shots exactly as
  TinyMetaFed's new device does (same code, rate chosen the same way). It
  separates what TinyMetaFed's training gives from what its new-device rule
  gives.
- **from-scratch-rebuilt-head** — the firmware's random hidden layers, frozen,
  with the output layer rebuilt on the K shots as TinyMetaFed's new device
  does. It is what a device with no prior at all reaches with that rule.

Every adaptation is online, each sample seen once: one SGD step per sample,
or one running-mean update of its class for an imprinted output layer.

The three federated methods run through ``Strategy.start`` on
:class:`server.transports.inprocess_grid.InProcessGrid` with the task's ClientApp
(:func:`firmware_sim.task_client_app.make_task_client_app`); per-device bytes,
simulated time and energy per round are read from every reply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edge import record_keys as keys
from edge.mlp_classifier import MLPClassifier
from edge.imprinting import imprint_output_layer
from edge.reconstruction import RECONSTRUCTION_RULES, split_weights, train_subset
from firmware_sim.task_client_app import firmware_init, make_task_client_app
from firmware_sim.task_families import TEST_SEED_BASE, VALIDATION_SEED_BASE, TaskFamily, task_family
from firmware_sim.tasks.episodes import Episode
from server.core.checkpoint import Checkpointer
from firmware_sim.device_tasks import device_task
from server.core.federation import FederationSettings, run_federation
from server.core.tasks import METHOD_FIELDS, TaskMethod, method_settings, task_method
from server.transports.inprocess_grid import InProcessGrid

FEDERATED = ("tinymetafed", "tinyreptile", "fedavg")
TRAINING_SUMMARY = "training.json"  # next to a method's checkpoints: its settings and measured costs
TRAINED = (*FEDERATED, "local-only")  # methods whose init comes out of a training run
METHODS = (*FEDERATED, "local-only", "from-scratch")
# Control rows: a baseline's hidden layers under TinyMetaFed's new-device rule (no training of their own) -> that
# baseline.
CONTROLS: dict[str, str] = {"fedavg-rebuilt-head": "fedavg", "from-scratch-rebuilt-head": "from-scratch"}
CONTROL_NOTES: dict[str, str] = {
    "fedavg-rebuilt-head": "fedavg's trained θ, no training of its own (its costs are fedavg's); a new device replaces "
    "θ's output layer by its firmware's zero one and rebuilds it on the K shots with the rest frozen, as TinyMetaFed's "
    "new device does, by the rule (a rate, or imprinting) chosen on validation devices",
    "from-scratch-rebuilt-head": "no training: the firmware's random hidden layers, frozen, with the output layer "
    "rebuilt on the K shots as TinyMetaFed's new device does, by the rule (a rate, or imprinting) chosen on "
    "validation devices",
}
SCORED = (*METHODS, *CONTROLS)  # every row the benchmark can score
# A new device of these starts its output layer from the firmware's zero one on top of frozen hidden layers, and
# learns it by SGD at a rate or imprints it from class means (edge.imprinting): select_adaptation_lr picks per method
# on validation devices.
REBUILDS_OUTPUT_LAYER = ("tinymetafed", "fedavg-rebuilt-head", "from-scratch-rebuilt-head")
IMPRINT = "imprint"  # the new-device rule that needs no rate, beside the rates of LR_GRID
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TaskBenchConfig:
    task: str = "characters"
    n_train_devices: int = 100
    # four times the 50 devices of earlier runs halve every standard error (FedAvg's on characters was ±1.8
    # points at 50), so a margin near 10 points is measured to about a point
    n_eval_devices: int = 200
    shots: tuple[int, ...] = (1, 5, 10)
    n_query: int = 5  # per class (presence scores a whole later day instead)
    rounds: int = TaskMethod.rounds  # every federated method gets as many rounds
    meta_clients_per_round: int = TaskMethod.meta_clients_per_round  # TinyReptile and TinyMetaFed
    meta_samples_per_round: int = TaskMethod.meta_samples_per_round  # each seen once
    meta_step_size: float = TaskMethod.meta_step_size
    outer_momentum: float = TaskMethod.outer_momentum
    top_p: float = TaskMethod.top_p
    reconstruction_samples: int = TaskMethod.reconstruction_samples
    reconstruction_lr: float = TaskMethod.reconstruction_lr
    reconstruction_rule: str = TaskMethod.reconstruction_rule  # how TinyMetaFed rebuilds the private output layer
    metafed_adapt_shared: bool = False
    # A new device's learning rate per method (TinyMetaFed: for rebuilding its output layer), chosen on
    # validation devices; methods not listed use the family's rate (TinyMetaFed: reconstruction_lr).
    adaptation_lr: tuple[tuple[str, float], ...] = ()
    # Methods (of REBUILDS_OUTPUT_LAYER) whose new device imprints its output layer instead of SGD at a rate;
    # chosen on validation devices with the rates.
    imprinting: tuple[str, ...] = ()
    # Use a finished training run of identical settings from out_dir instead of training again
    # (e.g. to re-score with other adaptation rates); its costs are the ones measured when it ran.
    reuse_training: bool = False
    # Choose every method's adaptation_lr on validation devices first (select_adaptation_lr);
    # off, adaptation_lr (or the defaults) is used as given.
    select_lr: bool = True
    # Score the control rows (CONTROLS) of every method run whose θ they reuse.
    controls: bool = True
    fedavg_clients_per_round: int = TaskMethod.fedavg_clients_per_round
    fedavg_samples: int = TaskMethod.fedavg_samples
    fedavg_epochs: int = TaskMethod.fedavg_epochs
    seed: int = TaskMethod.seed
    evaluate_on: str = "test"  # "validation" while choosing settings
    out_dir: str = "runs/bench"

    def __post_init__(self) -> None:
        if self.evaluate_on not in ("test", "validation"):
            raise ValueError("evaluate_on is 'test' or 'validation'")
        for method, rate in self.adaptation_lr:
            if method not in SCORED or not 0.0 < rate <= 10.0:
                raise ValueError(f"adaptation_lr: {method!r} -> {rate!r} is not a method and a rate in (0, 10]")
        odd = sorted(set(self.imprinting) - set(REBUILDS_OUTPUT_LAYER))
        if odd:
            raise ValueError(f"imprinting: {odd} do not start an output layer on a new device ({REBUILDS_OUTPUT_LAYER} do)")
        if self.reconstruction_rule not in RECONSTRUCTION_RULES:
            raise ValueError(f"reconstruction_rule {self.reconstruction_rule!r} is not one of {RECONSTRUCTION_RULES}")
        if min(self.shots, default=0) < 1:
            raise ValueError("shots must be >= 1")
        largest = max(self.meta_clients_per_round, self.fedavg_clients_per_round)
        if self.n_train_devices < largest:
            raise ValueError(
                f"{self.n_train_devices} training devices cannot fill rounds of {largest} devices; "
                "use more devices or fewer per round"
            )
        if self.n_eval_devices < 1 or self.rounds < 1:
            raise ValueError("need at least one evaluation device and one round")

    @classmethod
    def for_task(cls, task: str, **overrides: object) -> TaskBenchConfig:
        """The benchmark's settings for ``task``: its method (:data:`server.core.tasks.TASK_METHODS`) and
        :data:`BENCH_PRESETS`, with ``overrides``."""
        method = asdict(task_method(task))
        return cls(**{"task": task, **method, **BENCH_PRESETS.get(task, {}), **overrides})  # type: ignore[arg-type]

    def adaptation_lr_of(self, method: str, family: TaskFamily) -> float:
        default = self.reconstruction_lr if method in REBUILDS_OUTPUT_LAYER else family.learning_rate
        return dict(self.adaptation_lr).get(method, default)

    @property
    def eval_device_base(self) -> int:
        return TEST_SEED_BASE if self.evaluate_on == "test" else VALIDATION_SEED_BASE


# Keywords: fewer evaluation devices keep its run near the others' (its method: server.core.tasks.TASK_METHODS).
BENCH_PRESETS: dict[str, dict[str, object]] = {"keywords": dict(n_eval_devices=60)}


def federation_settings(config: TaskBenchConfig, family: TaskFamily, method: str, checkpoint_dir: Path) -> FederationSettings:
    """The federation ``method`` runs in the benchmark: the task's method (:func:`server.core.tasks.method_settings`,
    what a deployed federation of the task defaults to) with the benchmark's values, on the in-process grid."""
    values = TaskMethod(**{name: getattr(config, name) for name in METHOD_FIELDS})
    settings = method_settings(device_task(family.name), values, method, family.learning_rate, str(checkpoint_dir / method))
    return replace(settings, node_timeout_s=10.0)  # the in-process grid has every node from the start


@dataclass
class TrainingRun:
    weights: dict[str, np.ndarray]
    wall_s: float
    rounds: int
    per_device_round: dict[str, float]  # mean over every device-round: bytes up/down, device time, energy
    totals: dict[str, float]  # over the run: bytes up/down, device-rounds
    curve: list[dict[str, float]] = field(default_factory=list)  # prequential loss per round

    def summary(self) -> dict[str, object]:
        """Everything but the weights (those are in the checkpoint): what reports and training.json hold."""
        return {"rounds": self.rounds, "wall_s": self.wall_s, "per_device_round": self.per_device_round,
                "totals": self.totals, "curve": self.curve}  # fmt: skip


def train_federated(
    config: TaskBenchConfig, family: TaskFamily, method: str, work_dir: Path, progress: ProgressFn | None = None
) -> TrainingRun:
    settings = federation_settings(config, family, method, work_dir / "checkpoints")
    summary_path = Path(settings.checkpoint_dir) / TRAINING_SUMMARY
    if config.reuse_training:
        reused = _reuse(summary_path, settings)
        if reused is not None:
            return reused
    for stale in Path(settings.checkpoint_dir).glob("*"):  # a benchmark otherwise always starts fresh
        stale.unlink()
    fleet = 1 if method == "local-only" else config.n_train_devices
    grid = InProcessGrid(make_task_client_app(family.name), fleet)
    curve: list[dict[str, float]] = []

    def on_round(server_round: int, _weights: dict[str, np.ndarray], metrics: dict) -> None:
        curve.append({"round": server_round, "prequential_loss": float(metrics.get(keys.PREQUENTIAL_LOSS, float("nan")))})
        if progress is not None:
            progress(method, server_round, settings.num_rounds)

    started = time.perf_counter()
    run_federation(grid, settings, on_round)
    wall = time.perf_counter() - started
    log = grid.reply_log
    columns = {
        "bytes_up": keys.BYTES_SENT,
        "bytes_down": keys.BYTES_RECEIVED,
        "device_time_s": keys.DEVICE_TIME_S,
        "device_energy_j": keys.DEVICE_ENERGY_J,
    }
    per_device = {name: float(np.mean([r.get(key, 0.0) for r in log])) for name, key in columns.items()}
    totals = {
        "bytes_up": float(sum(r.get(keys.BYTES_SENT, 0.0) for r in log)),
        "bytes_down": float(sum(r.get(keys.BYTES_RECEIVED, 0.0) for r in log)),
        "device_rounds": float(len(log)),
        "device_energy_j": float(sum(r.get(keys.DEVICE_ENERGY_J, 0.0) for r in log)),
    }
    final = Checkpointer(settings.checkpoint_dir).load_latest()
    if final is None or final.server_round != settings.num_rounds:
        raise RuntimeError(f"{method}: the federation stopped before round {settings.num_rounds}")
    run = TrainingRun(final.weights, wall, settings.num_rounds, per_device, totals, curve)
    summary_path.write_text(json.dumps({"settings": settings.as_dict(), **run.summary()}))
    return run


STEP_SIZE_FIELDS = ("step_size_learning_rate", "step_size_base_rate", "step_size_shots", "step_size_query")


def _comparable(settings: dict) -> dict:
    """Settings with the fields that cannot change a run left out: the Meta-SGD step-size fields when it is off,
    the device's ``radio`` flag when it is on, and TinyMetaFed's ``reconstruction_rule`` when it is SGD.

    With ``step_size_learning_rate`` 0 (or absent: runs recorded before those
    fields existed) no step size is sent or learned and θ's update is the same
    bit for bit, so such a run is the run of the current settings. Likewise a
    run recorded before ``radio`` existed had the radio on, and one recorded
    before ``reconstruction_rule`` existed rebuilt its private part by SGD (the
    rule's key is then not even sent).
    """
    out = dict(settings)
    metafed = out.get("metafed")
    if isinstance(metafed, dict) and metafed.get("reconstruction_rule", "sgd") == "sgd":  # absent before it existed
        out["metafed"] = {k: v for k, v in metafed.items() if k != "reconstruction_rule"}
    device = out.get("device")
    if isinstance(device, dict) and device.get("radio", True):  # absent in runs recorded before the field existed
        out["device"] = {k: v for k, v in device.items() if k != "radio"}
    for name in ("reptile", "metafed"):
        strategy = out.get(name)
        if isinstance(strategy, dict) and not strategy.get("step_size_learning_rate", 0.0):
            out[name] = {k: v for k, v in strategy.items() if k not in STEP_SIZE_FIELDS}
    return out


def _reuse(summary_path: Path, settings: FederationSettings) -> TrainingRun | None:
    """The finished run of exactly these settings, from its checkpoint and summary; None if there is none."""
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    # the settings as JSON would see them (tuples become lists) must match exactly
    if _comparable(summary["settings"]) != _comparable(json.loads(json.dumps(settings.as_dict()))):
        return None
    checkpoint = Checkpointer(settings.checkpoint_dir).load_latest()
    if checkpoint is None or checkpoint.server_round != settings.num_rounds:
        return None
    return TrainingRun(
        checkpoint.weights, summary["wall_s"], settings.num_rounds, summary["per_device_round"], summary["totals"],
        summary["curve"],
    )


def with_controls(
    config: TaskBenchConfig, inits: dict[str, dict[str, np.ndarray] | None]
) -> dict[str, dict[str, np.ndarray] | None]:
    """``inits`` plus every control row (:data:`CONTROLS`) whose method is among them, on that method's very θ."""
    out = dict(inits)
    if config.controls:
        out.update({control: inits[source] for control, source in CONTROLS.items() if source in inits})
    return out


def score(learner: MLPClassifier, episode: Episode, balanced: bool) -> float:
    predicted = learner.predict_labels(episode.query_x)
    truth = episode.query_y
    if not balanced:
        return float((predicted == truth).mean())
    return float(np.mean([(predicted[truth == c] == c).mean() for c in np.unique(truth)]))


def adapted_learner(
    config: TaskBenchConfig, family: TaskFamily, method: str, weights: dict[str, np.ndarray] | None, device: int, episode: Episode
) -> MLPClassifier:
    """An unseen device after it installed what ``method`` gives it and learned from the support stream."""
    learner = MLPClassifier(family.layer_sizes)
    firmware = firmware_init(family, device)
    lr = config.adaptation_lr_of(method, family)
    shots = len(episode.support_y)
    if method in REBUILDS_OUTPUT_LAYER:  # the output layer starts from the firmware's
        base = firmware if method == "from-scratch-rebuilt-head" else weights  # θ's own output layer is discarded
        assert base is not None
        shared, _ = split_weights(base, family.private_names)
        _, private = split_weights(firmware, family.private_names)
        learner.set_weights({**shared, **private})
        if method in config.imprinting:  # no rate: class means
            imprint_output_layer(learner, episode.support_stream(), shots, names=set(private))
        else:
            train_subset(learner, episode.support_stream(), shots, lr, trainable=set(private))
        if config.metafed_adapt_shared:
            train_subset(learner, episode.support_stream(), shots, family.learning_rate, trainable=set(shared))
        return learner
    if method in ("tinyreptile", "fedavg", "local-only"):
        assert weights is not None
        learner.set_weights(weights)
    elif method == "from-scratch":
        learner.set_weights(firmware)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(SCORED)}")
    for x, y in episode.support_stream():
        learner.learn_one(x, y, lr)
    return learner


def adapt_and_score(
    config: TaskBenchConfig, family: TaskFamily, method: str, weights: dict[str, np.ndarray] | None, device: int, episode: Episode
) -> float:
    """One unseen device: install what ``method`` gives it, learn from the support stream, score the query."""
    return score(adapted_learner(config, family, method, weights, device, episode), episode, family.balanced)


def evaluate(
    config: TaskBenchConfig, family: TaskFamily, inits: dict[str, dict[str, np.ndarray] | None]
) -> list[dict[str, object]]:
    """Rows ``{method, shots, metric, value, stderr, n_devices, per_device}``; every method sees the same episodes.

    ``per_device`` lists each device's score in the same device order for every
    method, so two methods can be compared device by device (paired).
    """
    rows: list[dict[str, object]] = []
    metric = "balanced_accuracy" if family.balanced else "accuracy"
    for k in config.shots:
        episodes = [
            (config.eval_device_base + j, family.episode(config.eval_device_base + j, k, config.n_query))
            for j in range(config.n_eval_devices)
        ]
        for method, weights in inits.items():
            values = np.array([adapt_and_score(config, family, method, weights, d, e) for d, e in episodes])
            rows.append(
                {
                    "method": method, "shots": k, "metric": metric, "value": float(values.mean()),
                    "stderr": float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0,
                    "n_devices": len(values), "per_device": values.tolist(),
                }
            )  # fmt: skip
    return rows


LR_GRID = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
SELECTION_SHOTS = 5


def select_adaptation_lr(
    config: TaskBenchConfig, family: TaskFamily, inits: dict[str, dict[str, np.ndarray] | None], grid: Sequence[float] = LR_GRID
) -> tuple[TaskBenchConfig, list[dict[str, object]]]:
    """``config`` with each method's best new-device rule at K = 5 on *validation* devices, and every score seen.

    A rate good for one initialisation can ruin another (a meta-learned model
    may want a small step, an empty output layer imprints best with a tiny
    one), so each method gets its own, chosen where the reported test devices
    play no part. A method that starts an output layer on the device
    (:data:`REBUILDS_OUTPUT_LAYER`) also tries imprinting it (no rate), which it
    keeps only if it scores strictly better than every rate. Episodes are
    drawn once and shared by every (method, rule).
    """
    validation = replace(config, evaluate_on="validation", imprinting=())
    base = validation.eval_device_base
    episodes = [(base + j, family.episode(base + j, SELECTION_SHOTS, config.n_query)) for j in range(config.n_eval_devices)]
    scores: list[dict[str, object]] = []
    rates: list[tuple[str, float]] = []
    imprinting: list[str] = []
    for method, weights in inits.items():
        best: tuple[float, TaskBenchConfig] | None = None
        for trial, rule in _rule_candidates(validation, method, grid):
            value = float(np.mean([adapt_and_score(trial, family, method, weights, d, e) for d, e in episodes]))
            scores.append({"method": method, **rule, "shots": SELECTION_SHOTS, "value": value})
            if best is None or value > best[0]:
                best = (value, trial)
        assert best is not None
        if method in best[1].imprinting:
            imprinting.append(method)
        else:
            rates.append((method, best[1].adaptation_lr_of(method, family)))
    return replace(config, adaptation_lr=tuple(rates), imprinting=tuple(imprinting)), scores


def _rule_candidates(
    validation: TaskBenchConfig, method: str, grid: Sequence[float]
) -> Iterator[tuple[TaskBenchConfig, dict[str, object]]]:
    """Each new-device rule ``method`` may use, as the config that applies it and how the report names it."""
    for rate in grid:
        yield replace(validation, adaptation_lr=((method, rate),)), {"rule": "sgd", "learning_rate": rate}
    if method in REBUILDS_OUTPUT_LAYER:
        yield replace(validation, imprinting=(method,)), {"rule": IMPRINT, "learning_rate": None}


def new_device_rules(config: TaskBenchConfig, family: TaskFamily, methods: Sequence[str]) -> dict[str, float | str]:
    """Per method, the rate its new device adapts at, or "imprint"."""
    return {m: IMPRINT if m in config.imprinting else config.adaptation_lr_of(m, family) for m in methods}


def training_ram(family: TaskFamily) -> dict[str, int]:
    footprint = MLPClassifier(family.layer_sizes).memory_footprint()
    return {"weights": footprint.weights, "training": footprint.training, "inference": footprint.inference, "total": footprint.total}
