"""`tinyfleet firmware build|run`: the device round in C as a board image, and an emulated board in a federation.

    tinyfleet firmware build --board nano33ble --task sine --out build/nano
    tinyfleet server --local-broker --fleet 8 --workdir runs/server &
    tinyfleet fleet run --accounts runs/server/accounts.json --devices 6 &
    tinyfleet firmware run --board mps2-an386 --accounts runs/server/accounts.json --id sine-7

Why here: building an image for a device needs that device's inputs (its
shipped weights, its sensor recording, its profile), which live in
``firmware_sim`` (edge may not import it); ``edge.firmware.images`` builds
from them. ``run`` is QEMU (``edge.firmware.qemu.start_elf``) with its UART
connected to a serial gateway (``firmware_sim.serial_gateway``) that logs in
to the broker with the device's own account, so the emulated board joins
the running federation as ``--id``; SIGINT/SIGTERM stop both. Mounted by
``server/cli.py`` as ``app.add_typer(firmware_app, name="firmware")``.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import typer

from edge.firmware.build import BuildError, board
from edge.firmware.images import DEFAULT_SENSOR_SAMPLES, SINE_LAYERS, FirmwareImage, UnsupportedTaskError, build_image, check_board

firmware_app = typer.Typer(help="Firmware images for microcontrollers, and emulated boards in a federation.", no_args_is_help=True)


@firmware_app.callback()
def _firmware() -> None:
    """Firmware images for microcontrollers, and emulated boards in a federation."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def build_device_image(board_name: str, task: str, out: Path, device_id: str = "sine-0",
                       samples: int = DEFAULT_SENSOR_SAMPLES) -> FirmwareImage:
    """The image of simulated-fleet device ``device_id`` (``sine-N``): its local init, its stream (key 0) and profile."""
    from edge.firmware.images import check_task
    from firmware_sim.fleet import local_init, profile_for, sine_device
    from firmware_sim.linux_device import seed_of

    check_board(board_name)
    check_task(task)  # before the recording is drawn: a refused task costs nothing
    if samples < 1:
        raise ValueError("--samples must be at least 1")
    seed = seed_of(device_id)
    recording = sine_device(seed, stream_key=0).stream.take(samples)  # the simulated twin's stream: each sample once
    return build_image(board_name, task, out, device_id=device_id, local_init=local_init(seed, SINE_LAYERS),
                       sensor=recording, profile=profile_for(seed))  # fmt: skip


def _check_elf_plays(elf: Path, device_id: str) -> None:
    """An image built by `firmware build` names its device in the size report beside it; another id is refused
    (the firmware signs its updates with the id baked in, and the server would drop them as another device's)."""
    report = elf.with_suffix(".size.json")
    if report.is_file():
        baked = json.loads(report.read_text()).get("device_id")
        if baked and baked != device_id:
            raise ValueError(f"{elf} was built for {baked}, not {device_id}: rebuild it with --id {device_id} (or drop --elf)")


@firmware_app.command("build")
def build(
    board_name: str = typer.Option(..., "--board", help="mps2-an386 (QEMU) or nano33ble (Arduino Nano 33 BLE Sense)."),
    task: str = typer.Option("sine", help="The task whose device round the image runs (sine only, for now)."),
    out: Path = typer.Option(..., "--out", help="Directory for the ELF (+ .bin/.hex for the Nano) and the size report."),
    device_id: str = typer.Option("sine-0", "--id", help="The device the image plays: its weights, sensor and profile."),
    samples: int = typer.Option(DEFAULT_SENSOR_SAMPLES, help="Samples in the sensor recording (each used once)."),
    as_json: bool = typer.Option(False, "--json", help="Print the size report as JSON instead of a sentence."),
) -> None:
    """Build TASK's firmware for BOARD: the ELF, its size (arm-none-eabi-size) as TASK_firmware.size.json and printed."""
    try:
        image = build_device_image(board_name, task, out, device_id, samples)
    except (UnsupportedTaskError, ValueError) as exc:
        _fail(str(exc))
        return
    except BuildError as exc:
        _fail(str(exc), 1)
        return
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
    device_id: str = typer.Option(..., "--id", help="The device the board plays (its account in --accounts)."),
    elf: Path = typer.Option(None, exists=True, dir_okay=False, help="A built image (default: build one for --id)."),
    task: str = typer.Option("sine", help="Task of the image built when --elf is not given."),
    out: Path = typer.Option(None, "--out", help="Where the built image goes (default runs/firmware/ID)."),
    samples: int = typer.Option(DEFAULT_SENSOR_SAMPLES, help="Sensor recording of the built image, in samples."),
    icount: bool = typer.Option(True, help="QEMU -icount shift=0: the device's instruction counts and time books exact."),
    duration: float = typer.Option(None, help="Stop after this many seconds (default: until Ctrl-C / SIGTERM)."),
) -> None:
    """Start QEMU with the firmware, its UART wired to a serial gateway logged in as --id: the board joins the federation."""
    from edge.firmware.qemu import start_elf
    from firmware_sim.serial_gateway import GatewayConfig, SerialGateway, load_account

    try:
        check_board(board_name)
        if board(board_name).qemu_machine is None:
            raise ValueError(f"{board_name} is a physical board, not emulated: flash its image (tinyfleet firmware build "
                             f"--board {board_name}) and run `tinyfleet gateway --serial /dev/ttyACM0 --id {device_id} "
                             f"--accounts {accounts}`")  # fmt: skip
        host, port, password = load_account(accounts, device_id)
        if elf is not None:
            _check_elf_plays(elf, device_id)
        else:
            image = build_device_image(board_name, task, out or Path("runs/firmware") / device_id, device_id, samples)
            typer.echo(image.summary())
            elf = image.elf
    except (UnsupportedTaskError, ValueError, OSError, json.JSONDecodeError) as exc:
        _fail(str(exc))
        return
    except BuildError as exc:
        _fail(str(exc), 1)
        return

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    gateway = process = None
    code = 0
    try:
        try:
            gateway = SerialGateway("listen://127.0.0.1:0", GatewayConfig(device_id, password, host, port)).start()
        except (TimeoutError, OSError) as exc:
            _fail(f"gateway for {device_id}: {exc}", 1)
        process = start_elf(elf, serial_port=gateway.line_port, icount=icount)
        typer.echo(f"{device_id}: QEMU {board_name} (pid {process.pid}) on the gateway's line 127.0.0.1:{gateway.line_port}, "
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
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except Exception:
                    process.kill()
                    process.wait(5)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        if gateway is not None:
            stats = gateway.stats
            gateway.stop()
            typer.echo(f"{device_id}: stopped; {stats.frames_from_device} frames from the device, {stats.frames_to_device} "
                       f"to it, {sum(stats.errors.values())} refused")  # fmt: skip
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code:
        raise typer.Exit(code)
