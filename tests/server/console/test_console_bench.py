"""bench/console.py at its smallest (8 devices, 2 phases of 3 rounds, the Python SSE client): the JSON it promises,
every figure present and drawn from the run (no timing assertions: speed lives in the benchmark)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow  # a broker, a registry, a fleet process and the console twice: ~20 s
def test_the_smallest_bench_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "console.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "console.py"), "--devices", "8", "--sample", "4",
                           "--phases", "2", "--rounds", "3", "--client", "sse", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "phase-paired median" in done.stdout
    result = json.loads(out.read_text())
    assert result["config"]["fleet"] == "process" and result["config"]["client"] == "sse"
    rounds = result["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, 7))
    assert [r["console"] for r in rounds] == [False] * 3 + [True] * 3
    assert all(r["participants"] == 4 and r["wall_s"] > 0 for r in rounds)
    walls = result["round_wall_s"]
    assert walls["off"]["n"] == walls["on"]["n"] == 2  # each phase's first round is left out
    ratios = result["ratio_on_over_off"]
    assert len(ratios["paired_by_phase"]) == 1 and math.isclose(ratios["paired_median"], ratios["paired_by_phase"][0])
    assert math.isclose(ratios["of_medians"], walls["on"]["median"] / walls["off"]["median"])
    assert result["goal_met"]["paired_ratio_at_most_1_05"] == (ratios["paired_median"] <= 1.05)
    assert result["console_threads_cpu_s_per_round_on"] > 0  # the console's threads did work while it was on
