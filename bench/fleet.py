"""A fleet of simulated MCUs on mosquitto: full updates vs Top-10% under TinyMetaFed.

What it answers (issue 4): with N simulated devices (default 1,000) each on
its own MQTT connection to a real mosquitto (:class:`server.transports.broker.LocalBroker`,
per-device accounts and ACL), and rounds of M sampled devices (default 100)
driven by Flower's ``Strategy.start`` over :class:`server.transports.mqtt_grid.MqttGrid`:

- round wall time (p50 / max over rounds),
- bytes up and down per round, counted from the payloads (the strategy's
  per-device traffic: UPDATE sizes up, MODEL + task JSON down),
- MSE on unseen devices (:func:`firmware_sim.meta_eval.unseen_device_mse`)
  after they reconstruct the head and adapt from the final θ,

for dense updates (Top-P = 1, the reference) and for Top-10%, measured in the
same run on fresh fleets with the same seeds, so both see the same devices and
samples. Ratios: uplink full/top10 (goal ≥ 5) and MSE top10/full (goal ≤ 1.05).

Each device is an independent paho client with its own credentials and Last
Will. By default all their sockets are served by one epoll thread
(:mod:`firmware_sim.mqtt_selector`): paho's ``loop_start`` (a ``select()``
thread per client, 3 fds each) stops connecting past ~340 clients per
process, so ``--client-loop threads`` is only usable for small fleets. The
JSON records the fleet's connect time and thread count. Usage::

    python bench/fleet.py                 # 1,000 devices, rounds of 100
    python bench/fleet.py --quick         # 100 devices, rounds of 20
    python bench/fleet.py --devices 200 --sample 50 --rounds 4 --out runs/bench/x.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord  # noqa: E402

from edge import record_keys as keys  # noqa: E402
from edge.flower_records import from_array_record, to_array_record  # noqa: E402
from edge.mlp import init_mlp_weights  # noqa: E402
from firmware_sim.meta_eval import unseen_device_mse  # noqa: E402
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet, device_id_of  # noqa: E402
from firmware_sim.mqtt_selector import SelectorFleet  # noqa: E402
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker  # noqa: E402
from server.transports.mqtt_grid import MqttGrid, MqttGridConfig  # noqa: E402
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig  # noqa: E402

LAYERS = (1, 40, 40, 1)
PRIVATE = ("w2", "b2")
DEVICE_ROUND = {keys.INNER_LEARNING_RATE: 0.02, keys.STREAM_SAMPLES: 10, keys.PROBE_SAMPLES: 5}


@dataclass(frozen=True)
class BenchConfig:
    devices: int = 1000
    sample: int = 100
    rounds: int = 10
    top_p: float = 0.1
    eval_devices: int = 50
    workers: int = 4
    round_timeout_s: float = 60.0
    connect_timeout_s: float = 300.0
    seed: int = 0
    client_loop: str = "selector"  # or "threads": paho loop_start per client


def run_variant(config: BenchConfig, top_p: float, workdir: Path) -> dict[str, Any]:
    """One federation on a fresh broker and fleet; timings, traffic and the unseen-device MSE."""
    seeds = range(config.devices)
    accounts = BrokerAccounts()
    accounts.add_devices(device_id_of(s) for s in seeds)
    threads_before = threading.active_count()
    broker = LocalBroker(workdir / f"broker-{top_p:g}", accounts, persistence=False)
    broker.write_config()  # sizes mosquitto's per-client queue to the fleet
    with broker:
        fleet_config = FleetConfig(port=broker.port, layer_sizes=LAYERS, workers=config.workers, keepalive_s=60)
        fleet_type = SelectorFleet if config.client_loop == "selector" else MqttFleet
        fleet = fleet_type(seeds, accounts.devices, fleet_config)
        start = time.perf_counter()
        fleet.start(timeout_s=config.connect_timeout_s)
        connect_s = time.perf_counter() - start
        threads = threading.active_count() - threads_before
        try:
            grid_config = MqttGridConfig(
                host=broker.host, port=broker.port, username=SERVER_USER, password=accounts.server_password,
                round_timeout_s=config.round_timeout_s, device_deadline_s=config.round_timeout_s, grace_s=1.0,
            )  # fmt: skip
            with MqttGrid(grid_config) as grid:
                deadline = time.monotonic() + config.connect_timeout_s
                while len(grid.get_node_ids()) < config.devices:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only {len(grid.get_node_ids())} of {config.devices} devices announced")
                    time.sleep(0.1)
                announce_s = time.perf_counter() - start
                strategy = TinyMetaFed(TinyMetaFedConfig(
                    clients_per_round=config.sample, total_rounds=config.rounds, meta_step_size=1.0, top_p=top_p,
                    private_names=PRIVATE, node_timeout_s=config.round_timeout_s, seed=config.seed,
                ))  # fmt: skip
                marks = [time.perf_counter()]

                def after_round(server_round: int, _arrays: ArrayRecord) -> MetricRecord | None:
                    if server_round > 0:
                        marks.append(time.perf_counter())
                    return None

                theta0 = init_mlp_weights(LAYERS, config.seed)
                result = strategy.start(
                    grid=grid, initial_arrays=to_array_record(theta0), num_rounds=config.rounds,
                    timeout=config.round_timeout_s, train_config=ConfigRecord(dict(DEVICE_ROUND)),
                    evaluate_fn=after_round,
                )  # fmt: skip
                theta = from_array_record(result.arrays)
                round_log = list(grid.round_log)
                drops = dict(grid.drops)
        finally:
            fleet.stop()
    round_s = [b - a for a, b in zip(marks, marks[1:])]
    per_round = [
        {
            "up_bytes": sum(t.get(keys.BYTES_SENT, 0.0) for t in nodes.values()),
            "down_bytes": sum(t.get(keys.BYTES_RECEIVED, 0.0) for t in nodes.values()),
            "replies": len(nodes),
        }
        for _, nodes in sorted(strategy.traffic.items())
    ]
    mse = unseen_device_mse(theta, LAYERS, private_names=PRIVATE, n_devices=config.eval_devices)
    return {
        "top_p": top_p,
        "connect_s": connect_s,
        "announce_s": announce_s,
        "client_threads": threads,
        "round_wall_s": {"p50": statistics.median(round_s), "max": max(round_s), "all": round_s},
        "up_bytes_per_round": statistics.mean(r["up_bytes"] for r in per_round),
        "down_bytes_per_round": statistics.mean(r["down_bytes"] for r in per_round),
        "up_bytes_per_device": statistics.mean(r["up_bytes"] / r["replies"] for r in per_round),
        "replies_per_round": [r["replies"] for r in per_round],
        "closed": [r["closed"] for r in round_log],
        "drops": drops,
        "unseen_mse": mse,
    }


def run(config: BenchConfig, workdir: Path) -> dict[str, Any]:
    init_mse = unseen_device_mse(init_mlp_weights(LAYERS, config.seed), LAYERS, private_names=PRIVATE,
                                 n_devices=config.eval_devices)  # fmt: skip
    full = run_variant(config, 1.0, workdir)  # the reference: dense updates
    top = run_variant(config, config.top_p, workdir)
    uplink_ratio = full["up_bytes_per_round"] / top["up_bytes_per_round"]
    mse_ratio = top["unseen_mse"] / full["unseen_mse"]
    return {
        "benchmark": "fleet",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
        "config": {**asdict(config)},
        "unseen_mse_at_init": init_mse,
        "full": full,
        "top_p": top,
        "ratios": {
            "uplink_full_over_top_p": uplink_ratio,
            "downlink_full_over_top_p": full["down_bytes_per_round"] / top["down_bytes_per_round"],
            "mse_top_p_over_full": mse_ratio,
            "round_wall_p50_top_p_over_full": top["round_wall_s"]["p50"] / full["round_wall_s"]["p50"],
        },
        "goal_met": {"uplink_cut_at_least_5x": uplink_ratio >= 5.0, "mse_within_5_percent": mse_ratio <= 1.05},
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, help="simulated devices on the broker (default 1000; --quick 100)")
    parser.add_argument("--sample", type=int, help="devices per round (default 100; --quick 20)")
    parser.add_argument("--rounds", type=int, help="rounds per variant (default 10; --quick 5)")
    parser.add_argument("--top-p", type=float, default=0.1)
    parser.add_argument("--eval-devices", type=int, default=50)
    parser.add_argument("--client-loop", choices=("selector", "threads"), default="selector")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", type=Path, help="broker files (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/fleet.json"))
    args = parser.parse_args(argv)
    from flwr.supercore.logger import FLOWER_LOGGER

    FLOWER_LOGGER.setLevel("WARNING")  # Flower logs every round; the JSON has the numbers
    quick = {"devices": 100, "sample": 20, "rounds": 5} if args.quick else {}
    chosen = {k: getattr(args, k) for k in ("devices", "sample", "rounds") if getattr(args, k) is not None}
    config = BenchConfig(**{**quick, **chosen}, top_p=args.top_p, eval_devices=args.eval_devices,
                         client_loop=args.client_loop)
    if not 0 < config.sample <= config.devices or config.rounds < 1 or not 0 < config.top_p < 1:
        parser.error("need 0 < sample <= devices, rounds >= 1 and 0 < top-p < 1")
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        result = run(config, args.workdir or Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    ratios = result["ratios"]
    print(f"uplink full/top-p {ratios['uplink_full_over_top_p']:.1f}x, MSE top-p/full {ratios['mse_top_p_over_full']:.3f}, "
          f"round p50 {result['top_p']['round_wall_s']['p50']:.2f} s (full {result['full']['round_wall_s']['p50']:.2f} s) "
          f"-> {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
