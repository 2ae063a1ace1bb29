"""The keywords firmware builds for the Arduino Nano 33 BLE Sense and fits it: flash and RAM as arm-none-eabi-size reads
them, with room left for the stack; the PDM microphone driver is linked in (compile-only: no board here runs it).

Why a RAM margin and not just "links": the linker only refuses .data + .bss over 256 KB; the stack grows down from the
top of RAM into what is left, so an image that links with 2 KB free would fault in its first round. The firmware
measures its stack's high-water mark (painted RAM, telemetry "stack-bytes"): 4,392 B over TinyMetaFed and whole-model
rounds under QEMU (tests/edge/test_firmware_keywords.py holds it under these 16 KB); the Nano's build differs only in
its board file and its sample source, whose chunk on the stack is the same 1.25 KB.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.firmware.build import board, image_size
from firmware_sim.qemu_fleet import build_device_image, split_fleet

STACK_MARGIN = 16 * 1024
pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="make system-deps installs arm-none-eabi-gcc")


def symbols(elf: Path) -> set[str]:
    done = subprocess.run(["arm-none-eabi-nm", "--defined-only", str(elf)], check=True, capture_output=True, text=True)
    return {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}


def test_the_nano_image_fits_its_flash_and_ram_with_room_for_the_stack(tmp_path: Path) -> None:
    image = build_device_image("nano33ble", "keywords-3", tmp_path)
    spec = board("nano33ble")
    size = image_size(image.elf)
    assert size == image.size and image.as_json()["tool"] == "arm-none-eabi-size -B"
    assert size.flash_bytes < spec.flash_bytes
    assert size.ram_bytes + STACK_MARGIN <= spec.ram_bytes, f"RAM {size.ram_bytes:,} B leaves under 16 KB of stack"
    assert {p.suffix for p in image.extra} == {".bin", ".hex"}
    report = json.loads(image.report.read_text())
    assert (report["flash_bytes"], report["ram_bytes"], report["sample_source"]) == (size.flash_bytes, size.ram_bytes, "PDM microphone")
    assert (tmp_path / "keywords_firmware.bin").stat().st_size == size.flash_bytes
    linked = symbols(image.elf)
    assert {"ss_next_clip", "tf_mfcc_stream_push", "tf_round_run", "sl_write_frame"} <= linked
    assert "semihost" not in linked  # the board's sample source is the microphone's driver, not the host's feed
    print(image.summary())


def test_an_id_of_another_task_or_none_is_refused_before_building(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names no task|not <task>-<number>"):
        build_device_image("nano33ble", "nano-kitchen", tmp_path / "a")
    with pytest.raises(ValueError, match="has no firmware"):
        build_device_image("nano33ble", "presence-2", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_split_fleet_puts_the_last_n_under_qemu_and_refuses_devices_without_firmware() -> None:
    assert split_fleet(["sine-0", "keywords-1", "sine-2"], 2) == (["sine-0"], ["keywords-1", "sine-2"])
    assert split_fleet(["sine-0"], 0) == (["sine-0"], [])
    with pytest.raises(ValueError, match="presence-4 cannot run under QEMU"):
        split_fleet(["sine-0", "presence-4"], 1)
    with pytest.raises(ValueError, match="the fleet has 1 devices"):
        split_fleet(["sine-0"], 2)
