"""A classifier task through a real Flower deployment: `tinyfleet server --task presence` starts a SuperLink and
submits the run, two `tinyfleet device run --superlink` SuperNodes play presence rooms (the one ClientApp builds
the device of the task the request names), and TinyMetaFed finishes its rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flower_run import run_with_supernodes

from server.core.checkpoint import Checkpointer
from server.core.federation import initial_weights
from server.core.tasks import task_settings

pytestmark = pytest.mark.slow
ROUNDS = 2


def test_two_supernodes_federate_a_presence_task(tmp_path: Path) -> None:
    work = tmp_path / "server"
    log = run_with_supernodes(tmp_path, [
        "--task", "presence", "--workdir", str(work), "--rounds", str(ROUNDS), "--strategy", "tinymetafed",
        "--clients-per-round", "2", "--node-timeout", "60", "--run-timeout", "100",
    ], timeout_s=110)  # fmt: skip
    assert all(f"round {r}/{ROUNDS}: 2 device(s)" in log.replace("\n", " ") for r in range(1, ROUNDS + 1)), log[-3000:]
    final = Checkpointer(work / "checkpoints").load_latest()
    expected = task_settings("presence", "tinymetafed")
    assert final.server_round == ROUNDS and final.meta["settings"]["device"]["task"] == "presence"
    init = initial_weights(expected)
    assert final.weights["w0"].shape == init["w0"].shape == (expected.layer_sizes[0], expected.layer_sizes[1])
    assert any(not np.array_equal(final.weights[k], init[k]) for k in ("w0", "b0", "w1", "b1"))  # θ moved
    for head in expected.metafed.private_names:
        np.testing.assert_array_equal(final.weights[head], init[head])  # private: never sent, never changed
