"""TFLite Micro's own arena figures for a model, measured by running TFLM (PyPI ``tflite-micro``) in a subprocess.

Why a subprocess: TFLM has no method returning the used arena, only
``print_allocations()`` to stderr, and a too-small arena can segfault the
process. The child loads the model with a generous arena, invokes once on
zeros and prints its allocation report, which is parsed here. Host-only: a
device never imports this module's dependency.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_SCRIPT = """
import sys
import numpy as np
from tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
it.invoke()
it.print_allocations()
"""


@dataclass(frozen=True)
class TflmArena:
    """TFLM's arena use: ``total`` = head (its planner's tensors) + tail (persistent: eval tensors, node structs, op data)."""

    total: int
    head: int
    tail: int


class TflmProbeError(RuntimeError):
    """TFLM could not load or run the model."""


def tflm_arena(model_path: Path | str, arena_size: int = 8 << 20, timeout: float = 60.0) -> TflmArena:
    """Used arena bytes TFLM reports for the model at ``model_path``."""
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(model_path), str(arena_size)],
                            capture_output=True, text=True, timeout=timeout)
    figures = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", result.stderr))
    if result.returncode != 0 or len(figures) != 3:
        raise TflmProbeError(f"TFLM failed on {model_path} (exit {result.returncode}): {result.stderr[-2000:]}")
    return TflmArena(int(figures["total"]), int(figures["head"]), int(figures["tail"]))


_INVOKE_SCRIPT = """
import sys
import numpy as np
from tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
inputs = np.load(sys.argv[3])
outs = []
for x in inputs:
    it.set_input(np.ascontiguousarray(x), 0)
    it.invoke()
    outs.append(np.array(it.get_output(0), copy=True))
np.save(sys.argv[4], np.stack(outs))
"""


def tflm_invoke(model_path: Path | str, inputs, work_dir: Path | str, arena_size: int = 8 << 20, timeout: float = 300.0):
    """TFLM's outputs for each sample of ``inputs`` (a numpy array), computed in a child process."""
    import numpy as np

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "tflm_in.npy", inputs)
    result = subprocess.run([sys.executable, "-c", _INVOKE_SCRIPT, str(model_path), str(arena_size), str(work / "tflm_in.npy"),
                             str(work / "tflm_out.npy")], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise TflmProbeError(f"TFLM failed on {model_path} (exit {result.returncode}): {result.stderr[-2000:]}")
    return np.load(work / "tflm_out.npy")
