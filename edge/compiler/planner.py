"""Static memory plan: where every non-constant tensor lives, in one arena, for the whole inference.

Why static: the generated code has no allocator; every pointer is
``arena + offset`` fixed at compile time. The graph's input and output live
in the caller's buffers (``model_invoke(input, output)``), so the arena holds
intermediates and scratch only. Legal sharing, decided op by op in order:

* alias ops (RESHAPE and friends) reuse their input's bytes, unless that
  would make one buffer both the caller's input and its output (then a copy);
* in-place ops (elementwise activations, softmax, requantize, ADD, and
  depthwise convolution with multiplier 1 through a one-channel scratch
  plane) write over input 0 when that storage is writable (not the caller's
  const input), is not read after this op, and has the same size (or, for
  the depthwise kernel, at least the output's);
* the rest: tensors whose lifetimes (producer to last consumer) overlap get
  disjoint offsets, placed greedily, largest first, at the lowest gap, the
  way TFLM's GreedyMemoryPlanner does; per-op scratch lives for its op only;
* the caller's output buffer is free memory until the output is first
  written, so buffers that die before then may live there (TFLM, whose
  output lives in its arena, reuses the same bytes the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.compiler.graph import Graph
from edge.compiler.step import Step

ALIGN = 4  # int32 and float32 arena tensors need 4-byte alignment; int8 needs none


def _c_comment_safe(text: str) -> str:
    """Tensor names go into the plan, which the emitter prints inside a C comment."""
    return "".join(c if c.isprintable() else "?" for c in text).replace("*/", "*_/").replace("/*", "/_*")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class Buffer:
    """One arena region: the tensors sharing it (or a step's scratch), its lifetime in steps, and its offset."""

    label: str
    tensors: tuple[int, ...]
    size: int
    first: int
    last: int
    offset: int
    region: str = "arena"  # or "output": the caller's output buffer, before the output is written


@dataclass(frozen=True)
class MemoryPlan:
    """Where each tensor lives: ``("arena", offset)``, ``("input", 0)`` or ``("output", offset)``."""

    arena_bytes: int
    buffers: tuple[Buffer, ...]
    placement: dict[int, tuple[str, int]]
    scratch: dict[int, tuple[str, int]]  # step index -> (region, offset) of its scratch
    copies: frozenset[int]  # alias steps that must copy instead
    inplace_steps: frozenset[int] = frozenset()  # steps whose output overwrites input 0

    def render(self, graph: Graph, width: int = 64) -> str:
        """ASCII layout, one row per step: a letter per live buffer across the arena, as TFLM documents its plan."""
        n_steps = len(graph.operators)  # one step per operator left after edge.compiler.fuse
        size = max(self.arena_bytes, 1)
        per_col = max((size + width - 1) // width, 1)
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        lines = [f"arena {self.arena_bytes} bytes, one column = {per_col} bytes"]
        for s in range(n_steps):
            row = ["."] * width
            for i, b in enumerate(self.buffers):
                if b.region == "arena" and b.first <= s <= b.last and b.size:
                    for c in range(b.offset // per_col, min((b.offset + b.size - 1) // per_col + 1, width)):
                        row[c] = letters[i % len(letters)]
            lines.append(f"{s:4d} {_c_comment_safe(graph.operators[s].name[:22]):<22} |{''.join(row)}|")
        for i, b in enumerate(self.buffers):
            where = "" if b.region == "arena" else "  (in the caller's output buffer, before the output is written)"
            lines.append(f"  {letters[i % len(letters)]}  {b.label:<32} offset {b.offset:6d}  {b.size:6d} B  steps {b.first}-{b.last}{where}")
        in_buffers = {m for b in self.buffers for m in b.tensors}
        for t, (where, _) in sorted(self.placement.items()):
            if where != "arena" and t not in in_buffers:
                lines.append(f"  tensor {t} ({_c_comment_safe(graph.tensors[t].name)}) is the caller's {where} buffer")
        return "\n".join(lines)


class _Groups:
    """Union-find over tensors that share one storage."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, t: int) -> int:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(b)] = self.find(a)

    def members(self, t: int) -> list[int]:
        root = self.find(t)
        return [x for x in list(self.parent) if self.find(x) == root]


def _lowest_gap(placed: list[tuple[int, int, int, int]], size: int, first: int, last: int, align: int) -> int:
    """Lowest offset (a multiple of ``align``) where ``size`` bytes are free during steps first..last."""
    busy = sorted((o, o + s) for o, s, f, l in placed if not (l < first or f > last))
    offset = 0
    for lo, hi in busy:
        if offset + size <= lo:
            break
        offset = max(offset, (hi + align - 1) // align * align)
    return offset


def _place(items: list[tuple[int, int, int, int]], out_capacity: int, out_free_until: int, out_align: int) -> list[tuple[str, int]]:
    """(region, offset) for (size, first, last, element size) items, biggest first.

    The caller's output buffer is memory the model may use before it writes
    its output: a buffer dead before step ``out_free_until`` whose elements
    are no more aligned than the output's goes there if it fits; the rest
    go in the arena at the lowest gap clear of buffers alive at the same time
    (TFLM's greedy planner's rule).
    """
    order = sorted(range(len(items)), key=lambda i: (-items[i][0], items[i][1], i))
    placed: dict[str, list[tuple[int, int, int, int]]] = {"output": [], "arena": []}
    where: list[tuple[str, int]] = [("arena", 0)] * len(items)
    for i in order:
        size, first, last, elem = items[i]
        if out_capacity and last < out_free_until and elem <= out_align:
            offset = _lowest_gap(placed["output"], size, first, last, max(elem, 1))
            if offset + size <= out_capacity:
                where[i] = ("output", offset)
                placed["output"].append((offset, size, first, last))
                continue
        offset = _lowest_gap(placed["arena"], _align(size), first, last, ALIGN)
        where[i] = ("arena", offset)
        placed["arena"].append((offset, _align(size), first, last))
    return where


def plan_memory(graph: Graph, steps: list[Step]) -> MemoryPlan:
    """Lifetimes, sharing and offsets for ``steps`` (one per operator, in order)."""
    end = len(steps)
    last_use: dict[int, int] = {}
    producer: dict[int, int] = {}
    for s, step in enumerate(steps):
        for t in step.op.inputs:
            if t >= 0 and not graph.tensors[t].is_constant:
                last_use[t] = s
        for t in step.op.outputs:
            producer[t] = s
            last_use.setdefault(t, s)
    last_use[graph.output] = end
    groups = _Groups()
    for t in list(producer) + [graph.input]:
        groups.find(t)

    def kinds(t: int) -> set[str]:
        ms = groups.members(t)
        return {k for k, x in (("input", graph.input), ("output", graph.output)) if x in ms}

    def group_last(t: int) -> int:
        return max(last_use.get(m, producer.get(m, 0)) for m in groups.members(t))

    copies: set[int] = set()
    inplace_steps: set[int] = set()
    out_bytes = graph.tensors[graph.output].nbytes
    for s, step in enumerate(steps):
        if not step.op.inputs or not step.op.outputs:
            continue
        src, dst = step.op.inputs[0], step.op.outputs[0]
        if src < 0 or graph.tensors[src].is_constant:
            continue
        if step.alias:
            if kinds(src) | kinds(dst) >= {"input", "output"}:
                copies.add(s)
            else:
                groups.union(src, dst)
        elif step.inplace:
            n_src, n_dst = graph.tensors[src].nbytes, graph.tensors[dst].nbytes
            size_ok = n_src == n_dst or (step.inplace_shrinks and n_dst <= n_src)
            into_output = "output" in kinds(src) | kinds(dst)
            fits = not into_output or max(graph.tensors[m].nbytes for m in groups.members(src) + groups.members(dst)) <= out_bytes
            writable = "input" not in kinds(src)
            if size_ok and fits and writable and group_last(src) == s and not ("output" in kinds(src) and "output" in kinds(dst)):
                groups.union(src, dst)
                inplace_steps.add(s)

    roots: dict[int, list[int]] = {}
    for t in list(groups.parent):
        roots.setdefault(groups.find(t), []).append(t)
    placement: dict[int, tuple[str, int]] = {}
    items: list[tuple[int, int, int, int]] = []
    labels: list[tuple[str, tuple[int, ...]]] = []
    out_free_until = end
    for members in roots.values():
        ks = kinds(members[0])
        if ks:
            for m in members:
                placement[m] = (next(iter(ks)), 0)
            if "output" in ks:
                out_free_until = min(producer.get(m, end) for m in members)
            continue
        size = max(graph.tensors[m].nbytes for m in members)
        first = min(producer.get(m, 0) for m in members)
        last = max(last_use.get(m, first) for m in members)
        items.append((size, first, last, max(graph.tensors[m].dtype.itemsize for m in members)))
        name = _c_comment_safe(graph.tensors[min(members)].name[:18])
        labels.append((" = ".join(f"t{m}" for m in sorted(members)) + f" {name}", tuple(sorted(members))))
    def scratch_of(s: int) -> int:
        step = steps[s]
        return step.inplace_scratch if s in inplace_steps and step.inplace_code else step.scratch_bytes

    scratch_steps = [s for s in range(len(steps)) if scratch_of(s) > 0]
    for s in scratch_steps:
        items.append((scratch_of(s), s, s, steps[s].scratch_align))
        labels.append((f"scratch of step {s}", ()))
    out = graph.tensors[graph.output]
    where = _place(items, out.nbytes if graph.output != graph.input else 0, out_free_until, out.dtype.itemsize)
    buffers = []
    for (size, first, last, _), (region, offset), (label, members) in zip(items, where, labels):
        buffers.append(Buffer(label, members, size if region == "output" else _align(size), first, last, offset, region))
        for m in members:
            placement[m] = (region, offset)
    scratch = {s: where[len(items) - len(scratch_steps) + i] for i, s in enumerate(scratch_steps)}
    arena = max((b.offset + b.size for b in buffers if b.region == "arena"), default=0)
    buffers.sort(key=lambda b: (b.region != "arena", b.first, b.offset))
    return MemoryPlan(arena, tuple(buffers), placement, scratch, frozenset(copies), frozenset(inplace_steps))
