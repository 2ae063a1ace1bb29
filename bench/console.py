"""Does the fleet console slow a round? Round wall time with and without the console open, 100 devices on mosquitto.

One MQTT federation, wired as ``tinyfleet server --local-broker --registry DIR`` wires
it (a private mosquitto with per-device accounts, 100 simulated MCUs each on its own
MQTT connection, run by ``tinyfleet fleet run`` in a process of their own as a user
runs them, an Oxigraph registry that registers their TDs and picks the eligible
ones, every version registered), runs ``--phases`` phases of ``--rounds`` rounds
(``--fleet inprocess`` puts the devices into the server's process instead, the harsher
case: 100 paho clients' threads and the console's share one interpreter lock). The
phases alternate: *off* (no console at all) and *on* (the console started in the
server's process as ``tinyfleet server --console`` will start it, sharing the store,
observing the round loop, subscribed to the broker, with a real headless chromium
showing its Fleet page and the run's page in two tabs, live: both event streams
open, every fragment re-fetched as rounds land and devices report). The console is
switched between rounds; a round's wall time runs from the end of the previous
round's observers to the end of its own, so the switch is not counted. Round 1 (the
wait for devices) is left out, and so is the first round of every phase, in both
arms: it carries the switch's after-effects (the pages loading, the console's
subscription taking 100 retained TDs, or its threads winding down).

The figure is the **phase-paired ratio**: each on phase's median round time against
the mean of the off phases either side, and the median of those ratios (goal ≤ 1.05).
Why paired: on a shared 2-core VM the same round's CPU time drifts by a third over a
few minutes (measured here: 1.2 s to 1.9 s of process CPU for identical rounds), and
short interleaved phases compared with their neighbours cancel that drift, where one
median over all on rounds against one over all off rounds does not (it is reported
too). The CPU the console's threads and the browser's processes take per round is
measured directly, the cost without the noise. ``--client sse`` replaces the browser
by a Python client doing what ``console.js`` does (both streams, fragment fetches), for
machines without chromium; that client runs in this process, so its own CPU counts.
Usage::

    python bench/console.py                      # 100 devices, 50 per round, 30 phases of 4 rounds
    python bench/console.py --phases 4 --rounds 5 --out runs/bench/console-quick.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet, device_id_of  # noqa: E402
from server.console import start_console  # noqa: E402
from server.core.round_loop import RoundReport  # noqa: E402
from server.core.run_config import flatten_settings, settings_from_run_config  # noqa: E402
from server.core.run_dir import ROUNDS_LOG, RoundsLog  # noqa: E402
from server.serve import device_selection, open_registry, run_versions, write_accounts  # noqa: E402
from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker  # noqa: E402
from server.transports.mqtt_grid import MqttGrid, MqttGridConfig  # noqa: E402

FEDERATION = "mqtt-console-bench"


@dataclass(frozen=True)
class BenchConfig:
    devices: int = 100
    sample: int = 50
    phases: int = 30  # alternating off, on, off, on, ...: short phases, so the machine's drift hits both alike
    rounds: int = 4  # per phase; the first of each is the switch's and is not timed
    client: str = "browser"  # or "sse"
    fleet: str = "process"  # the devices in their own process (as `tinyfleet fleet run`), or "inprocess"
    pages: tuple[str, ...] = ("fleet", "run")  # what the client has open; () = the console runs, nobody looks
    round_timeout_s: float = 60.0


class SseClient:
    """What ``console.js`` does, in Python: both event streams open, every fragment re-fetched on news (≤ 1/s)."""

    def __init__(self, url: str, fragments: list[str]) -> None:
        self.url, self.fragments = url, fragments
        self.stop_flag = threading.Event()
        self.news = threading.Event()
        self.fetches = 0
        self.threads = [threading.Thread(target=self._listen, args=(p,), daemon=True)
                        for p in ("/api/stream", "/api/registry/events")]
        self.threads.append(threading.Thread(target=self._fetch, daemon=True))
        for thread in self.threads:
            thread.start()

    def _listen(self, path: str) -> None:
        with httpx.stream("GET", self.url + path, timeout=httpx.Timeout(5, read=None)) as response:
            for line in response.iter_lines():
                if self.stop_flag.is_set():
                    return
                if line.startswith("event:"):
                    self.news.set()

    def _fetch(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop_flag.is_set():
                if self.news.wait(0.5):
                    self.news.clear()
                    for fragment in self.fragments:
                        client.get(fragment)
                        self.fetches += 1
                    time.sleep(1.0)

    def close(self) -> None:
        self.stop_flag.set()


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(stat_path: str) -> float:
    """utime + stime of one /proc stat file, in seconds (0 if it went away)."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def threads_cpu_s(native_ids: set[int]) -> float:
    """CPU of these threads of this process: the console's own threads (uvicorn, its MQTT subscription)."""
    return sum(_proc_cpu_s(f"/proc/self/task/{tid}/stat") for tid in native_ids)


def tree_cpu_s(root_pid: int) -> float:
    """CPU of a process and all its descendants alive now (chromedriver and the chromium it started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += _proc_cpu_s(f"/proc/{pid}/stat")
        todo.extend(children.get(pid, ()))
    return total


class Browser:
    """A headless chromium (Debian's, via selenium; never a download) with the Fleet page and the run's page open."""

    def __init__(self, profile: Path) -> None:
        sys.path.insert(0, str(ROOT / "tests" / "server" / "console"))
        from console_browser import chromium

        self.driver = chromium(profile)
        self.driver.execute_script("window.open('about:blank');")
        self.tabs = self.driver.window_handles

    def show(self, urls: list[str]) -> None:
        for tab, url in zip(self.tabs, urls):
            self.driver.switch_to.window(tab)
            self.driver.get(url)

    def cpu_s(self) -> float:
        return tree_cpu_s(self.driver.service.process.pid)

    def blank(self) -> None:
        self.show(["about:blank"] * len(self.tabs))

    def quit(self) -> None:
        self.driver.quit()


class Phases:
    """The round loop's last observer: times each round, and switches the console between phases."""

    def __init__(self, config: BenchConfig, workdir: Path, start: Any, browser: Browser | None) -> None:
        self.config, self.workdir, self.start, self.browser = config, workdir, start, browser
        self.console: Any = None
        self.client: SseClient | None = None
        self.last_end = time.monotonic()
        self.last_cpu = time.process_time()
        self.before_console: set[int] = set()  # the process's threads before the console started
        self.last_console_cpu = self.last_browser_cpu = 0.0
        self.rounds: list[dict[str, Any]] = []

    def console_threads(self) -> set[int]:
        return {t.native_id for t in threading.enumerate() if t.native_id is not None} - self.before_console

    def phase_of(self, server_round: int) -> int:
        return (server_round - 1) // self.config.rounds

    def __call__(self, report: RoundReport) -> None:
        ended, cpu = time.monotonic(), time.process_time()
        console_cpu = threads_cpu_s(self.console_threads()) if self.console is not None else 0.0
        browser_cpu = self.browser.cpu_s() if self.browser is not None else 0.0
        phase = self.phase_of(report.server_round)
        self.rounds.append({"round": report.server_round, "phase": phase, "console": phase % 2 == 1,
                            "wall_s": ended - self.last_end, "process_cpu_s": cpu - self.last_cpu,
                            # the console's threads (uvicorn, its broker subscription) and the browser's processes
                            "console_threads_cpu_s": console_cpu - self.last_console_cpu,
                            "browser_cpu_s": browser_cpu - self.last_browser_cpu,
                            "participants": len(report.participant_devices or ())})
        self.last_console_cpu, self.last_browser_cpu = console_cpu, browser_cpu
        if report.server_round % self.config.rounds == 0:  # the phase ends: switch for the next one
            self.switch(on=(phase + 1) % 2 == 1 and phase + 1 < self.config.phases)
            # the switch starts or ends threads and pages: the next round counts from what they have used so far
            self.last_console_cpu = threads_cpu_s(self.console_threads()) if self.console is not None else 0.0
            self.last_browser_cpu = self.browser.cpu_s() if self.browser is not None else 0.0
        self.last_end, self.last_cpu = time.monotonic(), time.process_time()

    def switch(self, on: bool) -> None:
        if on and self.console is None:
            self.before_console = {t.native_id for t in threading.enumerate() if t.native_id is not None}
            self.console = self.start()
            paths = {"fleet": "/fleet", "run": f"/federations/{FEDERATION}"}
            pages = [self.console.url + paths[p] for p in self.config.pages]
            fragments = {"fleet": ["/fragments/fleet"],
                         "run": [f"/fragments/federations/{FEDERATION}", f"/fragments/lineage/{FEDERATION}"]}
            if self.browser is not None:
                self.browser.show(pages + ["about:blank"] * (len(self.browser.tabs) - len(pages)))
            elif self.config.pages:
                self.client = SseClient(self.console.url, [f for p in self.config.pages for f in fragments[p]])
        elif not on and self.console is not None:
            if self.browser is not None:
                self.browser.blank()
            if self.client is not None:
                self.client.close()
                self.client = None
            self.console.stop()
            self.console = None


@contextlib.contextmanager
def devices_of(config: BenchConfig, workdir: Path, broker: LocalBroker) -> Iterator[None]:
    """The 100 devices: ``tinyfleet fleet run`` in a process of its own, as a user runs them in a second shell
    (``--fleet process``), or simulated in this process beside server and console (``--fleet inprocess``), where
    every thread of 100 paho clients and of the console contends for one interpreter lock: the harsher case."""
    if config.fleet == "inprocess":
        with MqttFleet(range(config.devices), broker.accounts.devices, FleetConfig(host=broker.host, port=broker.port)):
            yield
        return
    tinyfleet = Path(sys.executable).with_name("tinyfleet")
    log = (workdir / "fleet.log").open("w")
    process = subprocess.Popen([str(tinyfleet), "fleet", "run", "--accounts", str(workdir / "accounts.json")],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        yield
    finally:
        try:
            process.wait(timeout=30)  # it leaves when the server says the federation has ended
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        log.close()


def run(config: BenchConfig, work: Path) -> dict[str, Any]:
    workdir = work / "server"
    workdir.mkdir(parents=True, exist_ok=True)
    settings = settings_from_run_config({
        "strategy": "tinyreptile", "num-rounds": config.phases * config.rounds, "clients-per-round": config.sample,
        "checkpoint-dir": str(workdir / "checkpoints"), "node-timeout-s": 300.0,
    })  # fmt: skip
    accounts = BrokerAccounts()
    accounts.add_devices(device_id_of(s) for s in range(config.devices))
    browser = Browser(work / "chromium") if config.client == "browser" else None
    with LocalBroker(workdir / "broker", accounts) as broker:
        write_accounts(workdir / "accounts.json", broker)
        store = open_registry(str(work / "registry"))
        try:
            versions = run_versions(store, FEDERATION, settings, workdir / "models")
            selection = device_selection(versions.registry, settings, workdir / "models", lambda _line: None)

            def start() -> Any:
                return start_console(0, workdir=workdir, store_or_url=store, broker_password=accounts.server_password,
                                     settings=flatten_settings(settings), federation=FEDERATION)

            phases = Phases(config, workdir, start, browser)
            observers = [RoundsLog(workdir / ROUNDS_LOG), versions, phases]
            observers.insert(2, lambda report: phases.console.observer(report) if phases.console else None)
            grid_config = MqttGridConfig(host=broker.host, port=broker.port, username=SERVER_USER,
                                         password=accounts.server_password, round_timeout_s=config.round_timeout_s)
            from server.core.federation import run_federation

            with devices_of(config, workdir, broker), \
                    MqttGrid(grid_config, device_filter=selection, on_announce=selection.announced) as grid:
                started = time.monotonic()
                run_federation(grid, settings, observers=observers)
                elapsed = time.monotonic() - started
                phases.switch(on=False)
                grid.finish()
        finally:
            store.close()
            if browser is not None:
                browser.quit()
    settle = {p * config.rounds + 1 for p in range(config.phases)}  # each phase's first round (and round 1)
    timed = [r for r in phases.rounds if r["round"] not in settle]
    off = [r["wall_s"] for r in timed if not r["console"]]
    on = [r["wall_s"] for r in timed if r["console"]]
    ratio_of_medians = statistics.median(on) / statistics.median(off)
    by_phase = [statistics.median([r["wall_s"] for r in timed if r["phase"] == p] or [float("nan")])
                for p in range(config.phases)]
    # each on phase against the mean of the off phases around it: drift in the machine's load cancels out
    paired = [by_phase[p] / statistics.fmean([by_phase[q] for q in (p - 1, p + 1) if q < config.phases])
              for p in range(1, config.phases, 2)]
    cpu_off = [r["process_cpu_s"] for r in timed if not r["console"]]
    cpu_on = [r["process_cpu_s"] for r in timed if r["console"]]
    return {
        "benchmark": "console",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": asdict(config),
        "elapsed_s": elapsed,
        "round_wall_s": {
            "off": {"median": statistics.median(off), "mean": statistics.fmean(off), "n": len(off)},
            "on": {"median": statistics.median(on), "mean": statistics.fmean(on), "n": len(on)},
        },
        "ratio_on_over_off": {"paired_median": statistics.median(paired),
                              "paired_quartiles": statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3,
                              "paired_by_phase": paired,
                              "of_medians": ratio_of_medians, "of_means": statistics.fmean(on) / statistics.fmean(off)},
        "phase_median_wall_s": by_phase,
        # CPU of this whole process (server, console and the simulated fleet) per round: less sensitive to other load
        "process_cpu_s_per_round": {"off": statistics.median(cpu_off), "on": statistics.median(cpu_on),
                                    "ratio_on_over_off": statistics.median(cpu_on) / statistics.median(cpu_off)},
        "console_threads_cpu_s_per_round_on": statistics.median([r["console_threads_cpu_s"] for r in timed if r["console"]]),
        "browser_cpu_s_per_round": {"off": statistics.median([r["browser_cpu_s"] for r in timed if not r["console"]]),
                                    "on": statistics.median([r["browser_cpu_s"] for r in timed if r["console"]])},
        "goal_met": {"paired_ratio_at_most_1_05": statistics.median(paired) <= 1.05},
        "rounds": phases.rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=BenchConfig.devices)
    parser.add_argument("--sample", type=int, default=BenchConfig.sample, help="devices per round")
    parser.add_argument("--phases", type=int, default=BenchConfig.phases, help="alternating off/on phases (even)")
    parser.add_argument("--rounds", type=int, default=BenchConfig.rounds, help="rounds per phase")
    parser.add_argument("--client", choices=("browser", "sse"), default=BenchConfig.client)
    parser.add_argument("--fleet", choices=("process", "inprocess"), default=BenchConfig.fleet,
                        help="the devices in a process of their own (as `tinyfleet fleet run`) or in the server's")
    parser.add_argument("--pages", default="fleet,run", help="pages the client keeps open: fleet, run (or none)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/console.json"))
    args = parser.parse_args(argv)
    if args.phases < 2 or args.phases % 2 or args.rounds < 2 or not 0 < args.sample <= args.devices:
        parser.error("need an even --phases >= 2, --rounds >= 2 and 0 < --sample <= --devices")
    from flwr.supercore.logger import FLOWER_LOGGER

    FLOWER_LOGGER.setLevel("WARNING")
    pages = tuple(p for p in args.pages.split(",") if p and p != "none")
    if set(pages) - {"fleet", "run"}:
        parser.error("--pages takes fleet, run or none")
    config = BenchConfig(args.devices, args.sample, args.phases, args.rounds, args.client, args.fleet, pages)
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        result = run(config, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    walls = result["round_wall_s"]
    ratios = result["ratio_on_over_off"]
    low, _, high = ratios["paired_quartiles"]
    print(f"round wall time on/off, phase-paired median {ratios['paired_median']:.3f} (quartiles {low:.3f}-{high:.3f}; "
          f"ratio of medians {ratios['of_medians']:.3f}: off {walls['off']['median']:.3f} s n={walls['off']['n']}, "
          f"on {walls['on']['median']:.3f} s n={walls['on']['n']}); "
          f"process CPU per round ratio {result['process_cpu_s_per_round']['ratio_on_over_off']:.3f}; "
          f"CPU per round with the console on: its threads {result['console_threads_cpu_s_per_round_on']:.3f} s, "
          f"the browser {result['browser_cpu_s_per_round']['on']:.3f} s (off {result['browser_cpu_s_per_round']['off']:.3f} s) "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
