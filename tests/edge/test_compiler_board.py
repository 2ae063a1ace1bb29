"""Generated C for the board: arm-none-eabi-gcc for mps2-an386, QEMU gives the same bytes as the host build.

All models share one firmware image (one build, one QEMU boot).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from compiler_models import ALL_MODELS, host_runs
from tflite_models import BackboneModels

from edge.compiler import compile_model
from edge.compiler.board_run import flash_bytes, run_qemu, run_qemu_many

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None or shutil.which("cc") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


N_BOARD = 8  # the first inputs of each model's host run go through QEMU too


@pytest.fixture(scope="module")
def host_and_board(tmp_path_factory: pytest.TempPathFactory, backbone_models: BackboneModels) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (host outputs, QEMU outputs) of the same inputs; two firmware images built and run side by side."""
    rng = np.random.default_rng(5)
    extra = {"backbone_int8": (backbone_models.int8_path, rng.integers(-128, 128, size=(256, 1, 1), dtype=np.int8))}
    runs = host_runs(ALL_MODELS, tmp_path_factory, extra)
    cases = [(compile_model(path.read_bytes(), prefix=n), x[:N_BOARD]) for n, (path, x, _) in runs.items()]
    halves = [cases[0::2], cases[1::2]]
    dirs = [tmp_path_factory.mktemp("compiler_board") for _ in halves]
    with ThreadPoolExecutor(max_workers=2) as pool:
        boards = list(pool.map(run_qemu_many, halves, dirs))
    by_name = {c.prefix: b.outputs for half, result in zip(halves, boards) for (c, _), b in zip(half, result)}
    return {n: (out[:N_BOARD], by_name[n]) for n, (_, _, out) in runs.items()}


@pytest.mark.parametrize("name", ALL_MODELS + ["backbone_int8"])
def test_same_bytes_on_host_and_under_qemu(name: str, host_and_board: dict) -> None:
    host, board = host_and_board[name]
    assert board.shape == host.shape and len(board) > 0
    assert board.tobytes() == host.tobytes()
    assert len(np.unique(host)) > 3


def test_instructions_and_flash_are_measured(backbone_models: BackboneModels, tmp_path: Path) -> None:
    compiled = compile_model(backbone_models.int8_path.read_bytes())
    run = run_qemu(compiled, np.zeros((1, 1, 1), np.int8), tmp_path, timing=True, repeats=20)
    again = run_qemu(compiled, np.zeros((1, 1, 1), np.int8), tmp_path / "again", timing=True, repeats=20)
    assert run.instructions_per_inference == again.instructions_per_inference  # icount is deterministic
    # 1-40-40: 1,640 MACs; the int8 loop costs a few instructions a MAC, tanh ~100 an element
    assert compiled.macs == 40 + 1600
    assert compiled.macs < run.instructions_per_inference < 100 * compiled.macs
    flash = flash_bytes(compiled, tmp_path / "flash")
    weights = sum(c.values.size * {"int8_t": 1, "int32_t": 4, "float": 4}[c.c_type] for s in compiled.steps for c in s.consts)
    assert weights < flash < weights + 8192
