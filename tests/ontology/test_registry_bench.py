"""bench/registry.py runs end to end at a tiny scale and writes the JSON it promises (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_writes_structured_json_with_positive_measurements(tmp_path: Path) -> None:
    out = tmp_path / "registry.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "registry.py"), "--devices", "60", "--models", "12", "--samples", "3",
         "--rdflib-samples", "2", "--workdir", str(tmp_path / "stores"), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["config"]["devices"] == 60 and result["config"]["models"] == 12
    assert result["dataset"]["quads"] > 60 * 10
    assert all(result["load_s"][k] > 0 for k in ("ours", "raw_pyoxigraph", "rdflib_memory"))
    assert set(result["queries"]) == {"models-for-device", "eligible-devices"}
    for entry in result["queries"].values():
        for backend in ("ours", "raw_pyoxigraph", "rdflib_memory"):
            stats = entry[backend]
            assert stats["samples"] > 0 and stats["p50_ms"] > 0 and stats["p95_ms"] >= stats["p50_ms"]
            assert stats["mean_rows"] >= 0
        assert entry["ratio_ours_over_raw"]["p50"] > 0 and entry["ratio_ours_over_raw"]["p95"] > 0
        assert set(entry["goal_met"]) == {"p50_below_50ms", "within_1_5x_raw", "all"}
    assert isinstance(result["goal_met"], bool)
