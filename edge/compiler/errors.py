"""The compiler's one error type, so callers (CLI, bench) can tell "this model cannot be compiled" from bugs."""

from __future__ import annotations


class UnsupportedModelError(ValueError):
    """The model uses an op, a dtype or a layout the compiler does not implement.

    ``op_name`` and ``op_index`` name the first offending operator (as in the
    flatbuffer's operator list of subgraph 0), or are None when the problem is
    the model as a whole (several subgraphs, two inputs, ...). TFLM's own
    refusals are mirrored: legacy uint8 "hybrid" quantisation is refused too.
    """

    def __init__(self, message: str, op_name: str | None = None, op_index: int | None = None) -> None:
        where = f"op {op_index} ({op_name}): " if op_name is not None else ""
        super().__init__(where + message)
        self.op_name = op_name
        self.op_index = op_index
