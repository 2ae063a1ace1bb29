"""``tinyfleet-device run`` / ``tinyfleet device run``: one Linux-class device (e.g. a Raspberry Pi) joining a fleet.

Two ways in, because a fleet mixes both:

- ``--mqtt``: the device speaks the TinyFleet wire protocol exactly like a
  simulated microcontroller — it *is* one :class:`firmware_sim.mqtt_fleet.MqttDevice`
  (announce, Last Will, MODEL + task in, UPDATE out), with its own account.
- ``--superlink``: the device is a Flower SuperNode; Flower's
  ``flower-supernode`` runs the TinyFleet ClientApp that comes with the run
  (:mod:`firmware_sim.client_app`), and ``partition-id`` says which device of
  the simulated sine fleet it plays.

An MQTT device is placed (:func:`place_device`): its id ``<task>-<seed>``
names its task and account; ``--task`` may name a user's task folder,
``--profile`` the board it really is (its Thing Description announces that
board's limits and runtime), and ``--data`` a folder of its own samples.

Both stop cleanly on Ctrl-C or SIGTERM (the SuperNode's whole process group
is ended) and every wait has a deadline. Like all of ``firmware_sim`` this
imports only ``edge`` among our packages, so it runs on a device install
(no TensorFlow, Flower server side, rdflib, typer or rich); the command lines
are :mod:`firmware_sim.device_cli` and :mod:`server.cli`, both through
:func:`firmware_sim.device_run.run_device`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edge.profiles import DeviceProfile, get_profile
from firmware_sim.addresses import free_port, parse_address
from firmware_sim.device_tasks import DeviceTask, seed_of, task_of_device  # seed_of re-exported (server/cli_export.py)
from firmware_sim.mqtt_fleet import FleetConfig, MqttDevice
from firmware_sim.process_signals import Stopped, stop_on_sigterm
from firmware_sim.supernode import FlowerProcess, flower_env, supernode_args

Say = Callable[[str], None]
__all__ = ["place_device", "run_mqtt_device", "run_simulated_fleet", "run_supernode", "seed_of"]


@dataclass(frozen=True)
class PlacedConfig(FleetConfig):
    """A fleet config whose devices are one given descriptor (a placed device's), not a registry lookup by name."""

    placed: DeviceTask | None = None

    def device_task(self) -> DeviceTask:
        assert self.placed is not None
        return self.placed


def place_device(device_id: str, task: str | None = None, profile: str | None = None,
                 data: str | Path | None = None) -> DeviceTask:
    """The descriptor device ``device_id`` runs: its task, on ``profile``, learning from ``data``.

    ``task`` is a task name or a task folder (:func:`firmware_sim.user_task.resolve_task`);
    None means the task the id names. The id must be ``<task>-<seed>`` of that
    task (its account and its firmware init). ``profile`` (a name in
    :mod:`edge.profiles`) replaces the task's own board for every device it
    builds, so the announced TD says what the device really is. ``data`` is a
    folder of this one device's samples in the task's layout (a user task's, or
    :data:`firmware_sim.user_task.PLACEABLE_BUILT_INS`). ValueError/KeyError for any of it.
    """
    from firmware_sim.device_tasks import UnknownTaskError
    from firmware_sim.user_task import UserDeviceTask, place_built_in, resolve_task

    try:
        descriptor = resolve_task(task) if task is not None else task_of_device(device_id)
    except UnknownTaskError as exc:
        raise ValueError(f"{exc}; a user's own task is named by its folder: --task DIR") from None
    if task_of_device(device_id).name != descriptor.name:  # also refuses an id that is not <task>-<seed>
        raise ValueError(f"device id {device_id!r} is not a device of task {descriptor.name!r} "
                         f"(its ids are {descriptor.device_id(0)}, {descriptor.device_id(1)}, ...)")  # fmt: skip
    if data is not None:
        descriptor = descriptor.placed(data) if isinstance(descriptor, UserDeviceTask) else place_built_in(descriptor, data)
    if profile is not None:
        board = get_profile(profile)
        build = descriptor.build
        descriptor = dataclasses.replace(descriptor, build=lambda seed, key, _own: build(seed, key, board))
    descriptor.device(seed_of(device_id))  # builds now: a model that does not fit the board is refused here
    return descriptor


def run_mqtt_device(
    host: str, port: int, device_id: str, password: str, *, task: DeviceTask | None = None,
    tls_ca: str | None = None, layer_sizes: Sequence[int] | None = None, rounds: int | None = None,
    duration_s: float | None = None, connect_timeout_s: float = 15.0, say: Say = print,
) -> int:
    """Serve rounds until ``rounds`` are done or ``duration_s`` passed (or SIGTERM); rounds done.

    ``task`` is what the device is (:func:`place_device`); None: the task its id names, on that task's board.
    """
    seed = seed_of(device_id)
    descriptor = task if task is not None else task_of_device(device_id)
    config = PlacedConfig(host=host, port=port, tls_ca=tls_ca, task=descriptor.name, workers=1,
                          placed=descriptor.with_layer_sizes(None if layer_sizes is None else tuple(layer_sizes)))  # fmt: skip
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
    device = MqttDevice(seed, password, config, pool)
    profile: DeviceProfile = device.device.profile
    stop_on_sigterm()
    try:
        device.start()
        if not device.connected.wait(connect_timeout_s):
            raise TimeoutError(f"{device_id} could not connect to {host}:{port} within {connect_timeout_s:.0f} s "
                               "(broker down, wrong password or ACL?)")  # fmt: skip
        say(f"{device_id} ({profile.name}: {profile.board}) online at {host}:{port}")
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
    host: str, port: int, passwords: dict[str, str], *, task: str | None = None, tls_ca: str | None = None,
    duration_s: float | None = None, connect_timeout_s: float = 60.0, say: Say = print,
) -> dict[str, int]:
    """Hundreds of simulated MCUs in this process, one selector thread for all sockets; rounds done per device.

    Each id names its task (``<task>-<seed>``); ``task`` (the accounts file's: a name, or a user's task folder,
    which this process must load before its ids mean anything) is resolved first.
    """
    from firmware_sim.mqtt_selector import SelectorFleet

    if task is not None:
        from firmware_sim.user_task import resolve_task

        resolve_task(task)
    tasks = sorted({task_of_device(device_id).name for device_id in passwords})
    if len(tasks) != 1:
        raise ValueError(f"a simulated fleet learns one task; these accounts name {', '.join(tasks) or 'no devices'}")
    seeds = sorted(seed_of(device_id) for device_id in passwords)
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
