"""``tinyfleet-device run`` / ``tinyfleet device run``: one Linux-class device (e.g. a Raspberry Pi) joining a fleet.

Two ways in, because a fleet mixes both:

- ``--mqtt``: the device speaks the TinyFleet wire protocol exactly like a
  simulated microcontroller — it *is* one :class:`firmware_sim.mqtt_fleet.MqttDevice`
  (announce, Last Will, MODEL + task in, UPDATE out), with its own account.
- ``--superlink``: the device is a Flower SuperNode; Flower's
  ``flower-supernode`` runs the TinyFleet ClientApp that comes with the run
  (:mod:`firmware_sim.client_app`), and ``partition-id`` says which device of
  the simulated sine fleet it plays.

Both stop cleanly on Ctrl-C or SIGTERM (the SuperNode's whole process group
is ended) and every wait has a deadline. Like all of ``firmware_sim`` this
imports only ``edge`` among our packages, so it runs on a device install
(no TensorFlow, Flower server side, rdflib, typer or rich); the command lines
are :mod:`firmware_sim.device_cli` and :mod:`server.cli`, both through
:func:`firmware_sim.device_run.run_device`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from firmware_sim.addresses import free_port, parse_address
from edge.identity import DEFAULT_FAMILY, DeviceIdentity
from firmware_sim.mqtt_fleet import FleetConfig, MqttDevice
from firmware_sim.process_signals import Stopped, stop_on_sigterm
from firmware_sim.supernode import FlowerProcess, flower_env, supernode_args

Say = Callable[[str], None]
def seed_of(device_id: str) -> int:
    """``sine-7`` -> 7: the simulated device (task, stream, profile) this id plays (see edge.identity)."""
    try:
        identity = DeviceIdentity.parse(device_id)
    except ValueError as exc:
        raise ValueError(f"device id must be sine-<number> (the simulated sine fleet): {exc}") from None
    if identity.seed is None or not device_id.startswith(DEFAULT_FAMILY + "-"):
        raise ValueError(f"device id must be sine-<number> (the simulated sine fleet), got {device_id!r}")
    return identity.seed


def run_mqtt_device(
    host: str, port: int, device_id: str, password: str, *, tls_ca: str | None = None,
    layer_sizes: Sequence[int] = (1, 40, 40, 1), rounds: int | None = None, duration_s: float | None = None,
    connect_timeout_s: float = 15.0, say: Say = print,
) -> int:
    """Serve rounds until ``rounds`` are done or ``duration_s`` passed (or SIGTERM); rounds done."""
    seed = seed_of(device_id)
    config = FleetConfig(host=host, port=port, tls_ca=tls_ca, layer_sizes=tuple(layer_sizes), workers=1)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
    device = MqttDevice(seed, password, config, pool)
    stop_on_sigterm()
    try:
        device.start()
        if not device.connected.wait(connect_timeout_s):
            raise TimeoutError(f"{device_id} could not connect to {host}:{port} within {connect_timeout_s:.0f} s "
                               "(broker down, wrong password or ACL?)")  # fmt: skip
        say(f"{device_id} ({device.device.profile.name}) online at {host}:{port}")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        reported = 0
        while rounds is None or device.rounds_done < rounds:
            if deadline is not None and time.monotonic() > deadline:
                break
            if device.finished.is_set():
                say(f"{device_id}: the server's federation has ended")
                break
            if device.rounds_done > reported:
                reported = device.rounds_done
                ledger = device.device.ledger
                say(f"round {reported} done: {ledger.bytes_sent} B sent, {ledger.energy_j * 1e3:.2f} mJ so far")
            time.sleep(0.1)
        return device.rounds_done
    except (KeyboardInterrupt, Stopped):
        return device.rounds_done
    finally:
        device.stop()
        pool.shutdown(wait=True, cancel_futures=True)


def run_supernode(
    superlink: str, partition_id: int, num_partitions: int, *, workdir: Path, runtime_port: int | None = None,
    root_certificates: str | None = None, duration_s: float | None = None, say: Say = print,
) -> int:
    """Run a ``flower-supernode`` for this device until it exits, ``duration_s`` passes or SIGTERM; its exit code."""
    parse_address(superlink)
    args = supernode_args(superlink, partition_id, num_partitions, runtime_port or free_port(), root_certificates)
    stop_on_sigterm()
    node = FlowerProcess(f"supernode-{partition_id}", args, flower_env(), workdir / f"supernode-{partition_id}.log")
    say(f"SuperNode for partition {partition_id} connecting to {superlink} (log {node.log_path})")
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while node.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
        if not node.running:
            say(f"SuperNode exited with {node.process.returncode}:\n{node.log_tail()}")
            return int(node.process.returncode or 0)
        return 0
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        node.stop()


def run_simulated_fleet(
    host: str, port: int, passwords: dict[str, str], *, tls_ca: str | None = None,
    duration_s: float | None = None, connect_timeout_s: float = 60.0, say: Say = print,
) -> dict[str, int]:
    """Hundreds of simulated MCUs in this process, one selector thread for all sockets; rounds done per device."""
    from firmware_sim.mqtt_selector import SelectorFleet

    from firmware_sim.device_tasks import seed_of as task_seed_of
    from firmware_sim.device_tasks import task_of_device

    tasks = sorted({task_of_device(device_id).name for device_id in passwords})  # each id names its task
    if len(tasks) != 1:
        raise ValueError(f"a simulated fleet learns one task; these accounts name {', '.join(tasks) or 'no devices'}")
    seeds = sorted(task_seed_of(device_id) for device_id in passwords)
    config = FleetConfig(host=host, port=port, tls_ca=tls_ca, keepalive_s=60, task=tasks[0])
    fleet = SelectorFleet(seeds, passwords, config)
    stop_on_sigterm()
    try:
        fleet.start(timeout_s=connect_timeout_s)
        say(f"{len(seeds)} simulated {tasks[0]} devices online at {host}:{port}")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while deadline is None or time.monotonic() < deadline:
            if all(device.finished.is_set() for device in fleet.devices.values()):
                say("the server's federation has ended")
                break
            time.sleep(0.2)
    except (KeyboardInterrupt, Stopped):
        pass
    finally:
        fleet.stop()
    return {device_id: device.rounds_done for device_id, device in fleet.devices.items()}
