"""bench/fleet.py runs end to end at a tiny scale and writes the JSON it promises (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_writes_structured_json_with_both_variants_and_ratios(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fleet.py"), "--devices", "12", "--sample", "6", "--rounds", "2",
         "--eval-devices", "3", "--workdir", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["config"]["devices"] == 12 and result["config"]["sample"] == 6 and result["config"]["rounds"] == 2
    assert result["config"]["client_loop"] == "selector"
    for variant, top_p in (("full", 1.0), ("top_p", 0.1)):
        entry = result[variant]
        assert entry["top_p"] == top_p and entry["replies_per_round"] == [6, 6]
        assert len(entry["round_wall_s"]["all"]) == 2 and entry["round_wall_s"]["p50"] > 0
        assert entry["up_bytes_per_round"] > 0 and entry["down_bytes_per_round"] > 0
        assert entry["client_threads"] >= 1 and entry["unseen_mse"] > 0  # one epoll thread serves all 12
    ratios = result["ratios"]
    assert set(ratios) == {"uplink_full_over_top_p", "downlink_full_over_top_p", "mse_top_p_over_full",
                           "round_wall_p50_top_p_over_full"}  # fmt: skip
    assert ratios["uplink_full_over_top_p"] > 1  # counted from the payloads: sparse is smaller
    assert set(result["goal_met"]) == {"uplink_cut_at_least_5x", "mse_within_5_percent"}
    assert result["unseen_mse_at_init"] > 0
