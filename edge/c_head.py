"""The TinyOL head step as the firmware's C code (``edge/c/tinyol_head.c``), called through ctypes.

A board runs the head update as compiled C next to TFLite Micro, so this is
what "the head's update costs at most 15 % on top of inference" has to be
measured with on a development machine: the C step against the interpreter's
invoke. The C code also imprints (``tinyol_imprint_one``, as
:meth:`OnlineHead.imprint_one`). The Python :class:`~edge.online_head.OnlineHead` is the reference
(tests hold the two equal); this module only builds and drives the C code.

The C file is compiled on first use (``cc -O2 -shared -fPIC``) into a cache
directory keyed by the source's hash, never at import: ``edge`` must import on
a device with neither TensorFlow nor a C compiler. Without a compiler,
:func:`load_library` raises :class:`CCompilerNotFoundError` saying so.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge.online_head import OnlineHead, Task, grown_by_one_class
from edge.step_sizes import check_scales
from edge.validation import InvalidInputError, as_float_array

SOURCE_DIR = Path(__file__).resolve().parent / "c"
SOURCE = SOURCE_DIR / "tinyol_head.c"
HEADER = SOURCE_DIR / "tinyol_head.h"
CFLAGS = ("-std=c99", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra")

# tinyol_status_t
OK, BAD_ARGUMENT, NONFINITE_SAMPLE, NONFINITE_LABEL, DIVERGED = range(5)
_TASK_CODES = {"classification": 0, "regression": 1}
_F32 = np.dtype(np.float32)


class CCompilerNotFoundError(RuntimeError):
    """No C compiler on PATH (``$CC``, ``cc``, ``gcc`` or ``clang``): the C head cannot be built here."""


class CHeadError(InvalidInputError):
    """A step the C code refused; ``status`` is its ``tinyol_status_t``. The weights are unchanged."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def find_c_compiler() -> str | None:
    """``$CC`` if it names a program on PATH, else the first of cc, gcc, clang (as tests/edge/test_wire_c.py)."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _cache_dir() -> Path:
    base = os.environ.get("TINYFLEET_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinyfleet" / "c"


def build_library(cache_dir: Path | None = None) -> Path:
    """Compile the C head into a shared library (once per source version and compiler); return its path.

    The file name carries a hash of the source, header, compiler and flags, so an edited source is rebuilt
    and concurrent builds (several engineers, several test workers) never load a half-written file: each
    compiles to a private temporary name and renames it into place.
    """
    if not (SOURCE.is_file() and HEADER.is_file()):
        raise FileNotFoundError(
            f"the C head's source is not installed next to {__file__} (expected {SOURCE} and {HEADER}); "
            "install from a checkout, or ship edge/c/*.c and *.h as package data"
        )
    cc = find_c_compiler()
    if cc is None:
        raise CCompilerNotFoundError(
            "no C compiler found ($CC, cc, gcc or clang on PATH); install one (Debian: apt-get install gcc) "
            "to build the TinyOL head's C step"
        )
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), HEADER.read_bytes(), cc.encode(), " ".join(CFLAGS).encode()):
        digest.update(part)
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"tinyol_head-{digest.hexdigest()[:16]}.so"
    if library.exists():
        return library
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".so.tmp")
    os.close(handle)
    try:
        result = subprocess.run([cc, *CFLAGS, str(SOURCE), "-o", temporary, "-lm"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE} with {cc} failed:\n{result.stderr}")
        os.replace(temporary, library)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return library


class _Head(ctypes.Structure):
    """Mirror of ``tinyol_head_t``."""

    _fields_ = [
        ("n_features", ctypes.c_uint32),
        ("n_outputs", ctypes.c_uint32),
        ("task", ctypes.c_int32),
        ("params", ctypes.POINTER(ctypes.c_float)),
        ("spare", ctypes.POINTER(ctypes.c_float)),
        ("scratch", ctypes.POINTER(ctypes.c_float)),
        ("step_sizes", ctypes.POINTER(ctypes.c_float)),  # NULL: the shared rate
    ]


@functools.lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """Build (if needed) and load the C head, with its functions' signatures declared."""
    lib = ctypes.CDLL(str(build_library()))
    float_p = ctypes.POINTER(ctypes.c_float)
    lib.tinyol_learn_one.argtypes = [ctypes.POINTER(_Head), float_p, ctypes.c_int32, float_p, ctypes.c_float, float_p]
    lib.tinyol_learn_one.restype = ctypes.c_int
    lib.tinyol_time_steps.argtypes = [
        ctypes.POINTER(_Head), float_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_uint32, ctypes.c_uint32,
        ctypes.c_float, ctypes.POINTER(ctypes.c_uint64),
    ]  # fmt: skip
    lib.tinyol_time_steps.restype = ctypes.c_int
    uint32_p = ctypes.POINTER(ctypes.c_uint32)
    lib.tinyol_imprint_one.argtypes = [ctypes.POINTER(_Head), uint32_p, float_p, ctypes.c_int32, ctypes.c_float, float_p]
    lib.tinyol_imprint_one.restype = ctypes.c_int
    lib.tinyol_time_imprints.argtypes = [
        ctypes.POINTER(_Head), uint32_p, float_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_uint32, ctypes.c_uint32,
        ctypes.c_float, ctypes.POINTER(ctypes.c_uint64),
    ]  # fmt: skip
    lib.tinyol_time_imprints.restype = ctypes.c_int
    return lib


def _float_pointer(array: np.ndarray) -> ctypes._Pointer:
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class CHead:
    """A dense TinyOL head whose SGD step runs in the C code; same weights layout as :class:`OnlineHead`.

    It owns the buffers the firmware would hold statically: two weight blocks (active and spare), one
    ``n_outputs`` scratch row and ``n_outputs`` uint32 imprint counters. Build it from an ``OnlineHead``
    to continue from that head's weights (and imprint counts).
    """

    def __init__(self, n_features: int, n_outputs: int, task: Task = "classification",
                 weights: dict[str, np.ndarray] | None = None) -> None:  # fmt: skip
        if task not in _TASK_CODES:
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
        if n_features <= 0 or n_outputs <= 0:
            raise ValueError("n_features and n_outputs must be positive")
        self._lib = load_library()
        self.task: Task = task
        self.n_features = int(n_features)
        self._loss = ctypes.c_float()
        self._step_sizes: np.ndarray | None = None
        self._allocate(np.zeros((n_features + 1, n_outputs), _F32), np.zeros(n_outputs, np.uint32))
        if weights is not None:
            self.set_weights(weights)

    def _allocate(self, params: np.ndarray, counts: np.ndarray) -> None:
        """Take ``params`` as the active block and ``counts`` as the imprint counters; allocate the rest."""
        self.n_outputs = int(params.shape[1])
        self._blocks = (params, np.zeros_like(params))
        self._scratch = np.zeros(self.n_outputs, _F32)
        self._counts = counts
        step_sizes = ctypes.POINTER(ctypes.c_float)() if self._step_sizes is None else _float_pointer(self._step_sizes)
        self._head = _Head(self.n_features, self.n_outputs, _TASK_CODES[self.task], _float_pointer(self._blocks[0]),
                           _float_pointer(self._blocks[1]), _float_pointer(self._scratch), step_sizes)  # fmt: skip

    @classmethod
    def from_head(cls, head: OnlineHead) -> CHead:
        """A C head with ``head``'s shape, task, current weights and imprint counts."""
        c = cls(head.n_features, head.n_outputs, head.task, head.get_weights())
        c._counts[...] = head.imprint_counts
        return c

    @property
    def imprint_counts(self) -> np.ndarray:
        """Samples imprinted per class so far (a copy of the counters the C code updates)."""
        return self._counts.copy()

    def add_class(self) -> int:
        """Grow one output class as :meth:`OnlineHead.add_class` does (zero column, bias the smallest one, step
        size 1, imprint count 0); return its index. The C code has no such call: the row-major block is
        re-laid out here (a firmware would reserve its largest class count and re-stride in place)."""
        if self.task != "classification":
            raise ValueError("only a classification head can grow classes")
        grown, self._step_sizes = grown_by_one_class(self.params, self._step_sizes)
        self._allocate(grown, np.append(self._counts, np.uint32(0)))
        return self.n_outputs - 1

    @property
    def params(self) -> np.ndarray:
        """The active weight block ``[W; b]`` (the one ``params`` points at after the last swap)."""
        address = ctypes.cast(self._head.params, ctypes.c_void_p).value
        return self._blocks[0] if address == self._blocks[0].ctypes.data else self._blocks[1]

    def get_weights(self) -> dict[str, np.ndarray]:
        params = self.params
        return {"head_w": params[: self.n_features].copy(), "head_b": params[self.n_features].copy()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace the weights; refused (nothing changed) unless both tensors have the right shape and are finite."""
        w = as_float_array("head_w", weights["head_w"], (self.n_features, self.n_outputs))
        b = as_float_array("head_b", weights["head_b"], (self.n_outputs,))
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise InvalidInputError("head weights contain non-finite values; refused")
        params = self.params
        params[: self.n_features] = w
        params[self.n_features] = b
        self._counts[...] = 0  # as OnlineHead: installed weights are nobody's imprints

    def set_step_sizes(self, scales: dict[str, np.ndarray] | None) -> None:
        """Per-weight multipliers of the rate, laid out like the weights; None: the shared rate (a NULL pointer)."""
        if scales is None:
            self._step_sizes = None
            self._head.step_sizes = ctypes.POINTER(ctypes.c_float)()
            return
        checked = check_scales(scales, self.get_weights())
        self._step_sizes = np.ascontiguousarray(np.vstack([checked["head_w"], checked["head_b"][None, :]]), _F32)
        self._head.step_sizes = _float_pointer(self._step_sizes)  # the array is kept alive by self

    def learn_one(self, x: object, y: object, learning_rate: float) -> float:
        """One SGD step in C; return the loss before it. Refusals raise :class:`CHeadError`, weights unchanged."""
        sample = _vector("sample x", x, self.n_features)  # finiteness is the C code's to check (and refuse)
        if self.task == "classification":
            label, target = _class_label(y), None
        else:
            label, target = 0, _float_pointer(_vector("label y", y, self.n_outputs))
        status = self._lib.tinyol_learn_one(
            ctypes.byref(self._head), _float_pointer(sample), label, target, float(learning_rate), ctypes.byref(self._loss)
        )
        if status != OK:
            raise CHeadError(status, _refusal(status, label, self.n_outputs, learning_rate))
        return float(self._loss.value)

    def imprint_one(self, x: object, y: object, min_rate: float = 0.0) -> float:
        """One imprint in C (``tinyol_imprint_one``, the rule of :meth:`OnlineHead.imprint_one`); the loss before
        it. A regression head: ValueError; refusals raise :class:`CHeadError`, weights and counts unchanged."""
        if self.task != "classification":
            raise ValueError("imprinting writes class means into a classification head; this head is a regressor")
        sample = _vector("sample x", x, self.n_features)
        label = _class_label(y)
        status = self._lib.tinyol_imprint_one(
            ctypes.byref(self._head), self._counts.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
            _float_pointer(sample), label, float(min_rate), ctypes.byref(self._loss),
        )  # fmt: skip
        if status != OK:
            raise CHeadError(status, _imprint_refusal(status, label, self.n_outputs, min_rate))
        return float(self._loss.value)

    def time_steps(self, xs: np.ndarray, labels: np.ndarray, steps: int, learning_rate: float) -> int:
        """Nanoseconds for ``steps`` classification steps over ``xs`` (cycled), timed in C around the C loop.

        No Python, ctypes or conversion cost is inside the interval: what a firmware loop would pay.
        """
        xs, labels = self._timing_samples(xs, labels)
        elapsed = ctypes.c_uint64()
        status = self._lib.tinyol_time_steps(
            ctypes.byref(self._head), _float_pointer(xs), labels.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            len(xs), int(steps), float(learning_rate), ctypes.byref(elapsed),
        )  # fmt: skip
        if status != OK:
            raise CHeadError(status, _refusal(status, -1, self.n_outputs, learning_rate))
        return int(elapsed.value)

    def time_imprints(self, xs: np.ndarray, labels: np.ndarray, steps: int, min_rate: float = 0.0) -> int:
        """Nanoseconds for ``steps`` imprints over ``xs`` (cycled), timed in C as :meth:`time_steps`.
        They update this head's weights and counts."""
        xs, labels = self._timing_samples(xs, labels)
        elapsed = ctypes.c_uint64()
        status = self._lib.tinyol_time_imprints(
            ctypes.byref(self._head), self._counts.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), _float_pointer(xs),
            labels.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), len(xs), int(steps), float(min_rate),
            ctypes.byref(elapsed),
        )  # fmt: skip
        if status != OK:
            raise CHeadError(status, _imprint_refusal(status, -1, self.n_outputs, min_rate))
        return int(elapsed.value)

    def _timing_samples(self, xs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``xs`` and ``labels`` as the C timing loops read them, or a refusal (classification heads only)."""
        if self.task != "classification":
            raise ValueError("the C timing loops run classification steps")
        xs = np.ascontiguousarray(xs, _F32)
        labels = np.ascontiguousarray(labels, np.int32)
        if xs.ndim != 2 or xs.shape[1] != self.n_features or labels.shape != (len(xs),) or len(xs) == 0:
            raise InvalidInputError(f"xs must be (n, {self.n_features}) with n labels; got {xs.shape} and {labels.shape}")
        return xs, labels


def _vector(name: str, value: object, size: int) -> np.ndarray:
    """``value`` as a contiguous float32 vector of ``size`` entries, or a refusal; NaN/Inf pass through to C."""
    if type(value) is np.ndarray and value.dtype is _F32 and value.shape == (size,) and value.flags.c_contiguous:
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(f"{name} has dtype {array.dtype}; expected a real number type")
    if array.size != size or array.ndim > 1:
        raise InvalidInputError(f"{name} has shape {array.shape}; expected ({size},)")
    return np.ascontiguousarray(array.reshape(size), _F32)


def _class_label(y: object) -> int:
    """One integer class label (integer-valued floats accepted, as :class:`OnlineHead` does), within int32."""
    label = np.asarray(y)
    value = label.reshape(-1)[0] if label.size == 1 else None
    if value is None or label.dtype.kind == "b" or not (
        label.dtype.kind in "iu" or (label.dtype.kind == "f" and float(value).is_integer())
    ):
        raise InvalidInputError(f"class label must be one integer, got {y!r}")
    index = int(value)
    if not -(2**31) <= index < 2**31:
        raise InvalidInputError(f"class label {index} is out of range")
    return index


def _refusal(status: int, label: int, n_outputs: int, learning_rate: float) -> str:
    return {
        BAD_ARGUMENT: f"step refused: label {label} outside 0..{n_outputs - 1}, a non-finite learning rate "
        f"({learning_rate}) or an empty buffer",
        NONFINITE_SAMPLE: "sample x contains non-finite value(s) (NaN or Inf); step refused",
        NONFINITE_LABEL: "label y contains non-finite value(s) (NaN or Inf); step refused",
        DIVERGED: f"SGD step diverged (learning rate {learning_rate}); step refused",
    }.get(status, f"C head returned unknown status {status}")


def _imprint_refusal(status: int, label: int, n_outputs: int, min_rate: float) -> str:
    if status == BAD_ARGUMENT:
        return f"imprint refused: label {label} outside 0..{n_outputs - 1} or min_rate {min_rate} not in [0, 1]"
    if status == DIVERGED:
        return "imprinting overflowed float32 (logits or the class mean's squared norm); step refused"
    return _refusal(status, label, n_outputs, 0.0)
