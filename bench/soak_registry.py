"""The registry side of the soak (bench/soak.py): the registry service it kills with -9 mid-write, and the
gateway that keeps registering and re-registering devices through it. Each write carries a generation in the
TD's title, so what survives a kill can be checked against what was acknowledged.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from edge.thing_description import thing_description  # noqa: E402,F401
from firmware_sim.addresses import free_port  # noqa: E402

TOKEN_ENV = "TINYFLEET_REGISTRY_TOKEN"
TD_JSON = {"Content-Type": "application/td+json"}


@dataclass(frozen=True)
class SoakConfig:
    devices: int = 1000
    rounds: int = 50
    sample: int = 100  # devices per round
    churn: float = 0.3  # fraction of the fleet that crashes and comes back once
    round_timeout_s: float = 20.0
    quorum: float = 0.9
    writers: int = 2  # registration threads against the registry service
    refresh_interval_s: float = 0.05  # pause between refresh writes when no device is waiting to be registered
    connect_timeout_s: float = 300.0
    run_timeout_s: float = 3600.0
    seed: int = 0



class RegistryService:
    """``tinyfleet registry serve`` on a fixed port (kept across restarts) over one store directory."""

    def __init__(self, store: Path, token: str, log_dir: Path) -> None:
        self.store = store
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = 300.0) -> None:  # after kill -9 on a loaded machine: over 60 s measured
        env = {**os.environ, TOKEN_ENV: self.token, "PYTHONPATH": str(ROOT)}
        log = open(self.log_dir / f"registry-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ontology.cli", "serve", "--store", str(self.store), "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry service exited with {self.proc.returncode}; see {self.log_dir}")
            try:
                httpx.get(f"{self.url}/queries", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError(f"registry service did not come up in {timeout_s} s")

    def kill(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


# ---------------------------------------------------------------- the registration gateway


@dataclass
class Gateway:
    """Registers devices' TDs through the service: ``PUT /things/<id>``, a 201/204 is an acknowledgement."""

    service: RegistryService
    tds: dict[str, dict[str, Any]]  # device id -> its TD (title set per write)
    config: SoakConfig
    jobs: queue.Queue[str] = field(default_factory=queue.Queue)
    acked: dict[str, int] = field(default_factory=dict)  # device id -> newest generation acknowledged
    generation: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # status -> count (non-2xx answers)
    transport_errors: int = 0
    in_flight: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, device_id: str) -> None:
        self.jobs.put(device_id)

    def _next(self, rng: random.Random) -> str | None:
        try:
            return self.jobs.get(timeout=self.config.refresh_interval_s)
        except queue.Empty:
            with self.lock:
                known = sorted(self.acked)
            return rng.choice(known) if known else None  # a refresh: the gateway re-registers a live device

    def run(self, worker: int) -> None:
        rng = random.Random(self.config.seed * 1000 + worker)
        with httpx.Client(base_url=self.service.url, timeout=30.0,
                          headers={"Authorization": f"Bearer {self.service.token}"}) as client:  # fmt: skip
            while not self.stop.is_set():
                device_id = self._next(rng)
                if device_id is None:
                    continue
                with self.lock:
                    generation = self.generation[device_id] = self.generation.get(device_id, 0) + 1
                    self.in_flight += 1
                td = {**self.tds[device_id], "title": title(device_id, generation)}
                try:
                    response = client.put(f"/things/{device_id}", json=td, headers=TD_JSON)
                except httpx.TransportError:  # the service died under us: not acknowledged, try again later
                    with self.lock:
                        self.transport_errors += 1
                        self.in_flight -= 1
                    self.jobs.put(device_id)
                    time.sleep(0.2)
                    continue
                with self.lock:
                    self.in_flight -= 1
                    if response.status_code in (201, 204):
                        self.acknowledged += 1
                        self.acked[device_id] = max(self.acked.get(device_id, 0), generation)
                    else:
                        self.refused[response.status_code] = self.refused.get(response.status_code, 0) + 1
                        if response.status_code >= 500:
                            self.jobs.put(device_id)


def title(device_id: str, generation: int) -> str:
    return f"{device_id} soak generation {generation}"


def generation_of(td: dict[str, Any]) -> int:
    text = str(td.get("title", ""))
    try:
        return int(text.rsplit(" ", 1)[1]) if " soak generation " in text else -1
    except (IndexError, ValueError):
        return -1


def stored_generations(url: str) -> dict[str, int]:
    """Device IRI -> generation in its stored title, read page by page from ``GET /things``."""
    out: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=60.0) as client:
        offset = 0
        while True:
            page = client.get("/things", params={"offset": offset, "limit": 1000})
            page.raise_for_status()
            things = page.json()
            for td in things:
                out[str(td.get("id"))] = generation_of(td)
            if "next" not in page.headers.get("link", ""):
                return out
            offset += len(things)




# ---------------------------------------------------------------- what a registration writes, and a restart after kill -9

_WRITER = r"""
import json, os, signal, sys, time
from ontology.directory import Directory
from ontology.store import open_store
store_dir, tds_file = sys.argv[1], sys.argv[2]
tds = json.load(open(tds_file))
def wchar():  # bytes this process handed to write(2): the write log, flushed tables and compactions
    return int(next(l for l in open("/proc/self/io") if l.startswith("wchar")).split()[1])
store = open_store(store_dir)
directory = Directory(store)
out = {}
for phase, suffix in (("first", ""), ("again", " (refreshed)")):
    w0, t0 = wchar(), time.perf_counter()
    for device_iri, td in tds:
        directory.put(device_iri, {**td, "title": td["title"] + suffix})
    out[phase] = {"seconds": time.perf_counter() - t0, "written_bytes": wchar() - w0}
print(json.dumps(out), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # as the soak kills the service: nothing flushed or closed on the way out
"""

_OPENER = r"""
import json, sys, time
t0 = time.perf_counter()
from ontology.store import open_store
t1 = time.perf_counter()
store = open_store(sys.argv[1])
t2 = time.perf_counter()
things = store.query("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?g <https://w3id.org/tinyfleet#thingDescriptionDocument> ?d } }")
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "things": int(things.rows[0][0].toPython())}))
"""


def measure_writes(tree: Path, tds_file: Path, workdir: Path) -> dict[str, Any]:
    """Register the TDs in ``tds_file`` twice into a new store with the ontology package of ``tree``, kill -9 the
    writer, then time a fresh process opening the store (RocksDB replays its write log there)."""
    store_dir = workdir / "store"
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"}
    writer = subprocess.run([sys.executable, "-c", _WRITER, str(store_dir), str(tds_file)], env=env, cwd=workdir,
                            capture_output=True, text=True, timeout=3600)  # fmt: skip
    if writer.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the writer ended with {writer.returncode}: {writer.stderr[-2000:]}")
    written = json.loads(writer.stdout.strip().splitlines()[-1])
    log_bytes = sum(p.stat().st_size for p in store_dir.glob("*.log"))
    opener = subprocess.run([sys.executable, "-c", _OPENER, str(store_dir)], env=env, cwd=workdir,
                            capture_output=True, text=True, timeout=3600, check=True)  # fmt: skip
    reopened = json.loads(opener.stdout.strip().splitlines()[-1])
    n = len(json.loads(tds_file.read_text()))
    return {
        "tree": str(tree),
        "tds": n,
        "ms_per_registration": {k: round(1000 * v["seconds"] / n, 1) for k, v in written.items()},
        "written_kib_per_registration": {k: round(v["written_bytes"] / n / 1024, 1) for k, v in written.items()},
        "log_files_mib_at_kill": round(log_bytes / 2**20, 1),
        "open_after_kill_s": round(reopened["open_s"], 2),
        "things_after_kill": reopened["things"],
    }


def writes_bench(n: int, reference: str | None, out: Path) -> dict[str, Any]:
    """This tree's registry against ``reference`` (a git revision, unpacked with ``git archive``) in one run."""
    import platform
    import shutil
    import tempfile
    from datetime import UTC, datetime

    from edge.identity import device_id_of, device_iri
    from firmware_sim.fleet import profile_for

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="registry-writes-") as tmp:
        base = Path(tmp)
        tds_file = base / "tds.json"
        tds = [(device_iri(device_id_of(s)), thing_description(profile_for(s), device_id_of(s))) for s in range(n)]
        tds_file.write_text(json.dumps(tds))
        trees = {"this tree": ROOT}
        if reference:
            ref_tree = base / "reference"
            ref_tree.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", reference, "ontology", "edge"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(ref_tree)], input=archive.stdout, check=True)
            trees = {f"reference {reference}": ref_tree, **trees}
        for name, tree in trees.items():
            work = base / name.replace(" ", "-")
            work.mkdir()
            results[name] = measure_writes(tree, tds_file, work)
            shutil.rmtree(work / "store", ignore_errors=True)
    report: dict[str, Any] = {
        "benchmark": "registry-writes",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count() or 1, "load_avg": os.getloadavg()},
        "command": f"python bench/soak_registry.py --tds {n}" + (f" --reference {reference}" if reference else ""),
        "results": results,
    }
    if reference:
        ref, now = results[f"reference {reference}"], results["this tree"]
        report["ratios_this_over_reference"] = {
            "written_first": round(now["written_kib_per_registration"]["first"] / ref["written_kib_per_registration"]["first"], 3),
            "written_again": round(now["written_kib_per_registration"]["again"] / ref["written_kib_per_registration"]["again"], 3),
            "ms_first": round(now["ms_per_registration"]["first"] / ref["ms_per_registration"]["first"], 3),
            "open_after_kill": round(now["open_after_kill_s"] / max(ref["open_after_kill_s"], 1e-3), 3),
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def validation_ab(rounds: int = 5) -> dict[str, Any]:
    """Same run, same TD graphs: pyshacl with the whole ontology mixed in vs the typing and hierarchy that
    ontology/validation.py now mixes in (median ms per TD check, alternating which goes first)."""
    import statistics

    from pyshacl import validate

    from edge.profiles import PROFILES
    from ontology.thing_description import td_to_graph
    from ontology.validation import _ontology, _shapes
    from ontology.vocab import load_ontology

    variants = {"whole": load_ontology(), "typing": _ontology()}
    graphs = [td_to_graph(thing_description(PROFILES[p], f"d-{i}")) for i, p in enumerate(sorted(PROFILES) * rounds)]
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i, graph in enumerate(graphs):
        for name in (list(variants) if i % 2 else list(reversed(variants))):
            started = time.perf_counter()
            conforms, _report, _text = validate(graph, shacl_graph=_shapes(), ont_graph=variants[name], inference="none")
            times[name].append(time.perf_counter() - started)
            assert conforms
    median = {name: round(1000 * statistics.median(v), 1) for name, v in times.items()}
    return {"tds": len(graphs), "ontology_triples": {k: len(v) for k, v in variants.items()}, "median_ms": median,
            "ratio_typing_over_whole": round(median["typing"] / median["whole"], 2)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="What a TD registration writes to the registry's store, and how long "
                                                 "the store takes to open after the writer is killed with -9.")
    parser.add_argument("--tds", type=int, default=1000, help="registrations (each then refreshed once)")
    parser.add_argument("--reference", help="a git revision to measure in the same run (e.g. 56481ff)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/registry-writes.json"))
    parser.add_argument("--validation-ab", action="store_true", help="only compare the SHACL check with the whole ontology "
                                                                      "mixed in against its typing and hierarchy")
    args = parser.parse_args(argv)
    if args.validation_ab:
        print(json.dumps(validation_ab()))
        return 0
    report = writes_bench(args.tds, args.reference, args.out)
    print(json.dumps(report["results"], indent=2))
    print(json.dumps(report.get("ratios_this_over_reference", {})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
