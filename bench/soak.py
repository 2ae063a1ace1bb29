"""A soak with faults: a simulated fleet federates over mosquitto while everything that can crash does.

What it answers (issue 16): with N simulated devices (default 1,000, one
process, one epoll thread: :class:`firmware_sim.mqtt_selector.SelectorFleet`)
on a real mosquitto and a federation of R rounds (default 50) run by the
real server CLI (``tinyfleet server --mqtt ... --registry DIR``, a child
process), does anything acknowledged get lost when

- 30 % of the devices churn: each crashes (socket dropped, no DISCONNECT, so
  the broker publishes its Last Will) and comes back a round or so later as a
  new client that announces itself again;
- the broker restarts (SIGTERM, 1 s down, same ports; persistence keeps the
  retained TDs and statuses);
- the federation server is killed with -9 mid-run and resumed with
  ``--resume`` from its checkpoint in the same workdir;
- the registry service (``tinyfleet registry serve``, a child process) is
  killed with -9 while writes are in flight, and restarted on the same store
  and port?

Design. The soak owns the broker (a :class:`server.transports.broker.LocalBroker`
of its own, so it can restart it independently of the server, which is
pointed at it with ``--mqtt HOST:PORT`` and the server password in
``TINYFLEET_MQTT_PASSWORD``). There are two registries, because one process
owns an Oxigraph directory:

- the federation's store (``--registry``), owned by the server process:
  every round's model version is registered there by the server. A version
  counts as *acknowledged* once the server process that registered it went on
  to record the next round in ``rounds.jsonl`` (the observers run in order,
  rounds log first, versions last, so the next round's line proves the
  previous version's write returned), or the server exited 0 after it. The
  round the server was killed in is therefore never counted as acknowledged.
- the registry service's store: a device-management gateway in the soak
  registers every device's Thing Description through the WoT API
  (``PUT /things/sine-N``) when it comes online (again after churn), and
  refreshes random devices' TDs in between, so writes are always in flight
  when the service is killed. A registration is *acknowledged* when the PUT
  answered 201/204. Each TD carries a generation in its title; at the end
  every device must be stored with a generation no older than the newest
  one acknowledged for it.

At the end: every acknowledged version is in the federation store, every
acknowledged registration is in the service's store (read back over HTTP
after a restart), the final checkpoint is at round R, ``rounds.jsonl``
records round R, and the server published its retained ``finished``.
``lost`` is the count of acknowledged writes not found (must be 0).
Writes ``runs/bench/soak.json``. Usage::

    python bench/soak.py                                   # 1,000 devices, 50 rounds
    python bench/soak.py --devices 20 --rounds 4 --sample 8 --out runs/bench/soak-small.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import secrets
import signal
import subprocess
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

import httpx  # noqa: E402

from edge.identity import device_iri  # noqa: E402
from edge.thing_description import thing_description  # noqa: E402
from edge.wire.topics import STATUS_FINISHED  # noqa: E402
from firmware_sim.addresses import free_port  # noqa: E402
from edge.identity import device_id_of  # noqa: E402
from firmware_sim.mqtt_fleet import FleetConfig  # noqa: E402
from firmware_sim.mqtt_selector import SelectorDevice, SelectorFleet  # noqa: E402
from server.core.run_dir import ROUNDS_LOG, read_rounds  # noqa: E402
from server.transports.broker import BrokerAccounts, LocalBroker  # noqa: E402

PASSWORD_ENV = "TINYFLEET_MQTT_PASSWORD"

from soak_registry import TOKEN_ENV, Gateway, RegistryService, SoakConfig, stored_generations  # noqa: E402,F401


@dataclass
class Schedule:
    """When (rounds recorded so far) each fault happens."""

    churn_rounds: list[int]
    broker_restart: int
    server_kill: int
    registry_kill: int

    @classmethod
    def for_rounds(cls, rounds: int) -> Schedule:
        if rounds < 3:
            raise ValueError("a soak needs at least 3 rounds (faults before the last round)")
        last = rounds - 1  # every fault happens before the final round is recorded
        at = lambda share: min(last, max(1, round(share * rounds)))  # noqa: E731
        churn_end = max(2, min(last, round(0.8 * rounds)))
        return cls(list(range(1, churn_end)), at(0.3), at(0.5), at(0.7))


# ---------------------------------------------------------------- child processes


class ServerProcess:
    """``tinyfleet server --mqtt`` in its own process; kill -9 and ``--resume``."""

    def __init__(self, config: SoakConfig, workdir: Path, registry: Path, host: str, port: int, password: str) -> None:
        self.config = config
        self.workdir = workdir
        self.registry = registry
        self.address = f"{host}:{port}"
        self.env = {**os.environ, PASSWORD_ENV: password, "COLUMNS": "300", "PYTHONPATH": str(ROOT)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.incarnations: list[tuple[int, int | None]] = []  # rounds.jsonl line ranges [start, end) per process
        self.starts = 0

    def start(self, resume: bool) -> None:
        args = [
            sys.executable, "-m", "server.cli", "server", "--mqtt", self.address, "--workdir", str(self.workdir),
            "--rounds", str(self.config.rounds), "--clients-per-round", str(self.config.sample),
            "--round-timeout", str(self.config.round_timeout_s), "--quorum", str(self.config.quorum),
            "--node-timeout", str(self.config.connect_timeout_s), "--registry", str(self.registry),
            "--federation", "soak", *(["--resume"] if resume else []),
        ]  # fmt: skip
        log = open(self.workdir.parent / f"server-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.incarnations.append((len(self.lines()), None))
        self.starts += 1

    def lines(self) -> list[dict[str, Any]]:
        return read_rounds(self.workdir / ROUNDS_LOG)

    def rounds_done(self) -> int:
        return max((int(r["round"]) for r in self.lines()), default=0)

    def kill(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout=30)
        start, _ = self.incarnations[-1]
        self.incarnations[-1] = (start, len(self.lines()))
        return code

    def acknowledged_versions(self, exited_cleanly: bool) -> tuple[set[int], set[int]]:
        """(acknowledged version numbers, recorded-but-unacknowledged ones): see the module docstring."""
        return acknowledged_versions(self.lines(), self.incarnations, exited_cleanly)


def acknowledged_versions(
    lines: list[dict[str, Any]], incarnations: list[tuple[int, int | None]], exited_cleanly: bool
) -> tuple[set[int], set[int]]:
    """(acknowledged version numbers, recorded-but-unacknowledged ones) from ``rounds.jsonl`` and its line ranges
    per server process. A round with no participant (no usable reply, e.g. the broker was down) registers no
    version by design (:class:`server.registry.registry_link.RunVersions`), so it is not expected in the store.
    """
    acked: set[int] = set()
    pending: set[int] = set()
    for i, (start, end) in enumerate(incarnations):
        last = i == len(incarnations) - 1
        records = lines[start : len(lines) if end is None else end]
        sure = records if (last and exited_cleanly) else records[:-1]  # the next line proves the write returned
        versions = {int(r["round"]) for r in sure if r.get("participants")}
        if i == 0 and versions:
            versions.add(0)  # θ0 is registered in the same observer call as the fresh run's first version
        acked |= versions
        pending |= {int(r["round"]) for r in records if r.get("participants")} - versions
    return acked, pending - acked


def stored_versions(store_dir: Path) -> dict[int, str]:
    """Version number -> its ``schema:identifier`` (``sha256:<digest of the weights>``) in the federation store."""
    from ontology.store import open_store

    with open_store(str(store_dir)) as store:
        rows = store.query("PREFIX tf: <https://w3id.org/tinyfleet#> PREFIX schema: <https://schema.org/> "
                           "SELECT ?n ?id WHERE { ?v a tf:ModelVersion ; tf:versionNumber ?n ; schema:identifier ?id }"
                           ).rows  # fmt: skip
    return {int(row[0]): str(row[1]) for row in rows}


def restart_broker(broker: LocalBroker, down_s: float, attempts: int = 40) -> int:
    """Stop the broker, wait ``down_s``, start it on the same port; the number of starts it took.

    Why retry: while the broker is down, the fleet's 1,000 devices keep reconnecting, and the kernel may hand
    the broker's port (a free port picked from the ephemeral range) to one of those short-lived client sockets
    as its local port; mosquitto's bind then fails with "Address already in use" (seen at 1,000 devices). The
    refused connection closes at once, so a start a moment later succeeds.
    """
    from server.transports.broker import BrokerError

    broker.stop()
    time.sleep(down_s)
    for attempt in range(1, attempts + 1):
        try:
            broker.start()
            return attempt
        except BrokerError as exc:
            if "Address already in use" not in str(exc) or attempt == attempts:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- the soak


def run(config: SoakConfig, workdir: Path, say: Any = print) -> dict[str, Any]:
    started = time.monotonic()
    schedule = Schedule.for_rounds(config.rounds)
    rng = random.Random(config.seed)
    seeds = list(range(config.devices))
    ids = [device_id_of(s) for s in seeds]
    churners = rng.sample(ids, round(config.churn * config.devices))
    batches = [churners[i :: len(schedule.churn_rounds)] for i in range(len(schedule.churn_rounds))]
    accounts = BrokerAccounts()
    accounts.add_devices(ids)
    broker = LocalBroker(workdir / "broker", accounts, persistence=True)
    broker.write_config()
    server_dir = workdir / "server"
    server_dir.mkdir(parents=True, exist_ok=True)
    fed_store, svc_store = workdir / "federation-registry", workdir / "service-registry"
    service = RegistryService(svc_store, secrets.token_urlsafe(18), workdir)
    counts = {"churn_events": 0, "broker_restarts": 0, "server_kills": 0, "registry_kills": 0}
    events: list[dict[str, Any]] = []
    server: ServerProcess | None = None
    fleet: SelectorFleet | None = None
    gateway: Gateway | None = None
    writers: list[threading.Thread] = []
    finished_devices = 0
    server_code: int | None = None
    registry_kill_in_flight = 0
    acked_before_kill = 0
    registry_restart_s = 0.0
    restarter: threading.Thread | None = None

    def note(kind: str, **extra: Any) -> None:
        events.append({"t_s": round(time.monotonic() - started, 2), "kind": kind,
                       "rounds_done": server.rounds_done() if server else 0, **extra})  # fmt: skip
        say(f"[{time.monotonic() - started:7.1f} s] {kind} {extra if extra else ''}")

    broker.start()
    try:
        service.start()
        fleet_config = FleetConfig(host=broker.host, port=broker.port, keepalive_s=60, workers=4)
        fleet = SelectorFleet(seeds, accounts.devices, fleet_config)
        tds = {d: thing_description(dev.device.profile, d, broker=f"mqtt://{broker.host}:{broker.port}")
               for d, dev in fleet.devices.items()}  # fmt: skip
        gateway = Gateway(service, tds, config)
        writers = [threading.Thread(target=gateway.run, args=(w,), daemon=True) for w in range(config.writers)]
        for thread in writers:
            thread.start()
        fleet.start(timeout_s=config.connect_timeout_s)
        for device_id in ids:
            gateway.register(device_id)
        note("fleet online", devices=config.devices)
        server = ServerProcess(config, server_dir, fed_store, broker.host, broker.port, accounts.server_password)
        server.start(resume=False)
        note("server started")
        down: list[str] = []  # crashed, to come back at the next churn step
        churn_steps = dict(zip(schedule.churn_rounds, batches))
        done_steps: set[str] = set()
        deadline = time.monotonic() + config.run_timeout_s

        def revive(device_ids: list[str]) -> None:
            assert fleet is not None and gateway is not None
            for device_id in device_ids:
                seed = int(device_id.rsplit("-", 1)[1])
                device = SelectorDevice(seed, accounts.devices[device_id], fleet_config, fleet._pool, fleet.loop)
                fleet.devices[device_id] = device
                device.start()
                gateway.register(device_id)  # the gateway registers it again as it comes back

        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the soak did not finish within {config.run_timeout_s} s")
            assert server.proc is not None
            code = server.proc.poll()
            if code is not None:
                if code != 0:
                    raise RuntimeError(f"the server exited with {code}; see {workdir}/server-{server.starts - 1}.log")
                server_code = code
                break
            done = server.rounds_done()
            for step, batch in churn_steps.items():
                if done >= step and f"churn-{step}" not in done_steps:
                    done_steps.add(f"churn-{step}")
                    revive(down)
                    if down:
                        note("devices back", count=len(down))
                    for device_id in batch:
                        fleet.devices[device_id].crash()
                    down = list(batch)
                    counts["churn_events"] += len(batch)
                    note("devices crashed", count=len(batch))
            if done >= schedule.churn_rounds[-1] + 1 and down:
                revive(down)
                note("devices back", count=len(down))
                down = []
            if done >= schedule.broker_restart and "broker" not in done_steps:
                done_steps.add("broker")
                attempts = restart_broker(broker, down_s=1.0)
                counts["broker_restarts"] += 1
                note("broker restarted", attempts=attempts)
            if done >= schedule.server_kill and "server" not in done_steps:
                done_steps.add("server")
                code = server.kill()
                counts["server_kills"] += 1
                note("server killed", code=code)
                server.start(resume=True)
                note("server resumed")
            if done >= schedule.registry_kill and "registry" not in done_steps:
                while gateway.in_flight == 0:  # mid-write: at least one PUT is on the wire
                    time.sleep(0.001)
                registry_kill_in_flight = gateway.in_flight
                acked_before_kill = gateway.acknowledged
                done_steps.add("registry")
                code = service.kill()
                counts["registry_kills"] += 1
                note("registry service killed", code=code, writes_in_flight=registry_kill_in_flight)
                restart_started = time.monotonic()

                def restart_service() -> None:  # on a thread: the fault loop goes on while the service recovers
                    nonlocal registry_restart_s
                    service.start()
                    registry_restart_s = round(time.monotonic() - restart_started, 1)
                    note("registry service restarted", seconds=registry_restart_s)

                restarter = threading.Thread(target=restart_service, daemon=True)
                restarter.start()
            time.sleep(0.1)
        if down:
            revive(down)
        note("server finished")
        finish_by = time.monotonic() + 30
        while time.monotonic() < finish_by:
            finished_devices = sum(d.server_status == STATUS_FINISHED for d in fleet.devices.values())
            if finished_devices == config.devices:
                break
            time.sleep(0.2)
        if restarter is not None:
            restarter.join(timeout=330)
            if registry_restart_s == 0.0:
                raise TimeoutError("the registry service did not come back after its kill")
        # let the gateway finish the registrations still queued, then stop it
        drain_by = time.monotonic() + 120
        while not gateway.jobs.empty() and time.monotonic() < drain_by:
            time.sleep(0.1)
        gateway.stop.set()
        for thread in writers:
            thread.join(timeout=60)
    finally:
        if gateway is not None:
            gateway.stop.set()
        if server is not None and server.proc is not None and server.proc.poll() is None:
            server.kill()
        if fleet is not None:
            fleet.stop()
        broker.stop()
        if sys.exc_info()[0] is not None:
            service.stop()

    # ------------------------------------------------ what survived
    assert gateway is not None and server is not None
    service.stop()
    service.start()  # read back from a fresh process on the same store
    try:
        stored = stored_generations(service.url)
    finally:
        service.stop()
    lost_registrations = sorted(d for d, g in gateway.acked.items() if stored.get(device_iri(d), -1) < g)
    acked_versions, unacked_versions = server.acknowledged_versions(exited_cleanly=server_code == 0)
    versions = stored_versions(fed_store)
    lost_versions = sorted(acked_versions - set(versions))
    from server.core.checkpoint import Checkpointer
    from server.registry.registry_link import weights_digest

    latest = Checkpointer(server_dir / "checkpoints").load_latest()
    final_round = latest.server_round if latest is not None else 0
    final_digest_matches = latest is not None and versions.get(final_round) == f"sha256:{weights_digest(latest.weights)}"
    recorded = [int(r["round"]) for r in server.lines()]
    lost = len(lost_registrations) + len(lost_versions)
    ok = (lost == 0 and final_round == config.rounds and max(recorded, default=0) == config.rounds
          and final_digest_matches and finished_devices == config.devices)
    return {
        "benchmark": "soak",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count() or 1},
        "config": asdict(config),
        "schedule": asdict(schedule),
        "devices": config.devices,
        "rounds": config.rounds,
        "churn_events": counts["churn_events"],
        "broker_restarts": counts["broker_restarts"],
        "server_kills": counts["server_kills"],
        "registry_kills": counts["registry_kills"],
        "registry_writes_in_flight_at_kill": registry_kill_in_flight,
        "acknowledged_registrations_before_registry_kill": acked_before_kill,
        "registry_restart_after_kill_s": registry_restart_s,
        "acknowledged_registrations": gateway.acknowledged,
        "registered_devices": len(gateway.acked),
        "registration_retries": gateway.transport_errors,
        "registration_refusals": gateway.refused,
        "acknowledged_versions": len(acked_versions),
        "versions_stored": len(versions),
        "unacknowledged_versions_missing": sorted(unacked_versions - set(versions)),
        "final_version_is_final_checkpoint": final_digest_matches,
        "lost_registrations": lost_registrations,
        "lost_versions": lost_versions,
        "lost": lost,
        "final_round": final_round,
        "rounds_recorded": len(recorded),
        "rounds_recorded_distinct": len(set(recorded)),
        "rounds_without_version": sorted(int(r["round"]) for r in server.lines() if not r.get("participants")),
        "server_incarnations": server.incarnations,
        "devices_told_finished": finished_devices,
        "server_starts": server.starts,
        "ok": ok,
        "events": events,
        "wall_time_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--devices", type=int, default=defaults.devices)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--sample", type=int, help="devices per round (default 100, at most a third of the fleet)")
    parser.add_argument("--churn", type=float, default=defaults.churn, help="fraction of devices that crash and return")
    parser.add_argument("--round-timeout", type=float, default=defaults.round_timeout_s)
    parser.add_argument("--quorum", type=float, default=defaults.quorum)
    parser.add_argument("--node-timeout", type=float, default=defaults.connect_timeout_s,
                        help="seconds the fleet may take to connect and the server to see enough eligible devices")
    parser.add_argument("--run-timeout", type=float, default=defaults.run_timeout_s)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workdir", type=Path, help="broker, stores, server run and logs (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/soak.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("firmware_sim").setLevel(logging.ERROR)  # every device logs a broker restart; the JSON counts it
    sample = args.sample if args.sample is not None else min(defaults.sample, max(1, args.devices // 3))
    config = SoakConfig(devices=args.devices, rounds=args.rounds, sample=sample, churn=args.churn,
                        round_timeout_s=args.round_timeout, quorum=args.quorum, run_timeout_s=args.run_timeout,
                        connect_timeout_s=args.node_timeout,
                        seed=args.seed)  # fmt: skip
    if not 0 < config.sample <= config.devices or config.rounds < 3 or not 0 <= config.churn < 1:
        parser.error("need 0 < sample <= devices, rounds >= 3 and 0 <= churn < 1")
    if config.sample > round((1 - config.churn / max(1, len(Schedule.for_rounds(config.rounds).churn_rounds))) * config.devices):
        parser.error("--sample must leave room for the devices that are down")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = run(config, workdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['devices']} devices, {result['final_round']}/{result['rounds']} rounds, churn {result['churn_events']}, "
          f"broker restarts {result['broker_restarts']}, server kills {result['server_kills']}, registry kills "
          f"{result['registry_kills']}; acknowledged {result['acknowledged_registrations']} registrations and "
          f"{result['acknowledged_versions']} versions, lost {result['lost']}; {result['wall_time_s']} s -> {args.out}")  # fmt: skip
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
