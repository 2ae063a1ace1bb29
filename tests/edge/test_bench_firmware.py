"""bench/firmware.py at its smallest (1 round, 1 QEMU device, 1 simulated): the issue's JSON form, every figure true."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.firmware.build import image_size

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "firmware.py"


def _have_mosquitto() -> bool:
    return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()


pytestmark = [
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                       reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm"),
    pytest.mark.skipif(not _have_mosquitto(), reason="apt-get install mosquitto"),
]  # fmt: skip


def test_smallest_bench_writes_the_issues_form_with_measured_figures(tmp_path: Path) -> None:
    out = tmp_path / "firmware.json"
    done = subprocess.run([sys.executable, str(BENCH), "--rounds", "1", "--qemu", "1", "--simulated", "1", "--timing-steps", "20",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    # the issue's form
    assert set(report) >= {"tasks", "federation"}
    (entry,) = report["tasks"]
    assert set(entry) == {"task", "board", "instructions", "flash_bytes", "ram_bytes"}
    assert (entry["task"], entry["board"]) == ("sine", "mps2-an386")
    assert set(entry["instructions"]) == {"inference", "head_update", "imprint"}
    fed = report["federation"]
    assert {k: fed[k] for k in ("rounds", "qemu_devices", "simulated_devices", "qemu_updates_accepted_per_round")} == {
        "rounds": 1, "qemu_devices": 1, "simulated_devices": 1, "qemu_updates_accepted_per_round": [1]}
    assert fed["updates_accepted_per_round"] == [2] and fed["grid_drops"] == {} and fed["serial_errors"] == 0
    # the figures: 1,680 MACs and 80 tanhf per inference; a step is forward + backward; a regressor has no imprint
    ins = entry["instructions"]
    assert 5_000 < ins["inference"] < 100_000 and ins["imprint"] is None
    details = report["details"]["sine"]
    assert ins["inference"] < ins["head_update"] <= details["whole_model_step"]
    assert 0 < details["tinyol_head_step"] < ins["inference"]  # 41 weights: a small fraction of the MLP's forward
    ratio = report["ratios"]["sine"]
    assert ratio["head_update_over_inference"] == pytest.approx(ins["head_update"] / ins["inference"], abs=1e-3)
    assert ratio["paper_tinyol_update_over_inference"] == 0.10
    # sizes: those of the image `tinyfleet firmware build` writes, within the board
    assert 30_000 < entry["flash_bytes"] < 1 << 20 and 30_000 < entry["ram_bytes"] < 256 << 10
    assert set(report["not_measured"]) == {"keywords", "characters", "presence"}
    assert "MFCC" in report["not_measured"]["keywords"]
    assert "QEMU updates accepted per round [1]" in done.stdout


def test_the_bench_sizes_are_arm_none_eabi_sizes_of_the_cli_image(tmp_path: Path) -> None:
    from server.cli_firmware import build_device_image

    image = build_device_image("mps2-an386", "sine", tmp_path)
    size = image_size(image.elf)
    report = json.loads(image.report.read_text())
    assert (report["flash_bytes"], report["ram_bytes"]) == (size.flash_bytes, size.ram_bytes) == (size.text + size.data, size.data + size.bss)
