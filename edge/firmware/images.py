"""Firmware images per task and board, and their size reports (issue 15: ``tinyfleet firmware build``).

Why a module of its own: the command line (``server/cli_firmware.py``), the
benchmark (``bench/firmware.py``), ``tinyfleet firmware run`` and the QEMU
fleet (``firmware_sim/qemu_fleet.py``) all build the same image for a device:

- **sine**: the sine MLP firmware (``device/sine_firmware.c``) with that
  device's shipped weights (its local init), its sensor (a recording of the
  device's own sample stream: each sample is used once across rounds) and its
  profile;
- **keywords**: the keyword firmware (``device/keywords_firmware.c``): raw
  audio from the sample source (``device/sample_source.h``: the host's feed by
  semihosting on mps2-an386, the PDM microphone on the Nano), the MFCC front
  end with the task's feature scaler (``mfcc_tables.h``, generated), and the
  classifier round, with the device's shipped weights and profile.

Other tasks are refused with the reason (:func:`check_task`).

    >>> check_task("keywords")
    >>> check_task("presence")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edge.firmware.images.UnsupportedTaskError: task 'presence' has no firmware yet: it needs the room sensors' ...

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

from edge.firmware.build import BOARDS, SERIAL_LINK_C, ImageSize, board, build_elf, image_size, objcopy

if TYPE_CHECKING:
    import numpy as np

    from edge.profiles import DeviceProfile

SINE_LAYERS = (1, 40, 40, 1)  # the sine federation's MLP (firmware_sim.mqtt_fleet.FleetConfig.layer_sizes)
DEFAULT_SENSOR_SAMPLES = 2000  # 16 KB of flash; about 60 rounds of 10 stream + 5 probe + reconstruction samples
FIRMWARE_TASKS = ("sine", "keywords")
NOT_YET: dict[str, str] = {
    "characters": "it needs the compiled int8 backbone and the TinyOL head round on the device (not built yet)",
    "presence": "it needs the room sensors' window features computed on the device, in a firmware app (not built yet)",
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
            "sample_source": self.sample_source,
            "flash_bytes": self.size.flash_bytes, "ram_bytes": self.size.ram_bytes,
            "board_flash_bytes": spec.flash_bytes, "board_ram_bytes": spec.ram_bytes,
            "size": asdict(self.size), "tool": "arm-none-eabi-size -B",
        }  # fmt: skip

    @property
    def sample_source(self) -> str:
        """Where the image's samples come from (device/sample_source.h for keywords)."""
        if self.task != "keywords":
            return "recording in flash"
        return "PDM microphone" if self.board == "nano33ble" else "host feed by semihosting (edge/firmware/host_feed.py)"

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
    profile: DeviceProfile,
    sensor: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    scaler: tuple[np.ndarray, np.ndarray] | None = None,
    pool: int | None = None,
    write_report: bool = True,
) -> FirmwareImage:
    """Build ``task``'s firmware for ``board_name`` as ``device_id``: its shipped weights and profile, and

    - sine: ``sensor``, the recording of its samples (at least one);
    - keywords: ``scaler`` (mean, spread of the pooled MFCC features) and ``pool`` (frames per time step), the
      constants ``firmware_sim.task_families.keyword_features`` standardises by (edge does not import it).

    Writes ``out_dir/<task>_firmware.elf`` (+ ``.bin`` and ``.hex`` for the Nano) and, with ``write_report``,
    ``<task>_firmware.size.json`` (:meth:`FirmwareImage.as_json`). Raises UnsupportedTaskError, ValueError
    (board, id, shapes, a missing input) or edge.firmware.build.BuildError (e.g. the image does not fit the board's
    RAM). The simulated fleet's inputs for a ``<task>-N`` id come from ``firmware_sim`` (``server/cli_firmware.py``).
    """
    check_board(board_name)
    check_task(task)
    name = f"{task}_firmware"
    if task == "sine":
        if len(sensor) < 1:
            raise ValueError("the sensor recording needs at least one sample")
        from edge.firmware.device import build_sine_firmware  # numpy and the device package: only when building

        elf = build_sine_firmware(Path(out_dir), device_id=device_id, local_init=local_init, sensor=sensor,
                                  profile=profile, board=board_name, name=name)  # fmt: skip
    else:
        if scaler is None or pool is None:
            raise ValueError("the keywords firmware needs the feature scaler (mean, spread) and the frame pool")
        elf = build_keywords_firmware(Path(out_dir), device_id=device_id, local_init=local_init, profile=profile,
                                      scaler=scaler, pool=pool, board=board_name, name=name)  # fmt: skip
    extra = (objcopy(elf, "binary"), objcopy(elf, "ihex")) if board_name == "nano33ble" else ()
    report = elf.with_suffix(".size.json") if write_report else None
    image = FirmwareImage(task, board_name, device_id, elf, image_size(elf), len(sensor), extra, report)
    if report is not None:
        report.write_text(json.dumps(image.as_json(), indent=2) + "\n")
    return image


def build_keywords_firmware(
    out_dir: Path,
    *,
    device_id: str,
    local_init: Mapping[str, np.ndarray],
    profile: DeviceProfile,
    scaler: tuple[np.ndarray, np.ndarray],
    pool: int,
    board: str = "mps2-an386",
    name: str = "keywords_firmware",
) -> Path:
    """``device/keywords_firmware.c`` for ``board``: its ``device_config.h`` (id, shipped weights w0, b0, ... in
    order, profile, arena size) and ``mfcc_tables.h`` (front end and scaler) generated into ``out_dir``, the sample
    source of the board (semihosted feed on mps2-an386, PDM microphone on the Nano), then built."""
    import numpy as np

    from edge.firmware.device import DEVICE_DIR, LIBRARY, c_floats, c_header
    from edge.firmware.mfcc_tables import write_tables
    from edge.wire import check_device_id

    check_device_id(device_id)
    names = sorted(local_init, key=lambda k: (int(k[1:]), k[0] != "w"))
    n_layers = len(names) // 2
    sizes = [local_init["w0"].shape[0]] + [local_init[f"w{i}"].shape[1] for i in range(n_layers)]
    mean = np.asarray(scaler[0], np.float32).ravel()
    if sizes[0] != mean.size:
        raise ValueError(f"the MLP takes {sizes[0]} inputs but the scaler standardises {mean.size} features")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(out, scaler=scaler, pool=pool)
    n_params = sum(int(np.asarray(v).size) for v in local_init.values())
    arena = 2 * n_params + sum(sizes) + 2 * max(sizes)  # mlp.c's tf_mlp_arena_floats; the firmware checks it at boot
    c_header(out / "device_config.h", {
        "DEVICE_ID": f'"{device_id}"', "N_LAYERS": n_layers, "SIZES": "{" + ",".join(map(str, sizes)) + "}",
        "N_PARAMS": n_params, "ARENA_FLOATS": arena,
        "PROFILE_CLOCK_HZ": f"{float(profile.clock_hz)!r}", "PROFILE_SUPPLY_V": repr(float(profile.supply_voltage_v)),
        "PROFILE_ACTIVE_A": repr(float(profile.active_current_a)), "PROFILE_RADIO_BPS": f"{float(profile.radio_bitrate_bps)!r}",
        "PROFILE_TX_A": repr(float(profile.radio_tx_current_a)), "PROFILE_RX_A": repr(float(profile.radio_rx_current_a)),
    }, [c_floats("LOCAL_INIT", np.concatenate([np.asarray(local_init[k], np.float32).ravel() for k in names]))])  # fmt: skip
    source = DEVICE_DIR / ("sample_source_pdm.c" if board == "nano33ble" else "sample_source_semihost.c")
    sources = [DEVICE_DIR / "keywords_firmware.c", *LIBRARY, DEVICE_DIR / "mfcc.c", source, SERIAL_LINK_C]
    return build_elf(board, sources, include_dirs=[out, DEVICE_DIR], out_dir=out, name=name)
