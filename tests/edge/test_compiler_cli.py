"""`tinyfleet export c` (server.cli_export.export_app), driven through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from compiler_models import refused_model
from tflite_models import BackboneModels
from typer.testing import CliRunner

from server.cli_export import export_app


def test_export_c_writes_the_model_and_reports_its_arena(backbone_models: BackboneModels, tmp_path: Path) -> None:
    result = CliRunner().invoke(export_app, ["c", str(backbone_models.int8_path), "--out", str(tmp_path / "c"), "--prefix", "sine", "--plan"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert {"sine.h", "sine.c", "tfc_kernels.h", "fully_connected.c", "tanh.c"} <= set(written)
    assert "SINE_ARENA_BYTES 40" in result.output and "#define SINE_ARENA_BYTES 40" in (tmp_path / "c" / "sine.h").read_text()
    assert "FULLY_CONNECTED x2" in result.output and "arena 40 bytes" in result.output


def test_export_c_refuses_an_unsupported_model_with_exit_2(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    result = CliRunner().invoke(export_app, ["c", str(refused_model("abs", tmp_path_factory)), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "op 1 (ABS)" in result.output
    assert not (tmp_path / "model.c").exists()


def test_export_c_needs_an_existing_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(export_app, ["c", str(tmp_path / "missing.tflite"), "--out", str(tmp_path)])
    assert result.exit_code != 0
