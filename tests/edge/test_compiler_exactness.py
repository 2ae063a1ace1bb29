"""Generated C, built with the host compiler, against TFLite Micro on seeded random inputs: int8 bit-identical, float within 1e-5."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from compiler_models import SPECS, model_file, tflm_outputs
from tflite_models import BackboneModels

from edge.compiler import compile_model
from edge.compiler.harness import run_host

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a host C compiler")
N_SAMPLES = 64


def _check(path: Path, inputs: np.ndarray, work: Path) -> None:
    compiled = compile_model(path.read_bytes())
    ours = run_host(compiled, inputs, work)
    ref = tflm_outputs(path, inputs)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    if ref.dtype == np.int8:
        np.testing.assert_array_equal(ours, ref)
        assert len(np.unique(ref)) > 3  # the inputs exercise the model, not one saturated value
    else:
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
        assert np.std(ref) > 1e-3


@pytest.mark.parametrize("name", sorted(SPECS))
def test_small_model_matches_tflm(name: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    model = model_file(name, tmp_path_factory)
    _check(model.path, model.random_inputs(N_SAMPLES, seed=11), tmp_path)


def test_project_int8_backbone_matches_tflm_bit_for_bit(backbone_models: BackboneModels, tmp_path: Path) -> None:
    path = backbone_models.int8_path
    inputs = np.random.default_rng(5).integers(-128, 128, size=(256, 1, 1), dtype=np.int8)
    _check(path, inputs, tmp_path)
    ops = compile_model(path.read_bytes()).op_counts
    assert ops == {"FULLY_CONNECTED": 2, "TANH": 2}


def test_project_float_backbone_within_1e5(backbone_models: BackboneModels, tmp_path: Path) -> None:
    inputs = np.random.default_rng(6).uniform(-5, 5, size=(64, 1, 1)).astype(np.float32)
    _check(backbone_models.float_path, inputs, tmp_path)
