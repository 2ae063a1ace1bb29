"""Registry matchmaking latency at fleet scale: our store vs raw pyoxigraph vs rdflib's in-memory store.

What it answers: with N devices and M models registered (default 100,000 and
10,000, as issue 3 asks), how long do the two questions the federation asks
take -- "models that fit a device" (``models-for-device``) and "devices
eligible for a task" (``eligible-devices``) -- through the project's own
registry code (:func:`ontology.named_queries.run_named_query` over an Oxigraph
directory opened with :func:`ontology.store.open_store`), and how does that
compare, *in the same run on the same data and the same parameter choices*,
with (b) the same query text on a bare ``pyoxigraph.Store`` in a directory and
(c) rdflib's default pure-Python in-memory Dataset (capped in size, since it
is orders of magnitude slower; its scale is reported next to its numbers).

The goal (issue 3): p50 under 50 ms and within 1.5x of raw pyoxigraph. The
JSON records the percentiles, the ratios ours/raw and whether each goal holds.
Each parameter choice is run ``--repeats`` times per backend (default 3,
alternating which goes first) and its median is that choice's sample: on a
shared 2-core machine one scheduling delay is as long as a small query.
Answers are not capped (``max_results=None``) so every backend returns the
same rows; the mean row count is reported because latency grows with it.

Synthetic fleet: devices drawn from the firmware_sim profiles (usable
RAM/flash scaled by a random factor, each profile sensor kept with p=0.7, 10 %
of registrations expired), 20 tasks needing one or two sensor kinds, models
with log-uniform flash (8 KB-2 MB) and arena (2-400 KB) sizes and a TinyOL
training-RAM figure. Each resource lives in its own named graph, as in the
registry. Usage::

    python bench/registry.py                      # full scale
    python bench/registry.py --quick              # 2,000 devices / 200 models
    python bench/registry.py --devices 20000 --models 2000 --out runs/bench/x.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from rdflib import URIRef

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from edge.profiles import PROFILES  # noqa: E402
from ontology.named_queries import get_named_query, run_named_query  # noqa: E402
from ontology.store import open_store  # noqa: E402
from ontology.vocab import RESOURCE_BASE, RUNTIMES, SENSOR_CLASSES, TF  # noqa: E402

QUERIES = ("models-for-device", "eligible-devices")
GOAL_P50_MS = 50.0
GOAL_RATIO = 1.5
N_TASKS = 20
RDF_TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
XSD = "http://www.w3.org/2001/XMLSchema#"


@dataclass
class Fleet:
    """The synthetic registry: N-Quads text plus the IRIs to draw query parameters from."""

    nquads: bytes
    devices: list[str]
    trainable: list[tuple[str, str]]  # (model, its task)
    quads: int


def _lit(value: int | str, datatype: str) -> str:
    return f'"{value}"^^<{XSD}{datatype}>'


def generate(n_devices: int, n_models: int, seed: int) -> Fleet:
    """A fleet of ``n_devices`` devices and ``n_models`` models, one named graph each."""
    rng = random.Random(seed)
    tf = str(TF)
    kinds = sorted(SENSOR_CLASSES)
    tasks = [(f"{RESOURCE_BASE}task/t{i}", rng.sample(kinds, rng.choice((1, 1, 2)))) for i in range(N_TASKS)]
    now = datetime.now(UTC)
    lines: list[str] = []
    devices: list[str] = []
    profiles = list(PROFILES.values())
    for i in range(n_devices):
        profile = rng.choice(profiles)
        dev = f"{RESOURCE_BASE}device/d{i}"
        g = f"<{dev}>"
        devices.append(dev)
        scale = rng.choice((0.5, 1.0, 1.0, 2.0))
        quad = lines.append
        quad(f"<{dev}> {RDF_TYPE} <{tf}Device> {g} .")
        quad(f"<{dev}> {RDF_TYPE} <https://www.w3.org/2019/wot/td#Thing> {g} .")
        quad(f'<{dev}> <https://www.w3.org/2019/wot/td#title> "{profile.board} d{i}" {g} .')
        quad(f"<{dev}> <{tf}hasMicrocontroller> _:m{i} {g} .")
        quad(f"_:m{i} {RDF_TYPE} <{tf}Microcontroller> {g} .")
        quad(f"_:m{i} <{tf}ramBytes> {_lit(int(profile.usable_ram_bytes * scale), 'integer')} {g} .")
        quad(f"_:m{i} <{tf}flashBytes> {_lit(int(profile.usable_flash_bytes * scale), 'integer')} {g} .")
        quad(f"_:m{i} <{tf}clockHz> {_lit(profile.clock_hz, 'integer')} {g} .")
        quad(f'_:m{i} <{tf}architecture> "{profile.architecture}" {g} .')
        for k, kind in enumerate(s for s in profile.sensors if rng.random() < 0.7):
            quad(f"<{dev}> <{tf}hasSensor> _:s{i}x{k} {g} .")
            quad(f"_:s{i}x{k} {RDF_TYPE} <{tf}{SENSOR_CLASSES[kind]}> {g} .")
        quad(f"<{dev}> <{tf}supportsRuntime> <{tf}{RUNTIMES[profile.runtime]}> {g} .")
        expires = now + timedelta(days=-1 if rng.random() < 0.1 else 30)
        quad(f"<{dev}> <{tf}registrationExpires> {_lit(expires.strftime('%Y-%m-%dT%H:%M:%SZ'), 'dateTime')} {g} .")
    g_tasks = f"<{RESOURCE_BASE}graph/tasks>"
    for task, needs in tasks:
        lines.append(f"<{task}> {RDF_TYPE} <{tf}Task> {g_tasks} .")
        for kind in needs:
            lines.append(f"<{task}> <{tf}requiresSensorType> <{tf}{SENSOR_CLASSES[kind]}> {g_tasks} .")
    trainable: list[tuple[str, str]] = []
    for j in range(n_models):
        model = f"{RESOURCE_BASE}model/m{j}"
        g = f"<{model}>"
        task = rng.choice(tasks)[0]
        arena = int(2048 * (200 ** rng.random()))
        flash = int(8192 * (256 ** rng.random()))
        runtime = "TFLiteMicro" if rng.random() < 0.9 else "LiteRT"
        quad = lines.append
        quad(f"<{model}> {RDF_TYPE} <{tf}Model> {g} .")
        quad(f'<{model}> <https://schema.org/name> "model-{j}" {g} .')
        quad(f"<{model}> <{tf}forTask> <{task}> {g} .")
        quad(f"<{model}> <{tf}runtime> <{tf}{runtime}> {g} .")
        quad(f"<{model}> <{tf}modelSizeBytes> {_lit(flash, 'integer')} {g} .")
        quad(f"<{model}> <{tf}tensorArenaBytes> {_lit(arena, 'integer')} {g} .")
        quad(f"<{model}> <{tf}parameterCount> {_lit(flash // 2, 'integer')} {g} .")
        quad(f"<{model}> <{tf}hasOnDeviceTraining> _:t{j} {g} .")
        quad(f"_:t{j} {RDF_TYPE} <{tf}OnDeviceTraining> {g} .")
        quad(f"_:t{j} <{tf}trainingRamBytes> {_lit(arena + int(arena * rng.random()), 'integer')} {g} .")
        trainable.append((model, task))
    return Fleet(("\n".join(lines) + "\n").encode(), devices, trainable, len(lines))


def percentile(samples_ms: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(samples_ms)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(samples_ms: list[float], rows: list[int]) -> dict[str, Any]:
    return {
        "samples": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 3),
        "p95_ms": round(percentile(samples_ms, 95), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
        "mean_rows": round(statistics.fmean(rows), 1),
    }


def timed(run: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = run()
    return (time.perf_counter() - started) * 1000, rows


def param_choices(fleet: Fleet, name: str, n: int, rng: random.Random) -> list[dict[str, str]]:
    if name == "models-for-device":
        return [{"device": rng.choice(fleet.devices)} for _ in range(n)]
    return [{"model": m, "task": t} for m, t in (rng.choice(fleet.trainable) for _ in range(n))]


def bench(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    fleet = generate(args.devices, args.models, args.seed)
    generate_s = time.perf_counter() - started
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    ours = open_store(f"oxigraph:{work / 'ours'}")
    ours.bulk_load_nquads(fleet.nquads)
    load_ours_s = time.perf_counter() - started
    started = time.perf_counter()
    raw = ox.Store(str(work / "raw"))
    raw.bulk_load(fleet.nquads, ox.RdfFormat.N_QUADS)
    # The same data as ours, derived capability facts included (the queries read them).
    raw.bulk_load(ours.derived_nquads()[0].encode(), ox.RdfFormat.N_QUADS)
    raw.load(ours.get_graph("https://w3id.org/tinyfleet/graph/ontology").serialize(format="nt").encode(),
             ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode("https://w3id.org/tinyfleet/graph/ontology"))
    load_raw_s = time.perf_counter() - started

    rd_devices, rd_models = min(args.devices, args.rdflib_devices), min(args.models, args.rdflib_models)
    small = generate(rd_devices, rd_models, args.seed) if (rd_devices, rd_models) != (args.devices, args.models) else fleet
    started = time.perf_counter()
    rdflib_store = open_store("rdflib-memory:")
    rdflib_store.bulk_load_nquads(small.nquads)  # parses through rdflib, then derives the capability facts
    rdflib_ds = rdflib_store.dataset
    load_rdflib_s = time.perf_counter() - started

    result: dict[str, Any] = {
        "benchmark": "registry-matchmaking",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"devices": args.devices, "models": args.models, "samples": args.samples, "repeats": args.repeats, "seed": args.seed,
                   "rdflib_devices": rd_devices, "rdflib_models": rd_models, "rdflib_samples": args.rdflib_samples},
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "pyoxigraph": version("pyoxigraph"), "rdflib": version("rdflib"), "oxrdflib": version("oxrdflib")},
        "dataset": {"quads": fleet.quads, "rdflib_quads": small.quads, "generate_s": round(generate_s, 3)},
        "load_s": {"ours": round(load_ours_s, 3), "raw_pyoxigraph": round(load_raw_s, 3), "rdflib_memory": round(load_rdflib_s, 3)},
        "goal": {"p50_ms_below": GOAL_P50_MS, "max_ratio_ours_over_raw": GOAL_RATIO},
        "queries": {},
    }
    for name in QUERIES:
        text = get_named_query(name).text
        choices = param_choices(fleet, name, args.samples, rng)

        def run_ours(params: dict[str, str]) -> int:
            return len(run_named_query(ours, name, params, timeout_s=None, max_results=None).rows)  # sorted, as users get it

        def run_raw(params: dict[str, str]) -> int:
            subs = {ox.Variable(k): ox.NamedNode(v) for k, v in params.items()}
            return sum(1 for row in raw.query(text, substitutions=subs, use_default_graph_as_union=True) if list(row) is not None)

        def run_rdflib(params: dict[str, str]) -> int:
            return len(list(rdflib_ds.query(text, initBindings={k: URIRef(v) for k, v in params.items()})))

        for params in choices[:3]:  # warm caches for both Oxigraph stores alike
            run_ours(params), run_raw(params)
        timings: dict[str, tuple[list[float], list[int]]] = {"ours": ([], []), "raw_pyoxigraph": ([], [])}
        for i, params in enumerate(choices):
            order = (("ours", run_ours), ("raw_pyoxigraph", run_raw))
            runs: dict[str, list[tuple[float, int]]] = {"ours": [], "raw_pyoxigraph": []}
            for repeat in range(args.repeats):
                for label, runner in order if (i + repeat) % 2 == 0 else order[::-1]:  # alternate who goes first
                    runs[label].append(timed(lambda: runner(params)))  # noqa: B023
            for label, measured in runs.items():  # one figure per parameter choice: the median of its repeats
                timings[label][0].append(statistics.median(ms for ms, _ in measured))
                timings[label][1].append(measured[0][1])
        entry = {label: summarise(ms, rows) for label, (ms, rows) in timings.items()}
        if timings["ours"][1] != timings["raw_pyoxigraph"][1]:
            raise AssertionError(f"{name}: our store and raw pyoxigraph returned different row counts")
        rd_choices = param_choices(small, name, args.rdflib_samples, rng)
        rd_ms, rd_rows = [], []
        for params in rd_choices:
            ms, rows = timed(lambda: run_rdflib(params))  # noqa: B023
            rd_ms.append(ms)
            rd_rows.append(rows)
        entry["rdflib_memory"] = {**summarise(rd_ms, rd_rows), "devices": rd_devices, "models": rd_models}
        p50_ratio = entry["ours"]["p50_ms"] / entry["raw_pyoxigraph"]["p50_ms"]
        p95_ratio = entry["ours"]["p95_ms"] / entry["raw_pyoxigraph"]["p95_ms"]
        entry["ratio_ours_over_raw"] = {"p50": round(p50_ratio, 3), "p95": round(p95_ratio, 3)}
        entry["goal_met"] = {
            "p50_below_50ms": entry["ours"]["p50_ms"] < GOAL_P50_MS,
            "within_1_5x_raw": p50_ratio <= GOAL_RATIO,
        }
        entry["goal_met"]["all"] = all(entry["goal_met"].values())
        result["queries"][name] = entry
    result["goal_met"] = all(q["goal_met"]["all"] for q in result["queries"].values())
    ours.close()
    return result


def query_ab(args: argparse.Namespace) -> dict[str, Any]:
    """The shipped named queries against their text at ``args.query_ab`` (a git revision), same store, same
    parameter choices, alternating which goes first: what a change of the query text costs."""
    import subprocess

    rng = random.Random(args.seed)
    fleet = generate(args.devices, args.models, args.seed)
    store = open_store(f"oxigraph:{Path(args.workdir) / 'ab'}")
    store.bulk_load_nquads(fleet.nquads)
    out: dict[str, Any] = {"benchmark": "registry-query-ab", "reference": args.query_ab, "devices": args.devices,
                           "models": args.models, "created": datetime.now(UTC).isoformat(timespec="seconds"), "queries": {}}
    for name in ("models-for-device", "eligible-devices"):
        old = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.query_ab}:ontology/queries/{name}.rq"],
                             capture_output=True, text=True, check=True).stdout
        texts = {"reference": old, "now": get_named_query(name).text}
        samples: dict[str, list[float]] = {"reference": [], "now": []}
        for i, params in enumerate(param_choices(fleet, name, args.samples, rng)):
            bindings = {k: URIRef(v) for k, v in params.items()}
            for variant in (("reference", "now") if i % 2 else ("now", "reference")):
                runs = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    store.query(texts[variant], bindings, isolate=False, self_contained=True, max_results=None)
                    runs.append((time.perf_counter() - started) * 1000)
                samples[variant].append(statistics.median(runs))
        p50 = {k: round(percentile(v, 50), 3) for k, v in samples.items()}
        out["queries"][name] = {"p50_ms": p50, "p95_ms": {k: round(percentile(v, 95), 3) for k, v in samples.items()},
                                "ratio_now_over_reference_p50": round(p50["now"] / p50["reference"], 3)}
    store.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="CI scale: 2,000 devices and 200 models (overrides --devices/--models).")
    parser.add_argument("--samples", type=int, default=50, help="Random parameter choices per query.")
    parser.add_argument("--repeats", type=int, default=3,
                        help="Runs per parameter choice and backend, alternating; its median is the sample (a shared "
                             "machine's scheduling jitter is of the order of a small query's time).")
    parser.add_argument("--rdflib-devices", type=int, default=5_000, help="Cap on rdflib's fleet (pure Python: ~100x slower).")
    parser.add_argument("--rdflib-models", type=int, default=500)
    parser.add_argument("--rdflib-samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", default=None, help="Where the Oxigraph directories go (default: a new temp dir).")
    parser.add_argument("--out", default=None, help="default runs/bench/registry.json (registry-query-ab.json with --query-ab)")
    parser.add_argument("--query-ab", metavar="REV", help="only time the named queries' text now against their text at git "
                                                           "revision REV, on one store (ratio now / REV)")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.models = 2_000, 200
    args.out = args.out or ("runs/bench/registry-query-ab.json" if args.query_ab else "runs/bench/registry.json")
    if min(args.devices, args.models, args.samples, args.rdflib_samples, args.repeats) < 1:
        parser.error("--devices, --models, --repeats and the sample counts must be >= 1")
    temporary = args.workdir is None
    if temporary:
        args.workdir = tempfile.mkdtemp(prefix="tinyfleet-bench-")
    try:
        result = query_ab(args) if args.query_ab else bench(args)
    finally:
        if temporary:
            shutil.rmtree(args.workdir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.query_ab:
        print(json.dumps(result["queries"]))
        return result
    for name, entry in result["queries"].items():
        print(f"{name}: ours p50 {entry['ours']['p50_ms']:.1f} ms p95 {entry['ours']['p95_ms']:.1f} ms | "
              f"raw p50 {entry['raw_pyoxigraph']['p50_ms']:.1f} ms | ratio {entry['ratio_ours_over_raw']['p50']:.2f} | "
              f"rdflib ({entry['rdflib_memory']['devices']} dev) p50 {entry['rdflib_memory']['p50_ms']:.1f} ms | "
              f"rows {entry['ours']['mean_rows']:.0f} | goal {'met' if entry['goal_met']['all'] else 'NOT met'}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
