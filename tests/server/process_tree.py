"""Start a command line in its own session and, however a test ends, end it and every descendant.

Flower's SuperLink and SuperNode start SuperExec and app processes in new
sessions, so killing a process group is not enough: the descendants are
collected from /proc (by parent pid) while the tree is intact, asked to stop
with SIGTERM, and SIGKILLed after a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from firmware_sim.supernode import descendant_pids


def spawn(args: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as out:
        return subprocess.Popen(list(args), env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``: the walk the server itself stops its children with."""
    return descendant_pids(pid)


def _signal(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def terminate_tree(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM the process (it stops its children itself), then SIGKILL whatever of the tree is left."""
    tree = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    _signal(tree, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal([p for p in tree if _alive(p)], signal.SIGKILL)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=timeout_s)
