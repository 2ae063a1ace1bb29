"""The Reptile server update and reply screening, without a running federation."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from server.strategies.schedules import annealed_step_size
from tests.server.strategy_harness import FixedGrid, configured, flower_task_identity  # noqa: F401 (fixture)
from server.strategies.tiny_reptile import TinyReptile, TinyReptileConfig


pytestmark = pytest.mark.usefixtures("flower_task_identity")


def reply_to(message: Message, weights: dict, n: int = 10) -> Message:
    content = RecordDict({keys.ARRAYS: to_array_record(weights), keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: n, keys.LOSS_AFTER: 1.0})})
    return Message(content=content, reply_to=message)


def test_server_update_moves_theta_towards_mean_phi_by_epsilon():
    theta = {"w": np.zeros(3, np.float32)}
    strategy = TinyReptile(TinyReptileConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant"))
    sent = configured(strategy, theta)
    replies = [reply_to(sent[0], {"w": np.array([1, 2, 3], np.float32)}), reply_to(sent[1], {"w": np.array([3, 2, 1], np.float32)})]
    arrays, metrics = strategy.aggregate_train(1, replies)
    np.testing.assert_allclose(from_array_record(arrays)["w"], [1.0, 1.0, 1.0])  # 0 + 0.5 * (2 - 0)
    assert metrics["meta-step-size"] == 0.5 and metrics["clients"] == 2


def test_configure_train_sends_theta_and_a_copy_of_the_config():
    config = ConfigRecord({"inner-learning-rate": 0.1})
    strategy = TinyReptile(TinyReptileConfig(clients_per_round=1), round_offset=7)
    messages = list(strategy.configure_train(3, to_array_record({"w": np.ones(2, np.float32)}), config, FixedGrid([5, 6])))
    assert len(messages) == 1 and messages[0].metadata.message_type == MessageType.TRAIN
    assert messages[0].content[keys.CONFIG][keys.SERVER_ROUND] == 10  # absolute round after resume
    assert keys.SERVER_ROUND not in config  # caller's config untouched


@pytest.mark.parametrize(
    "bad",
    [
        {"w": np.array([np.nan, 0, 0], np.float32)},
        {"w": np.zeros(4, np.float32)},
        {"w": np.zeros(3, np.float64)},
        {"v": np.zeros(3, np.float32)},
    ],
)
def test_bad_replies_are_dropped_and_the_round_goes_on(bad):
    theta = {"w": np.zeros(3, np.float32)}
    strategy = TinyReptile(TinyReptileConfig(clients_per_round=2, meta_step_size=1.0, anneal="constant"))
    sent = configured(strategy, theta)
    good = {"w": np.array([2, 2, 2], np.float32)}
    arrays, metrics = strategy.aggregate_train(1, [reply_to(sent[0], good), reply_to(sent[1], bad)])
    np.testing.assert_allclose(from_array_record(arrays)["w"], [2, 2, 2])
    assert metrics["clients"] == 1


def test_no_usable_reply_keeps_theta():
    strategy = TinyReptile(TinyReptileConfig(clients_per_round=1))
    sent = configured(strategy, {"w": np.zeros(3, np.float32)}, nodes=(1,))
    assert strategy.aggregate_train(1, [reply_to(sent[0], {"w": np.full(3, np.inf, np.float32)})]) == (None, None)


def test_schedules_anneal_and_continue_across_resume():
    assert annealed_step_size(1, 100, 1.0, 0.0, "linear") == 1.0
    assert annealed_step_size(51, 100, 1.0, 0.0, "linear") == pytest.approx(0.5)
    assert annealed_step_size(51, 100, 1.0, 0.0, "cosine") == pytest.approx(0.5)
    assert annealed_step_size(26, 100, 1.0, 0.0, "cosine") == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))
    fresh = TinyReptile(TinyReptileConfig(total_rounds=100))
    resumed = TinyReptile(TinyReptileConfig(total_rounds=100), round_offset=40)
    assert resumed.epsilon(10) == fresh.epsilon(50)
    with pytest.raises(ValueError, match="unknown"):
        annealed_step_size(1, 10, 1.0, 0.0, "exponential")


def test_outer_momentum_accumulates_the_reptile_direction():
    theta = {"w": np.zeros(2, np.float32)}
    strategy = TinyReptile(TinyReptileConfig(meta_step_size=0.5, anneal="constant", outer_momentum=0.9))
    sent = configured(strategy, theta, nodes=(1,))
    arrays, _ = strategy.aggregate_train(1, [reply_to(sent[0], {"w": np.array([1.0, 1.0], np.float32)})])
    first = from_array_record(arrays)
    np.testing.assert_allclose(first["w"], [0.5, 0.5])  # m = Δ = 1; θ = 0 + 0.5·1
    sent = configured(strategy, first, nodes=(1,))
    arrays, _ = strategy.aggregate_train(2, [reply_to(sent[0], {"w": np.array([1.5, 1.5], np.float32)})])
    np.testing.assert_allclose(from_array_record(arrays)["w"], [0.5 + 0.5 * (0.9 * 1.0 + 1.0)] * 2)  # m = 0.9·1 + 1
    state = strategy.strategy_state()
    np.testing.assert_allclose(state["momentum/w"], [1.9, 1.9])
    resumed = TinyReptile(TinyReptileConfig(outer_momentum=0.9))
    resumed.restore_strategy_state(state)
    assert resumed.strategy_state().keys() == state.keys()


def test_nesterov_steps_along_direction_plus_scaled_momentum():
    strategy = TinyReptile(TinyReptileConfig(meta_step_size=0.5, anneal="constant", outer_momentum=0.9, nesterov=True))
    sent = configured(strategy, {"w": np.zeros(1, np.float32)}, nodes=(1,))
    arrays, _ = strategy.aggregate_train(1, [reply_to(sent[0], {"w": np.array([1.0], np.float32)})])
    # d = 1, m = 1, step = d + 0.9·m = 1.9, θ = 0 + 0.5·1.9
    np.testing.assert_allclose(from_array_record(arrays)["w"], [0.95], rtol=1e-6)
