"""Annealing of the outer (meta) step size ε_t.

Reptile anneals ε linearly to zero so that late, noisy single-task updates
stop moving θ; TinyMetaFed uses a cosine schedule. Pure functions of the
absolute round number, so a resumed run continues the same schedule.
"""

from __future__ import annotations

import math
from typing import Literal

Anneal = Literal["constant", "linear", "cosine"]


def annealed_step_size(server_round: int, total_rounds: int, start: float, end: float, kind: Anneal) -> float:
    """ε at ``server_round`` (1-based) of ``total_rounds``."""
    if total_rounds < 1:
        raise ValueError("total_rounds must be >= 1")
    progress = min(max((server_round - 1) / total_rounds, 0.0), 1.0)
    if kind == "constant":
        return start
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "cosine":
        return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown annealing schedule {kind!r}; use constant, linear or cosine")
