"""`tinyfleet firmware build|run`: the device round in C as a board image, and an emulated board in a federation.

    tinyfleet firmware build --board nano33ble --task keywords --out build/nano
    tinyfleet server --local-broker --fleet 8 --workdir runs/server &
    tinyfleet fleet run --accounts runs/server/accounts.json --devices 6 &
    tinyfleet firmware run --board mps2-an386 --accounts runs/server/accounts.json --id sine-7

Why here: building an image for a device needs that device's inputs (its
shipped weights, its samples, its profile), which live in ``firmware_sim``
(edge may not import it): ``firmware_sim.qemu_fleet.build_device_image``
gathers them and ``edge.firmware.images`` builds. ``run`` is one
``firmware_sim.qemu_fleet.QemuDevice``: QEMU with its UART connected to a
serial gateway that logs in to the broker with the device's own account (and,
for keywords, the host feeding its clips), so the emulated board joins the
running federation as ``--id``; SIGINT/SIGTERM stop all of it. Mounted by
``server/cli.py`` as ``app.add_typer(firmware_app, name="firmware")``.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import typer

from edge.firmware.build import BuildError, board, image_size
from edge.firmware.images import DEFAULT_SENSOR_SAMPLES, FirmwareImage, UnsupportedTaskError, check_board

firmware_app = typer.Typer(help="Firmware images for microcontrollers, and emulated boards in a federation.", no_args_is_help=True)


@firmware_app.callback()
def _firmware() -> None:
    """Firmware images for microcontrollers, and emulated boards in a federation."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def build_device_image(board_name: str, task: str, out: Path, device_id: str | None = None,
                       samples: int = DEFAULT_SENSOR_SAMPLES) -> FirmwareImage:
    """The image of fleet device ``device_id`` (default ``<task>-0``) for ``board_name``: what the simulated fleet says
    that device is (firmware_sim.qemu_fleet.build_device_image); refused before any work if the id is another task's."""
    from edge.firmware.images import check_task
    from edge.identity import DeviceIdentity
    from firmware_sim.qemu_fleet import build_device_image as build_fleet_image

    check_board(board_name)
    check_task(task)  # before anything is drawn: a refused task costs nothing
    device_id = device_id or f"{task}-0"
    if DeviceIdentity.parse(device_id).seed is None or device_id.rsplit("-", 1)[0] != task:
        raise ValueError(f"device id must be {task}-<number> (the {task} device the image plays), got {device_id!r}")
    return build_fleet_image(board_name, device_id, out, samples)


def _prebuilt(elf: Path, device_id: str, board_name: str) -> FirmwareImage:
    """An image built by `firmware build`: its size report beside it says its task and device; another id is refused
    (the firmware signs its updates with the id baked in, and the server would drop them as another device's)."""
    report = elf.with_suffix(".size.json")
    baked = json.loads(report.read_text()) if report.is_file() else {}
    if baked.get("device_id", device_id) != device_id:
        raise ValueError(f"{elf} was built for {baked['device_id']}, not {device_id}: rebuild it with --id {device_id} (or drop --elf)")
    task = baked.get("task") or device_id.rsplit("-", 1)[0]
    return FirmwareImage(task, board_name, device_id, elf, image_size(elf), int(baked.get("sensor_samples", 0)))


@firmware_app.command("build")
def build(
    board_name: str = typer.Option(..., "--board", help="mps2-an386 (QEMU) or nano33ble (Arduino Nano 33 BLE Sense)."),
    task: str = typer.Option("sine", help="The task whose device round the image runs: sine or keywords."),
    out: Path = typer.Option(..., "--out", help="Directory for the ELF (+ .bin/.hex for the Nano) and the size report."),
    device_id: str = typer.Option(None, "--id", help="The device the image plays (default TASK-0): its weights, profile, samples."),
    samples: int = typer.Option(DEFAULT_SENSOR_SAMPLES, help="Samples in a sine image's sensor recording (each used once)."),
    as_json: bool = typer.Option(False, "--json", help="Print the size report as JSON instead of a sentence."),
    registry: str = typer.Option(None, help="Also record the image's measured flash and RAM in this registry store "
                                            "as the device's firmware facts (matchmaking then uses them)."),
    model: str = typer.Option(None, help="With --registry: the IRI of the registered model the image carries."),
) -> None:
    """Build TASK's firmware for BOARD: the ELF, its size (arm-none-eabi-size) as TASK_firmware.size.json and printed."""
    if model and not registry:
        _fail("--model names the image's model in a registry: give --registry too")
        return
    try:
        image = build_device_image(board_name, task, out, device_id, samples)
    except (UnsupportedTaskError, ValueError) as exc:
        _fail(str(exc))
        return
    except BuildError as exc:
        _fail(str(exc), 1)
        return
    if registry:
        from ontology.firmware_facts import record_firmware
        from ontology.store import StoreError, open_store

        try:
            with open_store(registry) as store:
                facts = record_firmware(store, image.as_json(), image.device_id, model=model)
        except (StoreError, ValueError, OSError) as exc:
            _fail(f"--registry {registry}: {exc}")
            return
        typer.echo(f"registry {registry}: firmware facts of {facts.device} ({facts.flash_bytes:,} B flash, "
                   f"{facts.ram_bytes:,} B RAM)")
    if as_json:
        typer.echo(json.dumps(image.as_json(), indent=2))
        return
    typer.echo(image.summary())
    for path in (image.elf, *image.extra, image.report):
        typer.echo(f"wrote {path}")


@firmware_app.command("run")
def run(
    board_name: str = typer.Option("mps2-an386", "--board", help="The emulated board (QEMU): mps2-an386."),
    accounts: Path = typer.Option(..., exists=True, dir_okay=False, help="accounts.json of `tinyfleet server --local-broker`."),
    device_id: str = typer.Option(..., "--id", help="The device the board plays (its account in --accounts): sine-N or keywords-N."),
    elf: Path = typer.Option(None, exists=True, dir_okay=False, help="A built image (default: build one for --id)."),
    out: Path = typer.Option(None, "--out", help="The device's folder: its image and, for keywords, its clip feed (default runs/firmware)."),
    samples: int = typer.Option(DEFAULT_SENSOR_SAMPLES, help="Sensor recording of a built sine image, in samples."),
    icount: bool = typer.Option(True, help="QEMU -icount shift=0: the device's instruction counts and time books exact."),
    duration: float = typer.Option(None, help="Stop after this many seconds (default: until Ctrl-C / SIGTERM)."),
) -> None:
    """Start QEMU with the firmware, its UART wired to a serial gateway logged in as --id: the board joins the federation.

    A keywords device's microphone is the host: its clips (the ones its simulated twin draws) go through a FIFO in its
    folder that the firmware reads by semihosting (edge/firmware/host_feed.py)."""
    from firmware_sim.qemu_fleet import QemuDevice, QemuFleetConfig
    from firmware_sim.serial_gateway import load_account

    try:
        check_board(board_name)
        if board(board_name).qemu_machine is None:
            raise ValueError(f"{board_name} is a physical board, not emulated: flash its image (tinyfleet firmware build "
                             f"--board {board_name}) and run `tinyfleet gateway --serial /dev/ttyACM0 --id {device_id} "
                             f"--accounts {accounts}`")  # fmt: skip
        host, port, password = load_account(accounts, device_id)
        config = QemuFleetConfig(workdir=out or Path("runs/firmware"), board=board_name, icount=icount, samples=samples)
        device = QemuDevice(device_id, password, host, port, config, image=_prebuilt(elf, device_id, board_name) if elf else None)
        image = device.build()
        typer.echo(image.summary())
    except (UnsupportedTaskError, ValueError, OSError, json.JSONDecodeError) as exc:
        _fail(str(exc))
        return
    except BuildError as exc:
        _fail(str(exc), 1)
        return

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        try:
            device.start()
        except (TimeoutError, OSError) as exc:
            _fail(f"gateway for {device_id}: {exc}", 1)
        process = device.process
        typer.echo(f"{device_id}: QEMU {board_name} (pid {process.pid}) on the gateway's line 127.0.0.1:{device.gateway.line_port}, "
                   f"broker {host}:{port}; Ctrl-C stops")  # fmt: skip
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.wait(0.2):
            if process.poll() is not None:
                if stop.wait(0.5):  # Ctrl-C in a terminal signals QEMU too (same process group): a stop, not a crash
                    break
                code = 1 if process.returncode else 0
                err = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                typer.echo(f"{device_id}: QEMU exited with status {process.returncode}" + (f": {err}" if err else ""), err=True)
                break
            if deadline is not None and time.monotonic() > deadline:
                break
    finally:
        stats = getattr(device.gateway, "stats", None)
        device.stop()
        if stats is not None:
            typer.echo(f"{device_id}: stopped; {stats.frames_from_device} frames from the device, {stats.frames_to_device} "
                       f"to it, {sum(stats.errors.values())} refused")  # fmt: skip
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code:
        raise typer.Exit(code)
