"""Firmware images per task and board, and their size reports (issue 15: ``tinyfleet firmware build``).

Why a module of its own: the command line (``server/cli_firmware.py``), the
benchmark (``bench/firmware.py``) and ``tinyfleet firmware run`` all build the
same image for a device: the sine MLP firmware (``device/sine_firmware.c``)
with that device's shipped weights (its local init), its sensor (a recording
of the device's own sample stream: QEMU has no sensor, each sample is used
once across rounds) and its profile. Only the sine task has a device round in
C so far; every other task is refused with the reason (:func:`check_task`).

    >>> check_task("sine")
    >>> check_task("keywords")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edge.firmware.images.UnsupportedTaskError: task 'keywords' has no firmware yet: it needs the MFCC front end ...

The size report is ``arm-none-eabi-size``'s: flash = text + data, RAM =
data + bss (every buffer is static, so that is all the RAM the image uses
besides its stack).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge.firmware.build import BOARDS, ImageSize, board, image_size, objcopy

if TYPE_CHECKING:
    import numpy as np

    from edge.profiles import DeviceProfile

SINE_LAYERS = (1, 40, 40, 1)  # the sine federation's MLP (firmware_sim.mqtt_fleet.FleetConfig.layer_sizes)
DEFAULT_SENSOR_SAMPLES = 2000  # 16 KB of flash; about 60 rounds of 10 stream + 5 probe + reconstruction samples
FIRMWARE_TASKS = ("sine",)
NOT_YET: dict[str, str] = {
    "keywords": "it needs the MFCC front end and the compiled int8 backbone on the device, in a device round (not yet)",
    "characters": "it needs the compiled int8 backbone and the TinyOL head round on the device (not built yet)",
    "presence": "its classifier round has no sensor firmware yet (not built yet)",
}


class UnsupportedTaskError(ValueError):
    """The task has no firmware (yet); the message says why, on one line."""


@dataclass(frozen=True)
class FirmwareImage:
    """A built image: the ELF, its flashable copies (Nano), its sizes and where the report went."""

    task: str
    board: str
    device_id: str
    elf: Path
    size: ImageSize
    sensor_samples: int
    extra: tuple[Path, ...] = ()  # .bin / .hex
    report: Path | None = None

    def as_json(self) -> dict[str, object]:
        spec = board(self.board)
        return {
            "task": self.task, "board": self.board, "device_id": self.device_id, "elf": str(self.elf),
            "files": [str(p) for p in (self.elf, *self.extra)], "sensor_samples": self.sensor_samples,
            "flash_bytes": self.size.flash_bytes, "ram_bytes": self.size.ram_bytes,
            "board_flash_bytes": spec.flash_bytes, "board_ram_bytes": spec.ram_bytes,
            "size": asdict(self.size), "tool": "arm-none-eabi-size -B",
        }  # fmt: skip

    def summary(self) -> str:
        spec = board(self.board)
        return (f"{self.elf.name} for {self.board} ({self.task}, {self.device_id}): flash {self.size.flash_bytes:,} B of "
                f"{spec.flash_bytes:,} ({100 * self.size.flash_bytes / spec.flash_bytes:.1f} %), RAM {self.size.ram_bytes:,} B "
                f"of {spec.ram_bytes:,} ({100 * self.size.ram_bytes / spec.ram_bytes:.1f} %) "
                f"[text {self.size.text:,}, data {self.size.data:,}, bss {self.size.bss:,}]")  # fmt: skip


def check_task(task: str) -> None:
    """None for a task with firmware; UnsupportedTaskError with a one-line reason otherwise."""
    if task in FIRMWARE_TASKS:
        return
    if task in NOT_YET:
        raise UnsupportedTaskError(f"task {task!r} has no firmware yet: {NOT_YET[task]}; firmware tasks: {', '.join(FIRMWARE_TASKS)}")
    raise UnsupportedTaskError(f"unknown task {task!r}; firmware tasks: {', '.join(FIRMWARE_TASKS)}")


def check_board(name: str) -> None:
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}; boards: {', '.join(sorted(BOARDS))}")


def build_image(
    board_name: str,
    task: str,
    out_dir: Path | str,
    *,
    device_id: str,
    local_init: Mapping[str, np.ndarray],
    sensor: Sequence[tuple[np.ndarray, np.ndarray]],
    profile: DeviceProfile,
    write_report: bool = True,
) -> FirmwareImage:
    """Build ``task``'s firmware for ``board_name`` as ``device_id``: its shipped weights, sensor recording, profile.

    Writes ``out_dir/<task>_firmware.elf`` (+ ``.bin`` and ``.hex`` for the Nano) and, with ``write_report``,
    ``<task>_firmware.size.json`` (:meth:`FirmwareImage.as_json`). Raises UnsupportedTaskError, ValueError
    (board, id, shapes) or edge.firmware.build.BuildError. The simulated fleet's inputs for a ``sine-N`` id
    come from ``firmware_sim`` (see ``server/cli_firmware.py``: edge does not import it).
    """
    check_board(board_name)
    check_task(task)
    if len(sensor) < 1:
        raise ValueError("the sensor recording needs at least one sample")
    from edge.firmware.device import build_sine_firmware  # numpy and the device package: only when building

    elf = build_sine_firmware(Path(out_dir), device_id=device_id, local_init=local_init, sensor=sensor, profile=profile,
                              board=board_name, name=f"{task}_firmware")  # fmt: skip
    extra = (objcopy(elf, "binary"), objcopy(elf, "ihex")) if board_name == "nano33ble" else ()
    report = elf.with_suffix(".size.json") if write_report else None
    image = FirmwareImage(task, board_name, device_id, elf, image_size(elf), len(sensor), extra, report)
    if report is not None:
        report.write_text(json.dumps(image.as_json(), indent=2) + "\n")
    return image
