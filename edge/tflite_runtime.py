"""Open a .tflite model with whichever TFLite interpreter the device has.

Devices differ: a current Linux device has ``ai_edge_litert`` (LiteRT), an older
one only ``tflite_runtime``, a development machine TensorFlow. Every backend
is imported inside :func:`load_interpreter`, so ``import edge...`` never pulls
in TensorFlow (or any interpreter) on a device that only runs numpy learners.

A broken model file must produce a clear :class:`ModelLoadError`, never a
crash of the device process. The backends differ here (measured with the
versions pinned in pyproject.toml):

* ``ai_edge_litert`` verifies the flatbuffer for both a path and bytes;
* TensorFlow's ``tf.lite.Interpreter`` verifies bytes but segfaults on a
  truncated *file*, so this module always hands it bytes;
* ``tflite_runtime`` 2.14 verifies neither and segfaults on truncated input,
  so a model is first opened in a throw-away child process (0.1-0.4 s,
  once per load) and only loaded in-process if that child survived.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

BACKENDS: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime", "tensorflow")
# Module that defines each backend's Interpreter class, to tell them apart afterwards.
_BACKEND_MODULES = {
    "ai_edge_litert": "ai_edge_litert.",
    "tflite_runtime": "tflite_runtime.",
    "tensorflow": "tensorflow.",
}
_TFLITE_IDENTIFIER = b"TFL3"

# Run by the child process that proves a model can be opened without crashing.
_PROBE = """
import sys
from tflite_runtime.interpreter import Interpreter
try:
    Interpreter(model_content=sys.stdin.buffer.read()).allocate_tensors()
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
"""


class ModelLoadError(ValueError):
    """A model could not be opened; the message names the model and the cause."""


class BackendUnavailableError(ImportError):
    """The requested interpreter backend (or, for "auto", every backend) is not installed."""


def _interpreter_class(backend: str) -> type:
    if backend == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    if backend == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.lite.Interpreter
    raise ValueError(f"unknown TFLite backend {backend!r}; choose 'auto' or one of {list(BACKENDS)}")


def _resolve_backend(backend: str) -> tuple[str, type]:
    if backend != "auto":
        try:
            return backend, _interpreter_class(backend)
        except ImportError as exc:
            raise BackendUnavailableError(f"TFLite backend {backend!r} is not installed: {exc}") from exc
    failures = []
    for name in BACKENDS:
        try:
            return name, _interpreter_class(name)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    raise BackendUnavailableError("no TFLite interpreter is installed (" + "; ".join(failures) + ")")


def read_model(model: str | Path | bytes) -> tuple[str, bytes]:
    """(Description for error messages, the model bytes); refuses what is obviously not a TFLite model."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        where, data = f"<{len(model)} bytes of model content>", bytes(model)
    else:
        path = Path(model)
        where = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot read model file {where}: {exc.strerror or exc}") from exc
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        raise ModelLoadError(f"{where} is not a TFLite model ({len(data)} bytes, no 'TFL3' identifier)")
    return where, data


def _probe_in_child(where: str, data: bytes) -> None:
    """Open the model with tflite_runtime in a child process, which may crash instead of us."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE], input=data, capture_output=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelLoadError(f"could not check {where} in a child process: {exc}") from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        cause = detail[-1] if result.returncode > 0 and detail else f"interpreter crashed (exit {result.returncode})"
        raise ModelLoadError(f"{where} is corrupt or unsupported: {cause}")


def load_interpreter(model: str | Path | bytes, backend: str = "auto", num_threads: int = 1) -> Any:
    """An interpreter for ``model`` (a path or the flatbuffer bytes) with tensors allocated.

    ``backend`` is one of :data:`BACKENDS` or "auto" (the first that imports, in
    that order). Raises :class:`ModelLoadError` for a missing, unreadable,
    corrupt or unsupported model (e.g. one that needs Flex ops) and
    :class:`BackendUnavailableError` when the interpreter is not installed.
    """
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    where, data = read_model(model)
    name, interpreter_class = _resolve_backend(backend)
    if name == "tflite_runtime":
        _probe_in_child(where, data)
    try:
        if name == "ai_edge_litert" and not isinstance(model, (bytes, bytearray, memoryview)):
            interpreter = interpreter_class(model_path=str(model), num_threads=num_threads)  # memory-mapped
        else:
            interpreter = interpreter_class(model_content=data, num_threads=num_threads)
        interpreter.allocate_tensors()
    except Exception as exc:  # the backends raise ValueError, RuntimeError or UnicodeDecodeError
        raise ModelLoadError(f"cannot load {where} with {name}: {type(exc).__name__}: {exc}") from exc
    return interpreter


def interpreter_backend(interpreter: Any) -> str:
    """Which of :data:`BACKENDS` created ``interpreter`` (e.g. to log what a device actually runs)."""
    module = type(interpreter).__module__ + "."
    for name, prefix in _BACKEND_MODULES.items():
        if module.startswith(prefix):
            return name
    raise ValueError(f"{type(interpreter).__qualname__} from {module[:-1]} is not a known TFLite interpreter")
