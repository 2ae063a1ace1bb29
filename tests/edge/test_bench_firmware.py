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


@pytest.mark.slow  # a QEMU federation and seven QEMU images: about 40 s
def test_smallest_bench_writes_the_issues_form_with_measured_figures(tmp_path: Path) -> None:
    """Every task, untrained backbones (the counts follow the ops, not the weights), 1 round of 1 + 1 devices."""
    out = tmp_path / "firmware.json"
    done = subprocess.run([sys.executable, str(BENCH), "--rounds", "1", "--qemu", "1", "--simulated", "1", "--timing-steps", "10",
                           "--backbones", "untrained", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    # the issue's form: one entry per task
    assert set(report) >= {"tasks", "federation"}
    assert [e["task"] for e in report["tasks"]] == ["sine", "characters", "keywords", "presence"]
    for entry in report["tasks"]:
        assert set(entry) == {"task", "board", "instructions", "flash_bytes", "ram_bytes"}
        assert entry["board"] == "mps2-an386"
        assert set(entry["instructions"]) == {"inference", "head_update", "imprint"}
        assert 10_000 < entry["flash_bytes"] < 1 << 20 and 1_000 < entry["ram_bytes"] < 256 << 10
    fed = report["federation"]
    assert {k: fed[k] for k in ("rounds", "qemu_devices", "simulated_devices", "qemu_updates_accepted_per_round")} == {
        "rounds": 1, "qemu_devices": 1, "simulated_devices": 1, "qemu_updates_accepted_per_round": [1]}
    assert fed["updates_accepted_per_round"] == [2] and fed["grid_drops"] == {} and fed["serial_errors"] == 0
    assert report["not_measured"] == {}
    tasks = {e["task"]: e["instructions"] for e in report["tasks"]}
    # sine: 1,680 MACs and 80 tanhf per inference; the head-only update after it (w2, b2: 41 weights) is a fraction
    # of it, as is the TinyOL head step on the 40 hidden features; a whole step is forward + update; no imprint
    sine, details = tasks["sine"], report["details"]["sine"]
    assert 5_000 < sine["inference"] < 100_000 and sine["imprint"] is None
    assert sine["head_update"] < sine["inference"] < details["masked_head_step"] <= details["whole_model_step"]
    assert 0 < details["tinyol_head_step"] < sine["inference"]
    # the TinyOL tasks: the backbone is most of an inference; a step and an imprint cost more than the head's forward
    for task in ("characters", "keywords", "presence"):
        ins, details = tasks[task], report["details"][task]
        assert details["backbone_instructions"] < ins["inference"]
        assert details["backbone_int8_macs"] < details["backbone_instructions"]  # at least one instruction per MAC
        assert details["head_forward_instructions"] < ins["imprint"] < ins["head_update"]
        assert "untrained" in details["backbone"]
    mfcc = report["details"]["keywords"]["mfcc_front_end"]  # raw audio in: 49 frames of FFT, mel and DCT per second
    assert mfcc["frames"] == 49 and 100_000 < mfcc["instructions"] < 50_000_000
    for task, ratio in report["ratios"].items():
        ins = tasks[task]
        assert ratio["head_update_over_inference"] == pytest.approx(ins["head_update"] / ins["inference"], abs=1e-4)
        assert ratio["paper_tinyol_update_over_inference"] == 0.10
        assert ratio["meets_target"] == (ratio["head_update_over_inference"] <= 0.15)
    # the time model: int8 instructions per MAC of each kernel kind the backbones hold, and the float MLP's
    per_mac = report["time_model"]["int8_instructions_per_mac"]
    assert set(per_mac) == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} and all(1 < v < 100 for v in per_mac.values())
    assert 1 < report["time_model"]["float_mlp_forward_instructions_per_mac"] < 100
    assert "QEMU updates accepted per round [1]" in done.stdout


def test_the_bench_sizes_are_arm_none_eabi_sizes_of_the_cli_image(tmp_path: Path) -> None:
    from server.cli_firmware import build_device_image

    image = build_device_image("mps2-an386", "sine", tmp_path)
    size = image_size(image.elf)
    report = json.loads(image.report.read_text())
    assert (report["flash_bytes"], report["ram_bytes"]) == (size.flash_bytes, size.ram_bytes) == (size.text + size.data, size.data + size.bss)
