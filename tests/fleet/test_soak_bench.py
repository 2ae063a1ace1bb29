"""bench/soak.py at a tiny scale: one of each fault, nothing acknowledged lost, the JSON it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from soak import Schedule, acknowledged_versions  # noqa: E402


def test_schedule_puts_every_fault_before_the_last_round() -> None:
    for rounds in (3, 4, 10, 50):
        s = Schedule.for_rounds(rounds)
        faults = [*s.churn_rounds, s.broker_restart, s.server_kill, s.registry_kill]
        assert s.churn_rounds and all(1 <= r < rounds for r in faults), (rounds, s)
    assert Schedule.for_rounds(50) == Schedule(list(range(1, 40)), 15, 25, 35)
    with pytest.raises(ValueError):
        Schedule.for_rounds(2)


def test_a_version_counts_as_acknowledged_once_its_server_recorded_the_next_round() -> None:
    lines = [{"round": r, "participants": [] if r == 3 else ["sine-1"]} for r in range(1, 6)]
    # killed after recording round 3 (no usable reply: no version by design), resumed at 4, exited 0
    assert acknowledged_versions(lines, [(0, 3), (3, None)], exited_cleanly=True) == ({0, 1, 2, 4, 5}, set())
    # killed right after recording round 2: its version may not have been written, so it is not counted
    assert acknowledged_versions(lines, [(0, 2), (2, None)], exited_cleanly=True) == ({0, 1, 4, 5}, {2})
    # still running (or killed) at the end: its last round is not acknowledged either
    assert acknowledged_versions(lines, [(0, None)], exited_cleanly=False) == ({0, 1, 2, 4}, {5})


@pytest.mark.slow  # two server starts (model export), a service kill and restart: 34 s idle, ~70 s on a loaded 2-core machine
def test_soak_survives_churn_broker_restart_server_and_registry_kills(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--devices", "20", "--rounds", "4", "--sample", "6",
         "--round-timeout", "5", "--quorum", "0.8", "--run-timeout", "240", "--workdir", str(tmp_path / "work"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["devices"] == 20 and result["rounds"] == 4
    assert result["churn_events"] == 6  # 30 % of 20, each crashed once and brought back
    assert (result["broker_restarts"], result["server_kills"], result["registry_kills"]) == (1, 1, 1)
    assert result["server_starts"] == 2 and result["registry_writes_in_flight_at_kill"] >= 1
    assert result["lost"] == 0 and result["lost_registrations"] == [] and result["lost_versions"] == []
    assert result["final_round"] == 4 and result["rounds_recorded_distinct"] == 4
    assert result["final_version_is_final_checkpoint"] and result["devices_told_finished"] == 20
    # every device registered, some of it before the kill; the killed server's last round is not counted
    assert result["registered_devices"] == 20
    assert result["acknowledged_registrations"] > result["acknowledged_registrations_before_registry_kill"] > 0
    assert 2 <= result["acknowledged_versions"] <= result["versions_stored"] <= 5
    assert len(result["server_incarnations"]) == 2
    assert result["ok"] is True and result["wall_time_s"] > 0
    kinds = [e["kind"] for e in result["events"]]
    for kind in ("devices crashed", "devices back", "broker restarted", "server killed", "server resumed",
                 "registry service killed", "registry service restarted", "server finished"):
        assert kind in kinds, kinds
