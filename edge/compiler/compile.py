"""Reader -> lowering -> planner -> emitter, as one call, and the files on disk.

Why a result object: the CLI writes the files, the benchmark wants the arena
figure, op census and MACs, and tests want the ASCII plan, from one compile.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge.compiler.emit import CSources, emit_sources
from edge.compiler.fuse import fuse_pads
from edge.compiler.graph import Graph, read_graph
from edge.compiler.lowering import lower
from edge.compiler.planner import MemoryPlan, plan_memory
from edge.compiler.step import Step


@dataclass(frozen=True)
class CompiledModel:
    """One compiled model: its graph, lowered steps, memory plan and C sources."""

    graph: Graph
    steps: list[Step]
    plan: MemoryPlan
    sources: CSources
    prefix: str

    @property
    def arena_bytes(self) -> int:
        return self.plan.arena_bytes

    @property
    def input_bytes(self) -> int:
        return self.graph.tensors[self.graph.input].nbytes

    @property
    def output_bytes(self) -> int:
        return self.graph.tensors[self.graph.output].nbytes

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(Counter(s.op.name for s in self.steps))

    def plan_text(self) -> str:
        return self.plan.render(self.graph)


def compile_model(data: bytes, prefix: str = "model") -> CompiledModel:
    """Compile a .tflite's bytes; raises UnsupportedModelError for ops/dtypes outside the supported set."""
    graph = fuse_pads(read_graph(data))
    steps = lower(graph)
    plan = plan_memory(graph, steps)
    return CompiledModel(graph, steps, plan, emit_sources(graph, steps, plan, prefix), prefix)


def count_macs(data: bytes) -> int:
    """Multiply-accumulates per inference of every op the compiler lowers (conv, depthwise, dense, ...), without
    planning memory or writing C: what a device's time model charges for running the model."""
    return sum(step.macs for step in lower(fuse_pads(read_graph(data))))


def export_c(model_path: Path | str, out_dir: Path | str, prefix: str = "model") -> CompiledModel:
    """Compile the file at ``model_path`` and write ``{prefix}.h``, ``{prefix}.c`` and kernels to ``out_dir``."""
    compiled = compile_model(Path(model_path).read_bytes(), prefix)
    compiled.sources.write(out_dir)
    return compiled
