"""Is the demo's headline robust? TinyReptile vs FedAvg vs random init over many seeds, on validation devices.

The demo (``tinyfleet demo``) reports one training run. This benchmark trains
TinyReptile and FedAvg with the demo's settings (:class:`server.experiments.demo.DemoConfig`)
for S seeds, where seed s changes everything a run depends on: the training
fleet (device seeds ``s·N … s·N+N−1``; s = 0 is the demo's fleet), θ at
round 0, the device sampling of both federations, and the random init it is
compared with (``random_init_seed + s``). It then scores each initialisation
by the mean grid MSE after K online shots on *validation* devices
(:data:`firmware_sim.fleet.VALIDATION_SEED_BASE` onwards, through
:func:`firmware_sim.meta_eval.unseen_device_mse`) — never the demo's test
devices — and reports, per seed and as median / worst over seeds, the 5-shot
ratios TinyReptile/FedAvg (bar: ≤ 0.5) and TinyReptile/random (bar: ≤ 1/3).

How it trains: the very ServerApp code of the demo
(:func:`server.core.federation.run_federation`: the ``TinyReptile`` and
``SeededFedAvg`` strategies, checkpointing, device-ordered sampling) and the
very ClientApp (:mod:`firmware_sim.client_app`), joined by
:class:`server.transports.inprocess_grid.InProcessGrid` instead of Flower's Ray
simulation engine, which costs ~0.1 s per round by itself. Node ids are drawn
at random every run, as Flower does; ``tests/server/test_simulation_reproducible.py``
checks that this grid and Flower's simulation engine give the same θ.

Usage::

    python bench/sine_meta.py                       # 10 seeds (about 3 min each on this shared machine)
    python bench/sine_meta.py --seeds 3 --first-seed 10
    python bench/sine_meta.py --quick               # 2 seeds, 100/30 rounds: a smoke run, not a result
    python bench/sine_meta.py --reptile meta_step_size=0.6 --out runs/bench/candidate.json   # a tuning candidate
    python bench/sine_meta.py --select-lr --out runs/bench/sine_meta_lr.json   # each init its own adaptation rate

With ``--select-lr`` each initialisation (per seed) gets its own adaptation
learning rate: the rate of ``--lr-grid`` with the lowest 5-shot MSE on the
first ``--select-devices`` validation devices, as a deployment would tune it.
Every figure is then scored on the next ``--score-devices`` validation devices
(disjoint from those that chose the rate), with the chosen rate and, for the
before/after comparison, with the demo's fixed rate on the same devices.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edge.adaptation import adapt_online  # noqa: E402
from edge.mlp import NumpyMLP, init_mlp_weights  # noqa: E402
from firmware_sim.client_app import app as client_app  # noqa: E402
from server.transports.inprocess_grid import InProcessGrid  # noqa: E402
from firmware_sim.fleet import VALIDATION_SEED_BASE, sine_device  # noqa: E402
from firmware_sim.meta_eval import unseen_device_mse  # noqa: E402
from server.core.checkpoint import Checkpointer  # noqa: E402
from server.experiments.demo import DemoConfig, federation_settings  # noqa: E402
from server.core.federation import FederationSettings, run_federation  # noqa: E402
from server.strategies.common import round_rng  # noqa: E402
from server.strategies.step_size_learning import StepSizeLearning, step_sizes_from_state  # noqa: E402
from edge.mlp import regression_gradients  # noqa: E402
from edge.step_sizes import stream_hypergradient  # noqa: E402

METHODS = ("tinyreptile", "fedavg")
HEADLINE_SHOTS = 5
BAR_FEDAVG = 0.5  # issue 2: TinyReptile's 5-shot MSE at most half of FedAvg's ...
BAR_RANDOM = 1 / 3  # ... and at most a third of the random init's
LR_GRID = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04)  # per-sample SGD diverges from 0.05 on this task


def settings_key(settings: FederationSettings) -> str:
    """A digest of everything a federation's result depends on (not where it checkpoints)."""
    described = {k: v for k, v in settings.as_dict().items() if k != "checkpoint_dir"}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


STEP_PREFIX = "__step/"  # cached step sizes, beside θ


def train(
    config: DemoConfig, method: str, seed: int, workdir: Path, cache: Path | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, float, bool]:
    """One federation of the demo's ``method`` for ``seed``: final θ, wall time, whether it came from ``cache``.

    Runs are reproducible (the same settings give the same θ bit for bit,
    ``tests/server/test_simulation_reproducible.py``), so a θ cached under the
    digest of its settings is the θ a new run would produce; the cache lets
    tuning candidates share the FedAvg runs and a final run reuse screened seeds.
    """
    run_config = replace(config, init_seed=seed, out_dir=str(workdir / f"seed-{seed}"))
    settings = federation_settings(run_config, method)
    fleet = tuple(range(seed * config.n_train_devices, (seed + 1) * config.n_train_devices))
    settings = replace(settings, device=replace(settings.device, device_seeds=fleet))
    cached = cache / f"{method}-{settings_key(settings)}.npz" if cache is not None else None
    if cached is not None and cached.exists():
        with np.load(cached) as stored:
            weights = {k: stored[k] for k in stored.files if not k.startswith("__")}
            steps = {k.removeprefix(STEP_PREFIX): stored[k] for k in stored.files if k.startswith(STEP_PREFIX)}
            return weights, steps or None, float(stored["__train_s"]), True
    started = time.perf_counter()
    run_federation(InProcessGrid(client_app, len(fleet)), settings)
    elapsed = time.perf_counter() - started
    checkpoint = Checkpointer(settings.checkpoint_dir).load_latest()
    if checkpoint is None or checkpoint.server_round != settings.num_rounds:
        raise RuntimeError(f"{method} seed {seed} did not reach round {settings.num_rounds}")
    steps = step_sizes_from_state(checkpoint.strategy_state)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        stored_steps = {STEP_PREFIX + k: v for k, v in (steps or {}).items()}
        np.savez(cached, **checkpoint.weights, **stored_steps, __train_s=np.float64(elapsed))
    return checkpoint.weights, steps, elapsed, False


def validation_mse(
    theta: dict[str, np.ndarray], layer_sizes: tuple[int, ...], *, first: int, n_devices: int, shots: int,
    learning_rate: float, step_sizes: dict[str, np.ndarray] | None = None,
) -> float:
    """Mean grid MSE of validation devices ``VALIDATION_SEED_BASE + first`` … after ``shots`` online SGD steps.

    The same protocol as :func:`firmware_sim.meta_eval.unseen_device_mse` (which
    always starts at the first validation device), on any slice of them.
    """
    errors = []
    for j in range(first, first + n_devices):
        device = sine_device(VALIDATION_SEED_BASE + j, stream_key=0)
        learner = NumpyMLP(layer_sizes)
        learner.set_weights(theta)
        learner.set_step_sizes(step_sizes)
        adapt_online(learner, device.stream, shots=shots, learning_rate=learning_rate)
        x, y = device.stream.task.evaluation_grid()
        errors.append(learner.loss(x, y))
    return float(np.mean(errors))


def select_learning_rate(
    theta: dict[str, np.ndarray], layer_sizes: tuple[int, ...], grid: tuple[float, ...], *, n_devices: int,
    shots: int = HEADLINE_SHOTS, step_sizes: dict[str, np.ndarray] | None = None,
) -> tuple[float, dict[str, float]]:
    """The rate of ``grid`` with the lowest ``shots``-shot MSE on the first ``n_devices`` validation devices."""
    scores = {str(lr): validation_mse(theta, layer_sizes, first=0, n_devices=n_devices, shots=shots, learning_rate=lr,
                                      step_sizes=step_sizes) for lr in grid}  # fmt: skip
    best = min(grid, key=lambda lr: scores[str(lr)])
    return best, scores


Candidate = tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]  # θ and the step sizes it adapts with
THETA_ONLY = "tinyreptile-theta-only"
FEDAVG_WITH_STEPS = "fedavg+step-sizes"  # control: step sizes learned the same way, on FedAvg's θ


def learn_step_sizes_on(theta: dict[str, np.ndarray], config: DemoConfig, seed: int) -> dict[str, np.ndarray]:
    """Step sizes for a fixed θ, learned as TinyReptile learns its own (same hypergradient, Adam, rounds, devices).

    The control that separates the two halves of TinyReptile's meta-model: do
    the learned step sizes alone make FedAvg's θ as good? Runs in-process on the
    training fleet (no Flower: θ does not move, so there is nothing to federate
    but the hypergradients themselves).
    """
    reptile = config.reptile
    learning = StepSizeLearning(reptile.step_size_learning_rate, reptile.step_size_base_rate,
                                reptile.step_size_shots, reptile.step_size_query)  # fmt: skip
    learning.adam.start(theta)
    fleet = list(range(seed * config.n_train_devices, (seed + 1) * config.n_train_devices))
    gradient = regression_gradients(config.layer_sizes)
    for server_round in range(1, config.reptile_rounds + 1):
        devices = round_rng(seed, server_round, "step-size-control").sample(fleet, reptile.clients_per_round)
        hypergradients = []
        for device_seed in devices:
            stream = sine_device(device_seed, stream_key=server_round).stream
            hyper, _ = stream_hypergradient(theta, learning.scales(), reptile.step_size_base_rate, stream,
                                            reptile.step_size_shots, reptile.step_size_query, gradient)  # fmt: skip
            hypergradients.append(hyper)
        learning.adam.step({k: np.mean([h[k] for h in hypergradients], axis=0) for k in theta})
    return learning.scales()


def train_inits(
    config: DemoConfig, seed: int, workdir: Path, cache: Path | None, control: bool = True
) -> tuple[dict[str, Candidate], dict[str, float], list[str]]:
    """Every candidate for this seed: TinyReptile with and without its step sizes, FedAvg (and, as a control,
    FedAvg's θ with step sizes learned on it), the seed's random init; train seconds; cache hits."""
    candidates: dict[str, Candidate] = {}
    train_s: dict[str, float] = {}
    from_cache: list[str] = []
    for method in METHODS:
        theta, steps, train_s[method], hit = train(config, method, seed, workdir, cache)
        candidates[method] = (theta, steps)
        if hit:
            from_cache.append(method)
    if candidates["tinyreptile"][1] is not None:
        candidates[THETA_ONLY] = (candidates["tinyreptile"][0], None)
        if control:
            started = time.perf_counter()
            fedavg = candidates["fedavg"][0]
            candidates[FEDAVG_WITH_STEPS] = (fedavg, learn_step_sizes_on(fedavg, config, seed))
            train_s[FEDAVG_WITH_STEPS] = time.perf_counter() - started
    candidates["random"] = (init_mlp_weights(config.layer_sizes, config.random_init_seed + seed), None)
    return candidates, train_s, from_cache


def ratios(mse: dict[str, dict[str, float]], prefix: str = "ratio_") -> dict[str, float]:
    """TinyReptile's 5-shot MSE over each other candidate's (the bars compare with fedavg and random)."""
    k = str(HEADLINE_SHOTS)
    return {f"{prefix}tinyreptile_over_{other.replace('-', '_').replace('+', '_plus_')}": mse["tinyreptile"][k] / mse[other][k]
            for other in mse if other != "tinyreptile"}  # fmt: skip


def seed_row(
    config: DemoConfig, seed: int, mse: dict[str, dict[str, float]], train_s: dict[str, float], from_cache: list[str],
    **extra: Any,
) -> dict[str, Any]:
    """One seed's result: its fleet, every candidate's MSE per K and TinyReptile's ratios to each, plus ``extra``."""
    return {
        "seed": seed,
        "fleet": [seed * config.n_train_devices, (seed + 1) * config.n_train_devices - 1],
        "mse": mse,
        **ratios(mse),
        **extra,
        "train_s": train_s,
        "theta_from_cache": from_cache,
    }


def run_seed_selected(
    config: DemoConfig, seed: int, grid: tuple[float, ...], n_select: int, n_score: int, workdir: Path,
    cache: Path | None,
) -> dict[str, Any]:
    """Like :func:`run_seed`, but each init adapts with its own rate, chosen on devices it is not scored on."""
    candidates, train_s, from_cache = train_inits(config, seed, workdir, cache)
    rates: dict[str, float] = {}
    selection: dict[str, dict[str, float]] = {}
    for method, (theta, steps) in candidates.items():
        rates[method], selection[method] = select_learning_rate(theta, config.layer_sizes, grid, n_devices=n_select,
                                                                step_sizes=steps)  # fmt: skip

    def score(method: str, lr: float) -> dict[str, float]:
        theta, steps = candidates[method]
        return {str(k): validation_mse(theta, config.layer_sizes, first=n_select, n_devices=n_score,
                                       shots=k, learning_rate=lr, step_sizes=steps) for k in config.shots}  # fmt: skip

    mse = {method: score(method, rates[method]) for method in candidates}
    fixed = {method: score(method, config.adaptation_learning_rate) for method in candidates}
    return seed_row(config, seed, mse, train_s, from_cache, learning_rates=rates, selection_mse=selection,
                    mse_fixed_lr=fixed, **ratios(fixed, "ratio_fixed_lr_"))  # fmt: skip


def run_seed(config: DemoConfig, seed: int, n_val: int, workdir: Path, cache: Path | None) -> dict[str, Any]:
    candidates, train_s, from_cache = train_inits(config, seed, workdir, cache)
    mse = {
        method: {
            str(k): unseen_device_mse(theta, config.layer_sizes, shots=k, learning_rate=config.adaptation_learning_rate,
                                      n_devices=n_val, step_sizes=steps)
            for k in config.shots
        }
        for method, (theta, steps) in candidates.items()
    }  # fmt: skip
    return seed_row(config, seed, mse, train_s, from_cache)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst (largest) ratio over seeds, and whether the issue's bars hold on every seed."""
    out: dict[str, Any] = {"seeds": len(rows)}
    bars = {"tinyreptile_over_fedavg": BAR_FEDAVG, "tinyreptile_over_random": BAR_RANDOM}
    names = [key.removeprefix("ratio_") for key in rows[0] if key.startswith("ratio_tinyreptile_over_")]
    for name in names:
        values = [r[f"ratio_{name}"] for r in rows]
        out[name] = {
            "median": statistics.median(values),
            "worst": max(values),
            "best": min(values),
            "worst_seed": rows[int(np.argmax(values))]["seed"],
        }
        if name in bars:
            out[name] |= {"bar": bars[name], "holds_on_every_seed": max(values) <= bars[name]}
        if all(f"ratio_fixed_lr_{name}" in r for r in rows):  # --select-lr: the same devices at the fixed rate
            fixed = [r[f"ratio_fixed_lr_{name}"] for r in rows]
            out[f"fixed_lr_{name}"] = {"median": statistics.median(fixed), "worst": max(fixed),
                                       "worst_seed": rows[int(np.argmax(fixed))]["seed"]}  # fmt: skip
    k = str(HEADLINE_SHOTS)
    # Stricter than per-seed pairs: TinyReptile's worst seed against FedAvg's luckiest one.
    out["worst_tinyreptile_over_best_fedavg"] = max(r["mse"]["tinyreptile"][k] for r in rows) / min(
        r["mse"]["fedavg"][k] for r in rows
    )
    for method in rows[0]["mse"]:
        values = [r["mse"][method][str(HEADLINE_SHOTS)] for r in rows]
        out[f"mse_{HEADLINE_SHOTS}shot_{method}"] = {"median": statistics.median(values), "min": min(values),
                                                     "max": max(values)}  # fmt: skip
    return out


def _override(obj: Any, assignments: list[str]) -> Any:
    """``replace(obj, key=value, …)`` from ``key=value`` strings; values parsed as JSON when they can be."""
    names = {f.name for f in fields(obj)}
    changes: dict[str, Any] = {}
    for item in assignments:
        key, _, raw = item.partition("=")
        if key not in names:
            raise SystemExit(f"{type(obj).__name__} has no field {key!r}; fields: {', '.join(sorted(names))}")
        try:
            changes[key] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key] = raw
    return replace(obj, **changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--val-devices", type=int, default=100, help="validation devices scored per init")
    parser.add_argument("--reptile-rounds", type=int)
    parser.add_argument("--fedavg-rounds", type=int)
    parser.add_argument("--reptile", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="TinyReptileConfig overrides, e.g. meta_step_size=0.6 (tuning candidates)")
    parser.add_argument("--reptile-device", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="DeviceRoundConfig overrides of TinyReptile's device round, e.g. stream_samples=40")
    parser.add_argument("--select-lr", action="store_true",
                        help="each init adapts with its own rate from --lr-grid, chosen on other validation devices")
    parser.add_argument("--lr-grid", type=lambda text: tuple(float(v) for v in text.split(",")), default=LR_GRID,
                        help=f"candidate adaptation rates (default {','.join(map(str, LR_GRID))})")
    parser.add_argument("--select-devices", type=int, default=50, help="validation devices 0… that choose the rate")
    parser.add_argument("--score-devices", type=int, default=50, help="the next validation devices, scored")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 100/30 rounds: checks the plumbing only")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/sine_meta.json"))
    parser.add_argument("--cache", type=lambda text: Path(text) if text else None, default=Path("runs/bench/sine_meta_cache"),
                        help="trained θ by settings digest, reused by later runs ('' to disable)")
    args = parser.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.ERROR)  # Flower logs every round; the JSON has the numbers
    from flwr.supercore.logger import FLOWER_LOGGER

    FLOWER_LOGGER.setLevel(logging.ERROR)

    config = DemoConfig()
    if args.quick:
        config = replace(config, reptile_rounds=100, fedavg_rounds=30)
        args.seeds = min(args.seeds, 2)
    if args.reptile_rounds:
        config = replace(config, reptile_rounds=args.reptile_rounds)
    if args.fedavg_rounds:
        config = replace(config, fedavg_rounds=args.fedavg_rounds)
    config = replace(config, reptile=_override(config.reptile, args.reptile),
                     reptile_device=_override(config.reptile_device, args.reptile_device))  # fmt: skip
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if (max(seeds) + 1) * config.n_train_devices > VALIDATION_SEED_BASE:
        parser.error("training fleets would reach the validation devices' seeds")

    result: dict[str, Any] = {
        "benchmark": "sine_meta",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": " ".join(["python bench/sine_meta.py", *(argv if argv is not None else sys.argv[1:])]),
        "trained_through": "run_federation over server.transports.inprocess_grid.InProcessGrid (no Ray)",
        "evaluated_on": (
            f"rate chosen from {list(args.lr_grid)} per init on validation devices {VALIDATION_SEED_BASE} + "
            f"[0, {args.select_devices}), scored on + [{args.select_devices}, {args.select_devices + args.score_devices})"
            if args.select_lr else f"{args.val_devices} validation devices from seed {VALIDATION_SEED_BASE}"
        ),
        "config": asdict(config),
        "per_seed": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sine-meta-") as tmp:
        for seed in seeds:
            cache = args.cache  # None: '--cache ""' (Path("") would be the working directory)
            if args.select_lr:
                row = run_seed_selected(config, seed, args.lr_grid, args.select_devices, args.score_devices, Path(tmp),
                                        cache)  # fmt: skip
            else:
                row = run_seed(config, seed, args.val_devices, Path(tmp), cache)
            result["per_seed"].append(row)
            result["summary"] = summarise(result["per_seed"])
            result["wall_s"] = time.perf_counter() - started
            args.out.write_text(json.dumps(result, indent=2))  # a partial result survives an interrupted run
            k = str(HEADLINE_SHOTS)
            print(f"seed {seed}: {HEADLINE_SHOTS}-shot MSE tinyreptile {row['mse']['tinyreptile'][k]:.3f} "
                  f"fedavg {row['mse']['fedavg'][k]:.3f} random {row['mse']['random'][k]:.3f} -> "
                  f"ratio/fedavg {row['ratio_tinyreptile_over_fedavg']:.3f} "
                  f"ratio/random {row['ratio_tinyreptile_over_random']:.3f} "
                  f"({row['train_s']['tinyreptile']:.0f}+{row['train_s']['fedavg']:.0f} s"
                  f"{', cached: ' + '+'.join(row['theta_from_cache']) if row['theta_from_cache'] else ''})", flush=True)  # fmt: skip
            extra = {m: row["mse"][m][k] for m in (THETA_ONLY, FEDAVG_WITH_STEPS) if m in row["mse"]}
            if extra:
                print("  " + ", ".join(f"{m} {v:.3f}" for m, v in extra.items()), flush=True)
            if args.select_lr:
                print(f"  rates {row['learning_rates']}; at the fixed rate {config.adaptation_learning_rate} on the "
                      f"same devices: ratio/fedavg {row['ratio_fixed_lr_tinyreptile_over_fedavg']:.3f} "
                      f"ratio/random {row['ratio_fixed_lr_tinyreptile_over_random']:.3f}", flush=True)  # fmt: skip
    summary = result["summary"]
    for name in ("tinyreptile_over_fedavg", "tinyreptile_over_random"):
        s = summary[name]
        print(f"{name}: median {s['median']:.3f}, worst {s['worst']:.3f} (seed {s['worst_seed']}), "
              f"bar {s['bar']:.3f} {'holds on every seed' if s['holds_on_every_seed'] else 'does NOT hold on every seed'}")  # fmt: skip
        if f"fixed_lr_{name}" in summary:
            f = summary[f"fixed_lr_{name}"]
            print(f"  same devices, fixed rate: median {f['median']:.3f}, worst {f['worst']:.3f} (seed {f['worst_seed']})")
    print(f"worst TinyReptile seed / best FedAvg seed: {summary['worst_tinyreptile_over_best_fedavg']:.3f}")
    print(f"-> {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
