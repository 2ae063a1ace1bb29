"""The model compiler: a .tflite becomes dependency-free C99 that matches TFLite Micro bit for bit.

Why: an interpreter's arena, op resolver and node structs cost RAM and
flash a 256 KB microcontroller would rather give to the model. Compiling
ahead of time fixes every pointer, constant and kernel at export:

    graph = read_graph(data)        # edge.compiler.graph: the flatbuffer, no TensorFlow
    steps = lower(graph)            # edge.compiler.lowering: one C call per op, TFLM's constants
    plan = plan_memory(graph, steps)  # edge.compiler.planner: one static arena
    emit_sources(graph, steps, plan)  # edge.compiler.emit: {prefix}.h/.c + kernels

:func:`compile_model` runs the four; :func:`export_c` writes the files.
"""

from __future__ import annotations

from edge.compiler.compile import CompiledModel, compile_model, count_macs, export_c
from edge.compiler.errors import UnsupportedModelError

__all__ = ["CompiledModel", "UnsupportedModelError", "compile_model", "count_macs", "export_c"]
