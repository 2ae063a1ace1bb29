"""Generated C, built with the host compiler, against TFLite Micro on seeded random inputs: int8 bit-identical, float within 1e-5.

All models share one host program (one build); each op/variant model is
then its own test case.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from compiler_models import ALL_MODELS, host_runs, tflm_outputs
from tflite_models import BackboneModels

from edge.compiler import compile_model

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a host C compiler")


def _assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    if ref.dtype == np.int8:
        np.testing.assert_array_equal(ours, ref)
        assert len(np.unique(ref)) > 3  # the inputs exercise the model, not one saturated value
    else:
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
        assert np.std(ref) > 1e-3


@pytest.fixture(scope="module")
def host_runs_all(tmp_path_factory: pytest.TempPathFactory, backbone_models: BackboneModels) -> dict[str, tuple[Path, np.ndarray, np.ndarray]]:
    """name -> (path, inputs, our host outputs) for every small model and the project's sine backbones."""
    rng = np.random.default_rng(5)
    extra = {"backbone_int8": (backbone_models.int8_path, rng.integers(-128, 128, size=(256, 1, 1), dtype=np.int8)),
             "backbone_float": (backbone_models.float_path, rng.uniform(-5, 5, size=(64, 1, 1)).astype(np.float32))}
    return host_runs(ALL_MODELS, tmp_path_factory, extra)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_small_model_matches_tflm(name: str, host_runs_all: dict) -> None:
    path, inputs, ours = host_runs_all[name]
    _assert_matches(ours, tflm_outputs(path, inputs))


def test_project_int8_backbone_matches_tflm_bit_for_bit(host_runs_all: dict) -> None:
    path, inputs, ours = host_runs_all["backbone_int8"]
    _assert_matches(ours, tflm_outputs(path, inputs))
    assert compile_model(path.read_bytes()).op_counts == {"FULLY_CONNECTED": 2, "TANH": 2}


def test_project_float_backbone_within_1e5(host_runs_all: dict) -> None:
    path, inputs, ours = host_runs_all["backbone_float"]
    _assert_matches(ours, tflm_outputs(path, inputs))


def test_one_model_builds_alone_with_the_issue_command(backbone_models: BackboneModels, tmp_path: Path) -> None:
    """`cc -std=c99 -O2 -IDIR DIR/*.c app.c -lm` with just the exported directory and an app of our own."""
    import subprocess

    from edge.compiler import export_c

    export_c(backbone_models.int8_path, tmp_path / "out")
    app = tmp_path / "app.c"
    app.write_text('#include <stdio.h>\n#include <stdint.h>\n#include "model.h"\n'
                   "int main(void) { int8_t x[1] = {5}; int8_t y[40]; if (model_input_bytes() != 1 || model_output_bytes() != 40) return 3;\n"
                   "  int rc = model_invoke(x, y); printf(\"%d %d %d\\n\", rc, MODEL_ARENA_BYTES, y[0]); return rc; }\n")
    sources = [str(p) for p in sorted((tmp_path / "out").glob("*.c"))]
    subprocess.run(["cc", "-std=c99", "-O2", f"-I{tmp_path / 'out'}", *sources, str(app), "-lm", "-o", str(tmp_path / "app")], check=True)
    rc, arena, y0 = subprocess.run([str(tmp_path / "app")], capture_output=True, text=True, check=True).stdout.split()
    ref = tflm_outputs(backbone_models.int8_path, np.array([[[5]]], np.int8))
    assert (int(rc), int(arena), int(y0)) == (0, 40, int(ref.reshape(-1)[0]))
