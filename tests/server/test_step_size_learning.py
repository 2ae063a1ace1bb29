"""TinyReptile learning per-weight step sizes: θ untouched, step sizes learned and resumable, bad input refused."""

import logging
import tempfile
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.step_sizes import log_scale_hypergradient
from edge.mlp import regression_gradients
from firmware_sim.client_app import app as client_app
from firmware_sim.client_app import handle_round
from firmware_sim.fleet import sine_device
from server.core.checkpoint import Checkpointer
from server.core.federation import DeviceRoundConfig, FederationSettings, initial_weights, run_federation, train_config
from server.transports.inprocess_grid import InProcessGrid
from server.strategies.step_size_learning import step_sizes_from_state
from server.strategies.tiny_reptile import TinyReptile, TinyReptileConfig
from tests.server.strategy_harness import configured

LEARNING = FederationSettings(
    strategy="tinyreptile",
    num_rounds=3,
    reptile=TinyReptileConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant", outer_momentum=0.9,
                              nesterov=True, seed=3, step_size_learning_rate=0.05, step_size_shots=3,
                              step_size_query=6),
    device=DeviceRoundConfig(stream_samples=6, device_seeds=(40, 41, 42, 43, 44, 45)),
)  # fmt: skip


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def run(settings: FederationSettings, rounds_per_leg: tuple[int, ...] = (3,)) -> tuple[dict, dict | None, list[dict]]:
    """θ, learned step sizes and per-round metrics of a run, optionally stopped and resumed between legs."""
    metrics: list[dict] = []
    with tempfile.TemporaryDirectory() as directory:
        for leg, rounds in enumerate(rounds_per_leg):
            leg_settings = replace(settings, checkpoint_dir=directory, num_rounds=rounds)
            run_federation(InProcessGrid(client_app, 6, node_id_seed=leg), leg_settings, lambda _r, _w, m: metrics.append(m))
        checkpoint = Checkpointer(directory).load_latest()
        return checkpoint.weights, step_sizes_from_state(checkpoint.strategy_state), metrics


def test_step_sizes_are_learned_without_changing_theta():
    theta, steps, metrics = run(LEARNING)
    plain_theta, plain_steps, _ = run(replace(LEARNING, reptile=replace(LEARNING.reptile, step_size_learning_rate=0.0)))
    assert plain_steps is None
    for name in theta:  # the step sizes use samples after the round's own: θ's update sees the same data
        np.testing.assert_array_equal(theta[name], plain_theta[name], err_msg=name)
    assert set(steps) == set(theta)
    moved = max(float(np.abs(np.log(steps[k])).max()) for k in steps)
    assert 0.05 < moved <= 3 * 0.05 + 1e-6  # three Adam steps of 0.05 in log space
    assert all(m["step-size-clients"] == 2 for m in metrics)
    assert all(np.isfinite(m[keys.STEP_SIZE_QUERY_LOSS]) for m in metrics)


def test_a_resumed_run_learns_the_same_step_sizes():
    _, whole, _ = run(LEARNING)
    _, resumed, _ = run(LEARNING, rounds_per_leg=(2, 3))
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)


def device_reply(message: Message, hyper: dict | None) -> Message:
    weights = from_array_record(message.content.array_records[keys.ARRAYS])
    content = RecordDict({keys.ARRAYS: to_array_record(weights), keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 5})})
    if hyper is not None:
        content[keys.HYPERGRADIENT] = to_array_record(hyper)
    return Message(content=content, reply_to=message)


@pytest.mark.parametrize(
    "bad",
    [{"w": np.array([np.nan, 0.0], np.float32)}, {"w": np.zeros(3, np.float32)}, {"v": np.zeros(2, np.float32)}],
    ids=["nan", "shape", "name"],
)
def test_a_bad_hypergradient_is_dropped_and_theta_still_updates(bad, caplog):
    strategy = TinyReptile(TinyReptileConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant",
                                             step_size_learning_rate=0.1))  # fmt: skip
    sent = configured(strategy, {"w": np.zeros(2, np.float32)})
    assert all(keys.STEP_SIZES in m.content.array_records for m in sent)
    good = {"w": np.array([1.0, -1.0], np.float32)}
    with caplog.at_level(logging.WARNING):
        arrays, metrics = strategy.aggregate_train(1, [device_reply(sent[0], good), device_reply(sent[1], bad)])
    assert "step-size hypergradient refused" in caplog.text
    assert metrics["step-size-clients"] == 1 and metrics["clients"] == 2
    np.testing.assert_allclose(from_array_record(arrays)["w"], [0.0, 0.0])  # both φ equal θ here
    scales = strategy.step_sizes.scales()["w"]
    assert scales[0] < 1.0 < scales[1]  # the good hypergradient alone: Adam's first step is ±lr in log space


def request(step_sizes: dict | None) -> Message:
    settings = replace(LEARNING, device=replace(LEARNING.device, device_seeds=()),
                       reptile=replace(LEARNING.reptile, clients_per_round=1))
    theta = initial_weights(settings)
    strategy = TinyReptile(settings.reptile)
    message = configured(strategy, theta, nodes=(9,), config=train_config(settings))[0]
    if step_sizes is not None:
        message.content.array_records[keys.STEP_SIZES] = to_array_record(step_sizes)
    return message


def flower_device(message: Message) -> Message:
    context = Context(run_id=1, node_id=9, node_config={"partition-id": 3}, state=RecordDict(), run_config={})
    return handle_round(message, context)


def test_the_device_measures_the_hypergradient_on_samples_after_its_round():
    message = request(None)
    theta = from_array_record(message.content.array_records[keys.ARRAYS])
    reply = flower_device(message)
    hyper = from_array_record(reply.content.array_records[keys.HYPERGRADIENT])
    config = message.content.config_records[keys.CONFIG]
    stream = sine_device(3, stream_key=int(config[keys.SERVER_ROUND])).stream
    stream.take(int(config[keys.PROBE_SAMPLES]) + int(config[keys.STREAM_SAMPLES]))  # the round's own samples come first
    support, query = stream.take(3), stream.take(6)
    batch = (np.concatenate([x for x, _ in query]), np.concatenate([y for _, y in query]))
    expected, loss = log_scale_hypergradient(theta, {k: np.ones_like(v) for k, v in theta.items()}, 0.02, support,
                                             batch, regression_gradients((1, 40, 40, 1)))  # fmt: skip
    for name in theta:
        np.testing.assert_array_equal(hyper[name], expected[name], err_msg=name)
    metrics = reply.content.metric_records[keys.METRICS]
    assert metrics[keys.STEP_SIZE_QUERY_LOSS] == pytest.approx(loss)
    without = flower_device(request_without_step_sizes())
    # receiving the step sizes and sending the hypergradient are booked on the radio
    assert metrics[keys.BYTES_SENT] > without.content.metric_records[keys.METRICS][keys.BYTES_SENT]
    assert metrics[keys.BYTES_RECEIVED] > without.content.metric_records[keys.METRICS][keys.BYTES_RECEIVED]


def request_without_step_sizes() -> Message:
    message = request(None)
    del message.content.array_records[keys.STEP_SIZES]
    return message


def test_the_device_refuses_bad_step_sizes_with_a_clear_error():
    theta = initial_weights(LEARNING)
    bad = {k: np.ones_like(v) for k, v in theta.items()}
    bad["w1"][0, 0] = -1.0
    with pytest.raises(Exception, match="step sizes 'w1' must be finite and positive"):
        flower_device(request(bad))


def test_replies_without_hypergradients_leave_step_sizes_alone_and_say_so_once(caplog):
    strategy = TinyReptile(TinyReptileConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant",
                                             step_size_learning_rate=0.1))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        for server_round in (1, 2):
            sent = configured(strategy, {"w": np.zeros(2, np.float32)})
            _, metrics = strategy.aggregate_train(server_round, [device_reply(m, None) for m in sent])
            assert metrics["step-size-clients"] == 0
    assert caplog.text.count("no device sent a step-size hypergradient") == 1
    np.testing.assert_array_equal(strategy.step_sizes.scales()["w"], [1.0, 1.0])
