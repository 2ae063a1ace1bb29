"""`tinyfleet export FORMAT --run W | MODEL --out DIR`, driven through typer's CliRunner on a real run.

What each format's files hold is tested beside its writer (test_export_run.py, test_export_tflite.py,
tests/edge/test_arduino_library.py, tests/edge/test_compiler_cli.py); here: the command's wiring, its
messages and its refusals (one line on stderr, exit 2, nothing written).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge.mlp import init_mlp_weights
from server.cli_export import export_app
from server.core.checkpoint import Checkpointer
from tests.server.test_export_run import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("cli_export_run"))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from server.models.backbone_head import export_float_backbone

    return export_float_backbone(init_mlp_weights((1, 8, 8, 1), 0), tmp_path_factory.mktemp("model") / "backbone.tflite", n_layers=3)


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(export_app, list(args))


def test_npz_of_a_run(run_dir: Path, tmp_path: Path) -> None:
    result = invoke("npz", "--run", str(run_dir), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output + result.stderr
    assert "at round 2: tinyreptile, task sine, MLP 1-8-8-1, with learned step sizes" in result.stdout
    assert "wrote 3 files" in result.stdout
    assert json.loads((tmp_path / "manifest.json").read_text())["round"] == 2


def test_c_of_a_run_and_of_a_model(run_dir: Path, backbone: Path, tmp_path: Path) -> None:
    result = invoke("c", "--run", str(run_dir), "--out", str(tmp_path / "run"), "--prefix", "meta")
    assert result.exit_code == 0, result.output + result.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["manifest.json", "meta.c", "meta.h"]
    result = invoke("c", str(backbone), "--out", str(tmp_path / "model"))
    assert result.exit_code == 0, result.output + result.stderr
    assert "MODEL_ARENA_BYTES" in result.stdout and (tmp_path / "model" / "model.c").is_file()


def test_tflite_of_a_run(run_dir: Path, tmp_path: Path) -> None:
    result = invoke("tflite", "--run", str(run_dir), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output + result.stderr
    assert (tmp_path / "sine_train.tflite").stat().st_size > 0 and (tmp_path / "manifest.json").is_file()


def test_arduino_of_a_run_and_of_a_model(run_dir: Path, backbone: Path, tmp_path: Path) -> None:
    result = invoke("arduino", "--run", str(run_dir), "--out", str(tmp_path / "lib"), "--id", "sine-5", "--samples", "50")
    assert result.exit_code == 0, result.output + result.stderr
    assert "examples/TinyFleetDevice/TinyFleetDevice.ino" in result.stdout
    assert '#define DEVICE_ID "sine-5"' in (tmp_path / "lib" / "src" / "device_config.h").read_text()
    assert "#define N_SENSOR_SAMPLES 50" in (tmp_path / "lib" / "src" / "device_config.h").read_text()
    result = invoke("arduino", "--model", str(backbone), "--out", str(tmp_path / "model_lib"), "--classes", "4")
    assert result.exit_code == 0, result.output + result.stderr
    assert (tmp_path / "model_lib" / "library.properties").is_file()
    assert "#define HEAD_CLASSES 4" in (tmp_path / "model_lib" / "examples" / "TinyFleetDevice" / "TinyFleetDevice.ino").read_text()


def _no_checkpoint(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _refused_by_the_compiler(tmp_path: Path) -> Path:
    from server.models.sine_mlp import export_training_model  # resource variables, several signatures

    return export_training_model(tmp_path / "train.tflite", (1, 4, 1))


def _classifier_run(tmp_path: Path) -> Path:
    Checkpointer(tmp_path / "run" / "checkpoints").save(
        1, init_mlp_weights((3, 4, 2), 0), {"strategy": "fedavg", "settings": {"device": {"task": "presence"}, "layer_sizes": [3, 4, 2]}}
    )
    return tmp_path / "run"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda t: ["npz", "--run", str(t / "missing")], "does not exist"),
        (lambda t: ["npz", "--run", str(_no_checkpoint(t))], "holds no checkpoint"),
        (lambda t: ["zip", "--run", str(t)], "unknown export format 'zip'; formats: tflite, npz, c, arduino"),
        (lambda t: ["c", str(_refused_by_the_compiler(t))], "error: "),
        (lambda t: ["arduino", "--model", str(_refused_by_the_compiler(t))], "error: "),
        (lambda t: ["c", str(t / "missing.tflite")], "model file"),
        (lambda t: ["c"], "give either --run W or a model file, not neither"),
        (lambda t: ["npz", str(t / "m.tflite")], "give --run W, not a model file"),
        (lambda t: ["arduino", "--run", str(_classifier_run(t))], "task 'presence' is not packaged yet"),
    ],
)
def test_bad_input_is_refused_in_one_line_with_exit_2(tmp_path: Path, args, message: str) -> None:
    out = tmp_path / "out"
    result = invoke(*args(tmp_path), "--out", str(out))
    assert result.exit_code == 2, result.output + result.stderr
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_the_run_and_a_model_together_are_refused(run_dir: Path, backbone: Path, tmp_path: Path) -> None:
    result = invoke("c", str(backbone), "--run", str(run_dir), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "not both" in result.stderr
    assert not (tmp_path / "out").exists()
    assert np.all(np.isfinite(np.load(run_dir / "checkpoints" / "round-000002.npz")["theta/w0"]))  # the run untouched
