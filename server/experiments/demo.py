"""The main job: meta-train over a simulated fleet, then adapt on unseen devices.

TinyReptile and FedAvg each train a sine regressor over ``n_train_devices``
simulated microcontrollers through Flower's simulation engine. Then devices
never seen in training receive each initialisation (and a random one) and
adapt online on K = 1, 2, 5, 10, 20 samples; the MSE of their fitted curve is
the measure of how good an initialisation is for a new device.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edge.adaptation import adapt_online
from edge.learner import Learner
from edge.mlp import NumpyMLP, init_mlp_weights
from firmware_sim.fleet import TEST_SEED_BASE, mlp_learner_for, profile_for, sine_device
from edge.identity import device_id_of
from server.core.checkpoint import Checkpoint, Checkpointer
from ontology.thing_description import device_iri
from server.core.federation import DeviceRoundConfig, FederationSettings, initial_weights, sine_device_round, sine_reptile_method
from server.registry.registry_link import FederationRegistry, RunVersions
from server.strategies.step_size_learning import step_sizes_from_state
from server.strategies.tiny_reptile import TinyReptileConfig

log = logging.getLogger(__name__)

# Ray's own logging (and TensorFlow's, in every worker) would drown the progress bars.
SIMULATION_BACKEND = {
    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    "init_args": {"logging_level": logging.ERROR, "log_to_driver": False},
}

ProgressFn = Callable[[str, int, int, dict[str, float]], None]


@dataclass(frozen=True)
class DemoConfig:
    n_train_devices: int = 100
    n_unseen_devices: int = 100
    shots: tuple[int, ...] = (1, 2, 5, 10, 20)
    adaptation_learning_rate: float = 0.02
    # TinyReptile: 20 devices a round, each streams 50 fresh samples once; the
    # outer step uses Nesterov momentum 0.95 with ε cosine-annealed from 0.8
    # (chosen on devices disjoint from the unseen ones; see docs/tuning.md).
    # The same devices also measure how per-weight step sizes should change
    # (on 5 + 20 further samples); the server learns them by Adam at 0.01.
    # One source: these are FederationSettings' defaults (server.core.federation), what `tinyfleet server` runs.
    reptile_rounds: int = FederationSettings.num_rounds
    reptile: TinyReptileConfig = field(default_factory=sine_reptile_method)
    reptile_device: DeviceRoundConfig = field(default_factory=sine_device_round)
    # FedAvg as practitioners run it: 5 devices a round, 5 local epochs over 32 samples.
    fedavg_rounds: int = 300
    fedavg_clients_per_round: int = 5
    fedavg_device: DeviceRoundConfig = field(default_factory=lambda: DeviceRoundConfig(stream_samples=32, local_epochs=5))
    layer_sizes: tuple[int, ...] = (1, 40, 40, 1)
    init_seed: int = 0  # θ0 of both federations and the seed of their device sampling
    random_init_seed: int = 12345
    out_dir: str = "runs/demo"
    resume: bool = False
    # Candidates registered in the registry beyond the training fleet whose lease
    # lapses before selection (they stopped renewing), so the SPARQL selection has work to do.
    lapsed_devices: int = 10
    # "inprocess": the same ServerApp, strategies and ClientApp over server.transports.inprocess_grid (no Ray, no
    # polling; a test holds it bit-identical to Flower's engine); "flower": Flower's simulation engine (Ray).
    engine: str = "inprocess"
    # Processes the in-process grid runs a round's device rounds in (the development machine's 2 cores); the
    # figures do not depend on it (tests/server/test_inprocess_grid.py). 1: in this process.
    device_workers: int = 2

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.device_workers < 1:
            raise ValueError("device_workers must be at least 1")


ENGINES = ("inprocess", "flower")
THETA_ONLY = "tinyreptile-theta-only"  # TinyReptile's θ adapted at the shared rate, without its step sizes


def federation_settings(config: DemoConfig, method: str) -> FederationSettings:
    common = dict(
        strategy=method,
        layer_sizes=config.layer_sizes,
        init_seed=config.init_seed,
        checkpoint_dir=str(Path(config.out_dir) / "checkpoints" / method),
    )
    if method == "tinyreptile":
        # one seed: θ0 and both federations' sampling; step sizes multiply the rate devices adapt with
        reptile = replace(config.reptile, seed=config.init_seed, step_size_base_rate=config.adaptation_learning_rate)
        return FederationSettings(
            **common, num_rounds=config.reptile_rounds, reptile=reptile, device=config.reptile_device
        )
    return FederationSettings(
        **common,
        num_rounds=config.fedavg_rounds,
        fedavg_clients_per_round=config.fedavg_clients_per_round,
        device=config.fedavg_device,
    )


def train_in_simulation(
    settings: FederationSettings,
    n_devices: int,
    progress: ProgressFn | None,
    on_version: Callable[[int, dict[str, np.ndarray], dict], None] | None = None,
    engine: str = "inprocess",
    workers: int = 1,
) -> Checkpoint:
    """One simulated federation; returns its final checkpoint (θ, and what the strategy learned besides).

    Both engines run the same ServerApp loop, strategies and ClientApp; ``inprocess`` only leaves out
    Ray's actors and the engine's polling, which cost the demo more than its training did; its ``workers``
    processes run each round's device rounds side by side, as Ray's actors do.
    """
    from firmware_sim.client_app import app as client_app
    from server.core.federation import make_server_app, run_federation

    def on_round(server_round: int, weights: dict[str, np.ndarray], metrics: dict) -> None:
        if on_version is not None:
            on_version(server_round, weights, metrics)
        if progress is not None:
            progress(settings.strategy, server_round, settings.num_rounds, metrics)

    if engine == "inprocess":
        from server.transports.inprocess_grid import InProcessGrid

        with InProcessGrid(client_app, n_devices, workers=workers) as grid:
            run_federation(grid, settings, on_round)
    else:
        from flwr.simulation import run_simulation

        run_simulation(
            server_app=make_server_app(settings, on_round),
            client_app=client_app,
            num_supernodes=n_devices,
            backend_config=SIMULATION_BACKEND,
        )
    checkpoint = Checkpointer(settings.checkpoint_dir).load_latest()
    if checkpoint is None or checkpoint.server_round < settings.num_rounds:
        reached = checkpoint.server_round if checkpoint else 0
        raise RuntimeError(f"{settings.strategy} stopped at round {reached} of {settings.num_rounds}; see the log above")
    return checkpoint


def step_size_summary(step_sizes: dict[str, np.ndarray] | None, path: Path) -> dict | None:
    """Save the learned step sizes beside the models; their spread per weight array (multipliers of the shared rate)."""
    if step_sizes is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **step_sizes)
    return {"file": str(path), "multiplier_quantiles_5_50_95": {
        name: [float(q) for q in np.quantile(values, [0.05, 0.5, 0.95])] for name, values in step_sizes.items()
    }}  # fmt: skip


def learner_with(weights: dict[str, np.ndarray], step_sizes: dict[str, np.ndarray] | None = None) -> NumpyMLP:
    """A numpy MLP shaped like ``weights`` that adapts with ``step_sizes`` (or the shared rate)."""
    learner = mlp_learner_for(weights)
    learner.set_step_sizes(step_sizes)
    return learner


def evaluate_learner(
    learner: Learner, weights: dict[str, np.ndarray], shots: int, n_devices: int, learning_rate: float
) -> list[float]:
    """Grid MSE of each unseen device after ``learner``, reset to ``weights``, adapts online on ``shots`` samples."""
    errors = []
    for j in range(n_devices):
        device = sine_device(TEST_SEED_BASE + j, stream_key=0)
        learner.set_weights(weights)
        adapt_online(learner, device.stream, shots=shots, learning_rate=learning_rate)
        x, y = device.stream.task.evaluation_grid()
        errors.append(learner.loss(x, y))
    return errors


def adaptation_rows(candidates: dict[str, tuple[Learner, dict[str, np.ndarray]]], config: DemoConfig) -> list[dict]:
    """One row per (method, K): the mean and spread of the unseen devices' MSE."""
    rows = []
    for method, (learner, weights) in candidates.items():
        for k in config.shots:
            errors = evaluate_learner(learner, weights, k, config.n_unseen_devices, config.adaptation_learning_rate)
            rows.append(
                {
                    "method": method,
                    "shots": k,
                    "metric": "mse",
                    "value": float(np.mean(errors)),
                    "std": float(np.std(errors)),
                    "n_devices": config.n_unseen_devices,
                }
            )
    return rows


def plot_adaptation(
    rows: list[dict], candidates: dict[str, tuple[Learner, dict[str, np.ndarray]]], config: DemoConfig, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method in candidates:
        points = [(r["shots"], r["value"]) for r in rows if r["method"] == method]
        left.plot(*zip(*points), marker="o", label=method)
    left.set(xlabel="shots K (online, one SGD step each)", ylabel="MSE on unseen devices", yscale="log",
             title=f"K-shot adaptation, {config.n_unseen_devices} unseen devices")
    left.legend()
    device = sine_device(TEST_SEED_BASE, stream_key=0)
    x, y = device.stream.task.evaluation_grid(200)
    right.plot(x, y, "k--", label="device's true curve")
    shots = 5 if 5 in config.shots else config.shots[0]
    for method, (learner, weights) in candidates.items():
        learner.set_weights(weights)
        stream = sine_device(TEST_SEED_BASE, stream_key=0).stream
        adapt_online(learner, stream, shots=shots, learning_rate=config.adaptation_learning_rate)
        right.plot(x, learner.predict(x), label=f"{method} after {shots} shots")
    right.set(xlabel="x", ylabel="y", title="one unseen device")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def export_device_models(
    theta: dict[str, np.ndarray], config: DemoConfig, directory: Path, step_sizes: dict[str, np.ndarray] | None = None
) -> dict:
    """Ship the meta-model the two ways a device can run it, and check each profile can hold it.

    (a) the whole MLP as a TFLite training graph (every weight trains on the
    device, each with its learned step size); (b) TinyOL: an int8 backbone in
    flash + a float head in RAM, stepping with the last layer's step sizes.
    """
    from edge.tflite_learner import BackboneHeadLearner, FrozenBackbone, TFLiteTrainer
    from edge.device import ModelDoesNotFitError, SimulatedDevice
    from edge.profiles import PROFILES
    from firmware_sim.tasks.sine import X_RANGE
    from server.models.backbone_head import export_int8_backbone, split_backbone_head
    from server.models.sine_mlp import export_training_model

    n_layers = len(config.layer_sizes) - 1
    trainer_path = export_training_model(directory / "sine_mlp_train.tflite", config.layer_sizes, theta,
                                         step_sizes=step_sizes)  # fmt: skip
    calibration = np.linspace(*X_RANGE, 256, dtype=np.float32).reshape(-1, 1)
    backbone_path = export_int8_backbone(theta, directory / "sine_backbone_int8.tflite", calibration, n_layers)
    _, head = split_backbone_head(theta, n_layers)
    np.savez(directory / "sine_head.npz", **head)

    learners = {
        "tflite-trainer": (TFLiteTrainer(trainer_path), trainer_path),
        "int8-backbone+head": (BackboneHeadLearner(FrozenBackbone(backbone_path)), backbone_path),
    }
    models = {}
    for name, (learner, path) in learners.items():
        if name == "int8-backbone+head":
            learner.set_weights(head)
            if step_sizes is not None:  # the head's share of the meta-learned step sizes (last layer's)
                learner.set_step_sizes(split_backbone_head(step_sizes, n_layers)[1])
        fits = {}
        for profile in PROFILES.values():
            try:
                SimulatedDevice("check", profile, iter(())).deploy(learner, flash_bytes=path.stat().st_size)
                fits[profile.name] = "fits"
            except ModelDoesNotFitError as exc:
                fits[profile.name] = str(exc)
        footprint = learner.memory_footprint()
        models[name] = {
            "file": str(path),
            "flash_bytes": path.stat().st_size,
            "ram_bytes": {"weights": footprint.weights, "training": footprint.training, "inference": footprint.inference},
            "fits": fits,
        }
    return {"models": models, "learners": {name: learner for name, (learner, _) in learners.items()}}


class BackgroundVersions:
    """Registers a run's versions on one thread of its own, in round order, while the rounds go on.

    Why: a version costs the server ~10 ms of registry work per round, which otherwise waits for the devices
    and then makes them wait. The thread takes copies of each round's θ and metrics; leaving the ``with``
    block waits until every version is registered, and raises what the registry raised, if anything.
    The demo reads the registry only after that.
    """

    def __init__(self, versions: RunVersions) -> None:
        import queue
        import threading

        self.versions = versions
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._register, name="demo-versions", daemon=True)
        self._thread.start()

    def on_round(self, server_round: int, weights: dict[str, np.ndarray], metrics: dict) -> None:
        if self._error is not None:
            raise RuntimeError("registering a model version failed") from self._error
        self._queue.put((server_round, {k: np.array(v, copy=True) for k, v in weights.items()}, dict(metrics)))

    def _register(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.versions.on_round(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                    self._error = exc

    def __enter__(self) -> BackgroundVersions:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError("registering a model version failed") from self._error


@dataclass
class RegistrySelection:
    """The devices a SPARQL query chose for the federations, and what the federations registered."""

    registry_path: str
    task: str
    model: str
    seeds: list[int]
    excluded: list[str]
    records: dict[str, RunVersions] = field(default_factory=dict)

    def for_method(self, store, method: str, settings: FederationSettings) -> RunVersions:  # type: ignore[no-untyped-def]
        from server.registry.registry_link import FederationRegistry

        registry = FederationRegistry(store, f"sine-{method}")
        registry.link_federation(self.model, self.task)
        return RunVersions(registry, self.model, initial_weights(settings))

    def report(self) -> dict:
        lineage = {}
        for method, recorder in self.records.items():
            final = recorder.versions[-1]
            lineage[method] = {"final_version": final, "lineage_newest_first": recorder.registry.lineage(final, newest=3)}
        return {
            "store": self.registry_path,
            "query": "eligible-devices",
            "model": self.model,
            "task": self.task,
            "selected_devices": [device_id_of(seed) for seed in self.seeds],
            "excluded_devices": self.excluded,
            "versions_registered": {m: len(r.versions) for m, r in self.records.items()},
            "lineage": lineage,
        }


def select_devices_from_registry(store, config: DemoConfig, out: Path) -> RegistrySelection:  # type: ignore[no-untyped-def]
    """Register the candidate fleet, the task and the model; let SPARQL pick who can train it."""
    from server.registry.registry_link import FederationRegistry, wait_until_expired
    from server.registry.registry_selection import SINE_TASK, describe_training_model

    registry = FederationRegistry(store, "sine")
    active = range(config.n_train_devices)
    lapsed = range(config.n_train_devices, config.n_train_devices + config.lapsed_devices)
    registry.register_devices(((device_id_of(s), profile_for(s)) for s in active), ttl_s=24 * 3600)
    registry.register_devices(((device_id_of(s), profile_for(s)) for s in lapsed), ttl_s=1)
    # every lapsing lease started before this moment, however long registering them took
    registered = time.monotonic()
    task = registry.register_task(*SINE_TASK)
    initial = init_mlp_weights(config.layer_sizes, config.init_seed)
    model = describe_training_model(registry, task, config.layer_sizes, initial, out / "models" / "sine_mlp_train.tflite")
    if config.lapsed_devices:
        wait_until_expired(registered, 1)
    chosen = registry.eligible_devices(model, task)
    by_iri = {device_iri(device_id_of(s)): s for s in (*active, *lapsed)}
    seeds = sorted(by_iri[iri] for iri in chosen if iri in by_iri)
    if not seeds:
        raise RuntimeError("the registry found no device able to train the model")
    selected = set(seeds)
    excluded = sorted(device_id_of(s) for s in (*active, *lapsed) if s not in selected)
    return RegistrySelection(str(out / "registry"), task, model, seeds, excluded)


def run_demo(config: DemoConfig, progress: ProgressFn | None = None) -> dict:
    out = Path(config.out_dir)
    if not config.resume and (out / "checkpoints").exists():
        shutil.rmtree(out / "checkpoints")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    inits: dict[str, dict[str, np.ndarray]] = {}
    step_sizes: dict[str, np.ndarray] | None = None
    from ontology.store import open_store

    if not config.resume and (out / "registry").exists():
        shutil.rmtree(out / "registry")
    if config.engine == "inprocess" and config.device_workers > 1:
        from server.transports.inprocess_grid import start_forkserver

        start_forkserver(["firmware_sim.client_app"])  # its imports run beside the registry selection
    store = open_store(f"oxigraph:{out / 'registry'}")
    try:
        started = time.perf_counter()
        selection = select_devices_from_registry(store, config, out)
        timings["registry_selection_s"] = time.perf_counter() - started
        for method in ("tinyreptile", "fedavg"):
            started = time.perf_counter()
            settings = federation_settings(config, method)
            settings = replace(settings, device=replace(settings.device, device_seeds=tuple(selection.seeds)))
            record = selection.for_method(store, method, settings)
            with BackgroundVersions(record) as versions:
                final = train_in_simulation(settings, len(selection.seeds), progress, versions.on_round,
                                           config.engine, config.device_workers)
            inits[method] = final.weights
            if method == "tinyreptile":
                step_sizes = step_sizes_from_state(final.strategy_state)
            timings[f"train_{method}_s"] = time.perf_counter() - started
            selection.records[method] = record
        registry_report = selection.report()
    finally:
        store.close()
    inits["random"] = init_mlp_weights(config.layer_sizes, config.random_init_seed)
    candidates: dict[str, tuple[Learner, dict[str, np.ndarray]]] = {
        "tinyreptile": (learner_with(inits["tinyreptile"], step_sizes), inits["tinyreptile"]),
        "fedavg": (learner_with(inits["fedavg"]), inits["fedavg"]),
        "random": (learner_with(inits["random"]), inits["random"]),
    }
    if step_sizes is not None:  # what θ alone does, at the shared rate: the step sizes' share of the gain
        candidates[THETA_ONLY] = (learner_with(inits["tinyreptile"]), inits["tinyreptile"])
    started = time.perf_counter()
    rows = adaptation_rows(candidates, config)
    timings["evaluate_s"] = time.perf_counter() - started
    plot_path = out / "adaptation.png"
    plot_adaptation(rows, candidates, config, plot_path)

    started = time.perf_counter()
    exported = export_device_models(inits["tinyreptile"], config, out / "models", step_sizes)
    timings["export_s"] = time.perf_counter() - started
    started = time.perf_counter()
    head = exported["learners"]["int8-backbone+head"].get_weights()
    on_device = {
        "tinyreptile/tflite-trainer": (exported["learners"]["tflite-trainer"], inits["tinyreptile"]),
        "tinyreptile/int8-backbone+head": (exported["learners"]["int8-backbone+head"], head),
    }
    device_rows = adaptation_rows(on_device, config)
    for row in device_rows:  # both on-device learners adapt with the learned step sizes (the head: its own)
        row["step_sizes"] = step_sizes is not None
    timings["evaluate_on_device_learners_s"] = time.perf_counter() - started
    report = {
        "adaptation": rows,
        "adaptation_on_device_learners": device_rows,
        "device_models": exported["models"],
        "step_sizes": step_size_summary(step_sizes, out / "models" / "step_sizes.npz"),
        "registry": registry_report,
        "config": asdict(config),
        "timings": timings,
        "plot": str(plot_path),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
