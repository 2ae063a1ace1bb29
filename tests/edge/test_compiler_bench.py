"""bench/compiler.py's per-model measurement on the project's int8 backbone: every figure present and true."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from tflite_models import BackboneModels

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compiler.py"
pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None or shutil.which("cc") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_compiler", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_reports_ram_flash_instructions_and_exactness(backbone_models: BackboneModels, tmp_path: Path) -> None:
    row = _bench().measure("sine_int8", backbone_models.int8_path, tmp_path, samples=16, repeats=5)
    assert row["ops"] == {"FULLY_CONNECTED": 2, "TANH": 2} and row["macs"] == 1640
    assert row["tflm_arena_total"] == row["tflm_arena_head"] + row["tflm_arena_tail"]
    assert row["arena_bytes"] < row["arena_plus_io_bytes"] <= row["tflm_arena_total"]
    assert 0 < row["flash_bytes"] and row["model_file_bytes"] == backbone_models.int8_path.stat().st_size
    assert row["instructions_per_inference"] > row["macs"]
    assert 1 < row["instructions_per_mac"]["FULLY_CONNECTED"] < 100
    assert row["exact"]["host_vs_tflm_bit_identical"] and row["exact"]["qemu_vs_host_same_bytes"]


def test_a_refused_model_is_a_row_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    row = _bench().measure("bad", bad, tmp_path, samples=4, repeats=1)
    assert "TFL3" in row["refused"]
