"""QEMU devices in a fleet: N of an accounts file's devices run as C firmware under QEMU, each behind its own gateway.

Why here: a QEMU device is a fleet device like :class:`firmware_sim.mqtt_fleet.MqttDevice`, only its round runs in
C on an emulated Cortex-M4F. What makes it *that* device lives in firmware_sim (its shipped weights, its samples,
its profile: :mod:`firmware_sim.device_tasks`); edge builds and runs the image (:mod:`edge.firmware.images`,
:mod:`edge.firmware.qemu`, :mod:`edge.firmware.host_feed`). Each device gets:

- its image, built for its id (``<task>-<seed>``): sine's carries a recording of its stream, keywords' reads raw
  clips from the host (:func:`device_clips`, the very clips its simulated twin draws, in the same order);
- a :class:`firmware_sim.serial_gateway.SerialGateway` logged in with the device's own account (so the broker's
  ACL holds per device, and the gateway's Last Will says ``offline`` if it dies), listening for QEMU's UART;
- QEMU itself, run in the device's folder (where a keywords firmware opens its feed), with ``-icount shift=0`` so
  its instruction counts are exact.

    with QemuFleet(accounts_file, ["keywords-6", "keywords-7"], QemuFleetConfig(workdir=Path("runs/qemu"))) as fleet:
        ...  # the server's rounds reach them as any device

:meth:`QemuFleet.kill` ends one QEMU the way a board loses power (its gateway stays up and says ``offline``);
the server's round deadline then closes the round without it.
"""

from __future__ import annotations

import itertools
import itertools
import logging
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from edge.firmware.host_feed import FEED_NAME, ClipFeed, start_fed_elf
from edge.firmware.images import DEFAULT_SENSOR_SAMPLES, FIRMWARE_TASKS, FirmwareImage, build_image
from edge.identity import DeviceIdentity

log = logging.getLogger(__name__)


def device_clips(seed: int, stream_key: int = 0) -> Iterator[tuple[np.ndarray, int]]:
    """Keywords device ``seed``'s raw clips and labels: what ``task_families.keywords().stream(seed, stream_key)``
    turns into feature vectors, clip for clip (tests/edge/test_firmware_keywords.py holds the two equal)."""
    from firmware_sim import task_families as families
    from firmware_sim.tasks import keywords as kws

    n_way = families.keywords().n_way
    corpus, _ = families._keyword_world()
    task = kws.sample_task(families.DATASET_SEED, seed, families._keyword_words(seed, kws.KEYWORDS, n_way))
    for clip, label in kws.KeywordStream(task, corpus, seed=(seed, stream_key)):
        yield clip, int(label)


def build_device_image(board_name: str, device_id: str, out: Path, samples: int = DEFAULT_SENSOR_SAMPLES) -> FirmwareImage:
    """The image of fleet device ``device_id`` (``sine-N`` or ``keywords-N``) for ``board_name``, in ``out``: what
    :mod:`firmware_sim.device_tasks` says that device is (its firmware's shipped weights, its profile) and (sine) a
    recording of its stream or (keywords) the feature scaler. ValueError for an id whose task has no firmware."""
    from firmware_sim.device_tasks import seed_of, task_of_device

    task = task_of_device(device_id)
    if task.name not in FIRMWARE_TASKS:
        raise ValueError(f"{device_id} has no firmware: images exist for {', '.join(FIRMWARE_TASKS)} devices")
    seed = seed_of(device_id)
    device = task.device(seed, stream_key=0)  # the simulated twin, stream and profile as the MQTT fleet builds it
    common = dict(device_id=device_id, local_init=task.firmware_init(seed), profile=device.profile)
    if task.name == "keywords":
        from firmware_sim import task_families as families

        return build_image(board_name, "keywords", out, scaler=families._keyword_scaler(), pool=families.KEYWORD_FRAME_POOL,
                           **common)  # fmt: skip
    if samples < 1:
        raise ValueError("the sensor recording needs at least one sample")
    recording = list(itertools.islice(device.stream, samples))  # the twin's stream from its start: each sample once
    return build_image(board_name, "sine", out, sensor=recording, **common)


def split_fleet(device_ids: Sequence[str], n_qemu: int) -> tuple[list[str], list[str]]:
    """(simulated, QEMU): the last ``n_qemu`` of ``device_ids`` run as firmware; ValueError if they cannot."""
    if not 0 <= n_qemu <= len(device_ids):
        raise ValueError(f"--qemu {n_qemu}: the fleet has {len(device_ids)} devices")
    cut = len(device_ids) - n_qemu
    qemu = list(device_ids[cut:])
    for device_id in qemu:
        family = device_id.rsplit("-", 1)[0] if DeviceIdentity.parse(device_id).seed is not None else ""
        if family not in FIRMWARE_TASKS:
            raise ValueError(f"{device_id} cannot run under QEMU: firmware exists for {', '.join(FIRMWARE_TASKS)} devices")
    return list(device_ids[:cut]), qemu


@dataclass(frozen=True)
class QemuFleetConfig:
    workdir: Path = Path("runs/qemu")  # one folder per device: its image, its feed, its QEMU's working directory
    board: str = "mps2-an386"
    icount: bool = True  # -icount shift=0: exact instruction counts and time books
    samples: int = DEFAULT_SENSOR_SAMPLES  # a sine image's sensor recording
    tls_ca: str | None = None
    keepalive_s: int = 10


@dataclass
class QemuDevice:
    """One device as firmware: image, gateway, QEMU and (keywords) its clip feed; see the module docstring."""

    device_id: str
    password: str
    host: str
    port: int
    config: QemuFleetConfig
    image: FirmwareImage | None = None  # set it to run an image built before (its task and id are checked)
    gateway: object | None = None  # firmware_sim.serial_gateway.SerialGateway
    process: subprocess.Popen | None = None
    feed: ClipFeed | None = None
    killed: bool = field(default=False)

    @property
    def folder(self) -> Path:
        return self.config.workdir / self.device_id

    def build(self) -> FirmwareImage:
        if self.image is None:
            self.image = build_device_image(self.config.board, self.device_id, self.folder, self.config.samples)
        if self.image.device_id != self.device_id:  # it signs its updates with the id baked in: the server would drop them
            raise ValueError(f"{self.image.elf} was built for {self.image.device_id}, not {self.device_id}")
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.image

    def start(self) -> QemuDevice:
        """Gateway, then the board: :meth:`start_gateway` and :meth:`boot`."""
        self.start_gateway()
        return self.boot()

    def start_gateway(self) -> QemuDevice:
        """The device's gateway, logged in to the broker and listening for its line (no board on it yet)."""
        from firmware_sim.serial_gateway import GatewayConfig, SerialGateway

        self.build()
        config = GatewayConfig(self.device_id, self.password, self.host, self.port, tls_ca=self.config.tls_ca,
                               keepalive_s=self.config.keepalive_s)  # fmt: skip
        self.gateway = SerialGateway("listen://127.0.0.1:0", config).start()
        return self

    def boot(self) -> QemuDevice:
        """QEMU on the gateway's line (and, for keywords, the host feeding its clips)."""
        image = self.build()
        if self.feed is not None:  # a board booted again: its old feed ends before a new one opens the FIFO
            self.feed.stop()
        if image.task == "keywords":  # its clips from the first, as a rebooted sine board replays its recording
            self.feed = ClipFeed(self.folder / FEED_NAME, device_clips(DeviceIdentity.parse(self.device_id).seed)).start()
        self.process = start_fed_elf(image.elf, self.folder, serial_port=self.gateway.line_port, icount=self.config.icount)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Power loss: QEMU ends at once; the gateway sees its line close and says ``offline`` for the device."""
        self.killed = True
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()
        if self.process is not None:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
        if self.feed is not None:
            self.feed.stop()
        if self.gateway is not None:
            self.gateway.stop()


class QemuFleet:
    """Devices of ``passwords`` (id -> its broker password) as QEMU firmware at broker ``host``:``port``."""

    def __init__(self, host: str, port: int, passwords: dict[str, str], config: QemuFleetConfig | None = None) -> None:
        self.config = config or QemuFleetConfig()
        self.devices = {d: QemuDevice(d, pw, host, port, self.config) for d, pw in passwords.items()}

    def start(self) -> QemuFleet:
        """Build every image first (a refused one costs no QEMU), then start each device; all or none run."""
        for device in self.devices.values():
            device.build()
        try:
            for device in self.devices.values():
                device.start()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, device_id: str) -> None:
        self.devices[device_id].kill()

    def stop(self) -> None:
        for device in self.devices.values():
            device.stop()

    @property
    def finished(self) -> bool:
        """Every device's gateway has seen the server's retained ``finished``."""
        return all(d.gateway is not None and d.gateway.finished.is_set() for d in self.devices.values())

    def rounds_done(self) -> dict[str, int]:
        """UPDATEs each device sent (its gateway's count)."""
        return {d: getattr(device.gateway, "stats").updates_from_device if device.gateway else 0
                for d, device in self.devices.items()}  # fmt: skip

    def summary(self) -> dict[str, dict[str, object]]:
        """Per device: frames each way and refused frames (its gateway's counts), whether QEMU still runs."""
        out = {}
        for device_id, device in self.devices.items():
            stats = getattr(device.gateway, "stats", None)
            out[device_id] = {"running": device.running, "updates": getattr(stats, "updates_from_device", 0),
                              "frames_from_device": getattr(stats, "frames_from_device", 0),
                              "frames_to_device": getattr(stats, "frames_to_device", 0),
                              "serial_errors": dict(getattr(stats, "errors", {}))}  # fmt: skip
        return out

    def __enter__(self) -> QemuFleet:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def run_fleet(
    host: str, port: int, passwords: dict[str, str], n_qemu: int, *, tls_ca: str | None = None,
    duration_s: float | None = None, workdir: Path = Path("runs/qemu"), say: Callable[[str], object] = print,
) -> dict[str, int]:
    """``tinyfleet fleet run --qemu N``: the last ``n_qemu`` of ``passwords``' devices (in the order given) as firmware
    under QEMU, the others simulated in this process; until the server has finished, ``duration_s`` has passed or
    SIGTERM/Ctrl-C. Rounds done per device. Images are built before any device starts (a refused one costs nothing)."""
    from firmware_sim.linux_device import run_simulated_fleet
    from firmware_sim.process_signals import Stopped, stop_on_sigterm

    simulated, on_qemu = split_fleet(list(passwords), n_qemu)
    config = QemuFleetConfig(workdir=Path(workdir), tls_ca=tls_ca)
    with QemuFleet(host, port, {d: passwords[d] for d in on_qemu}, config) as qemu:
        if on_qemu:
            say(f"{len(on_qemu)} devices under QEMU ({config.board}), each behind its own serial gateway: {', '.join(on_qemu)}")
        done: dict[str, int] = {}
        if simulated:
            done = run_simulated_fleet(host, port, {d: passwords[d] for d in simulated}, tls_ca=tls_ca,
                                       duration_s=duration_s, say=say)  # fmt: skip
        else:
            stop_on_sigterm()
            deadline = None if duration_s is None else time.monotonic() + duration_s
            try:
                while (deadline is None or time.monotonic() < deadline) and not qemu.finished:
                    time.sleep(0.2)
                if qemu.finished:
                    say("the server's federation has ended")
            except (KeyboardInterrupt, Stopped):
                pass
        return {**done, **qemu.rounds_done()}
