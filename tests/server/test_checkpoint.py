import numpy as np

from server.core.checkpoint import Checkpointer


def test_latest_checkpoint_round_trips_and_old_ones_are_pruned(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2)
    for r in range(1, 5):
        checkpointer.save(r, {"w": np.full(2, r, np.float32)}, {"strategy": "tinyreptile"})
    latest = Checkpointer(tmp_path).load_latest()
    assert latest.server_round == 4
    np.testing.assert_array_equal(latest.weights["w"], [4, 4])
    assert latest.meta["strategy"] == "tinyreptile"
    assert sorted(p.name for p in tmp_path.glob("round-*.npz")) == ["round-000003.npz", "round-000004.npz"]


def test_empty_directory_has_no_checkpoint(tmp_path):
    assert Checkpointer(tmp_path).load_latest() is None


def test_strategy_state_is_saved_beside_theta(tmp_path):
    Checkpointer(tmp_path).save(1, {"w": np.ones(2, np.float32)}, strategy_state={"momentum/w": np.full(2, 0.5, np.float32)})
    latest = Checkpointer(tmp_path).load_latest()
    assert set(latest.weights) == {"w"}
    np.testing.assert_array_equal(latest.strategy_state["momentum/w"], [0.5, 0.5])
