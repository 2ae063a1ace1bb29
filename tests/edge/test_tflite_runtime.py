"""Every interpreter backend runs the training model; broken models give errors, never crashes.

Backends are exercised in child processes: ai_edge_litert and tflite_runtime may
not coexist well in one process, and a crash must not take pytest down with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tflite_models import LAYER_SIZES, SEED, BackboneModels

from edge.mlp import NumpyMLP
from edge.tflite_runtime import BACKENDS, ModelLoadError, interpreter_backend, load_interpreter

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env, check=False,
    )  # fmt: skip


def last_json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def truncated_model(training_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("broken") / "truncated.tflite"
    path.write_bytes(training_model.read_bytes()[:20000])  # keeps the TFL3 header; crashes naive loaders
    return path


RUN_TRAINER = """
import json, sys
import numpy as np
from edge.tflite_learner import TFLiteTrainer
backend, path = sys.argv[1:]
trainer = TFLiteTrainer(path, backend=backend)
loss = trainer.learn_one([0.3], [1.0], 0.05)
x = np.linspace(-5, 5, 7, dtype=np.float32).reshape(-1, 1)
loaded = sorted(m for m in ("ai_edge_litert", "tflite_runtime", "tensorflow") if sys.modules.get(m) is not None)
print(json.dumps({"backend": trainer.backend, "loss": loss, "y": trainer.predict(x).ravel().tolist(), "loaded": loaded}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_trains_like_numpy(backend: str, training_model: Path) -> None:
    out = last_json(run_python(RUN_TRAINER, backend, str(training_model)))
    reference = NumpyMLP(LAYER_SIZES, seed=SEED)
    expected_loss = reference.learn_one([0.3], [1.0], 0.05)
    x = np.linspace(-5, 5, 7, dtype=np.float32).reshape(-1, 1)
    assert out["backend"] == backend
    assert out["loss"] == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(out["y"], reference.predict(x).ravel(), rtol=1e-5, atol=1e-5)
    if backend != "tensorflow":
        assert out["loaded"] == [backend]  # nothing else was imported


BROKEN_MODEL = """
import json, sys
from edge.tflite_runtime import ModelLoadError, load_interpreter
backend, path = sys.argv[1:]
try:
    load_interpreter(path, backend=backend)
    print(json.dumps({"error": None}))
except ModelLoadError as exc:
    print(json.dumps({"error": str(exc)}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_model_is_an_error_not_a_crash(backend: str, truncated_model: Path) -> None:
    # tflite_runtime 2.14 and tf.lite (given a path) segfault on this file if opened naively.
    out = last_json(run_python(BROKEN_MODEL, backend, str(truncated_model)))
    assert out["error"] is not None and str(truncated_model) in out["error"]


def test_auto_prefers_ai_edge_litert(training_model: Path) -> None:
    interpreter = load_interpreter(training_model)
    assert interpreter_backend(interpreter) == "ai_edge_litert"
    assert set(interpreter.get_signature_list()) == {"train", "infer", "get_weights", "set_weights", "set_step_sizes"}
    assert interpreter_backend(load_interpreter(training_model.read_bytes())) == "ai_edge_litert"
    with pytest.raises(ValueError):
        interpreter_backend(object())


FALLBACK = """
import json, sys
for name in sys.argv[2:]:
    sys.modules[name] = None  # as if not installed
from edge.tflite_runtime import BackendUnavailableError, interpreter_backend, load_interpreter
try:
    print(json.dumps({"backend": interpreter_backend(load_interpreter(sys.argv[1]))}))
except BackendUnavailableError as exc:
    print(json.dumps({"backend": None, "error": str(exc)}))
"""


def test_auto_falls_back_to_tflite_runtime(training_model: Path) -> None:
    assert last_json(run_python(FALLBACK, str(training_model), "ai_edge_litert"))["backend"] == "tflite_runtime"


def test_no_backend_installed(training_model: Path) -> None:
    out = last_json(run_python(FALLBACK, str(training_model), "ai_edge_litert", "tflite_runtime", "tensorflow"))
    assert out["backend"] is None and "no TFLite interpreter" in out["error"]


def test_missing_and_corrupt_models(tmp_path: Path, training_model: Path, truncated_model: Path) -> None:
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ModelLoadError, match="cannot read model file .*nope.tflite"):
        load_interpreter(missing)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not a TFLite model"):
        load_interpreter(empty)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x10\x00\x00\x00TFL3" + np.random.default_rng(0).bytes(3000))
    with pytest.raises(ModelLoadError, match="garbage.tflite"):
        load_interpreter(garbage)
    with pytest.raises(ModelLoadError, match="truncated.tflite"):
        load_interpreter(truncated_model)
    with pytest.raises(ModelLoadError, match="bytes of model content"):
        load_interpreter(training_model.read_bytes()[:-3000])
    assert isinstance(ModelLoadError("x"), ValueError)


def test_bad_arguments(training_model: Path) -> None:
    with pytest.raises(ValueError, match="unknown TFLite backend"):
        load_interpreter(training_model, backend="coreml")
    with pytest.raises(ValueError, match="num_threads"):
        load_interpreter(training_model, num_threads=0)


NO_TENSORFLOW = """
import json, sys
sys.modules["tensorflow"] = None  # any import of TensorFlow or Keras now fails
sys.modules["keras"] = None
import numpy as np
import edge, edge.tflite_runtime, edge.tflite_layout, edge.tflite_learner
from edge.tflite_learner import BackboneHeadLearner, FrozenBackbone, TFLiteTrainer
trainer = TFLiteTrainer(sys.argv[1], backend="ai_edge_litert")
loss = trainer.learn_one([0.3], [1.0], 0.05)
head = BackboneHeadLearner(FrozenBackbone(sys.argv[2], backend="ai_edge_litert"))
head_loss = head.learn_one([0.3], [1.0], 0.05)
print(json.dumps({"loss": loss, "head_loss": head_loss, "tf": sys.modules["tensorflow"] is None}))
"""


def test_edge_runs_without_tensorflow(training_model: Path, backbone_models: BackboneModels) -> None:
    out = last_json(run_python(NO_TENSORFLOW, str(training_model), str(backbone_models.int8_path)))
    assert out["tf"] is True
    assert out["loss"] == pytest.approx(NumpyMLP(LAYER_SIZES, seed=SEED).learn_one([0.3], [1.0], 0.05), rel=1e-5)
    assert np.isfinite(out["head_loss"])
