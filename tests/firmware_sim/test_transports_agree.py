"""The same round request gives the same reply over Flower and over MQTT.

Both transports decode their messages into the round contract and call the one
device round, so a device that plays the same seed on the same samples must
answer the same: the same φ (or sparse delta), metrics, hypergradient and
bytes sent, bit for bit (one process, the same learn_one calls on the same
arrays). The one designed difference is what arrived: an MQTT device also
received the TASK JSON, which a Flower message carries in its ConfigRecord,
so its bytes received are larger by exactly that payload's length.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from edge import record_keys as keys
from edge.flower_records import to_array_record
from edge.mlp import NumpyMLP, init_mlp_weights
from edge.round_contract import RoundReply, RoundRequest, StepSizeRequest
from firmware_sim.client_app import sine_round
from firmware_sim.fleet import local_init, sine_device
from firmware_sim.mqtt_round import run_task
from server.transports.mqtt_rounds import to_wire

SEED, ROUND, LAYERS = 5, 7, (1, 40, 40, 1)
PRIVATE = ("w2", "b2")

REQUESTS = {
    "fedavg-1-epoch": RoundRequest(round_id=ROUND, shots=10, epochs=1, probe=5, learning_rate=0.02),
    "fedavg-5-epochs": RoundRequest(round_id=ROUND, shots=10, epochs=5, probe=5, learning_rate=0.02),
    "reptile-step-sizes": RoundRequest(round_id=ROUND, shots=8, probe=3, learning_rate=0.05,
                                       step_sizes=StepSizeRequest(base_rate=0.05, shots=4, query=6)),
    "metafed-sparse": RoundRequest(round_id=ROUND, shots=6, probe=4, private_names=PRIVATE, reconstruction_samples=5,
                                   top_p=0.25),
    "metafed-dense": RoundRequest(round_id=ROUND, shots=6, private_names=PRIVATE, reconstruction_samples=5),
    "evaluate": RoundRequest(round_id=ROUND, evaluate=True, shots=10, probe=5),
}  # fmt: skip


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower messages need a process-wide task identity; set one for this test only."""
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def message_for(request: RoundRequest) -> Message:
    theta = {k: v for k, v in init_mlp_weights(LAYERS, seed=0).items() if k not in request.private_names}
    config = ConfigRecord({**request.to_hyperparameters(), keys.LAYER_SIZES: ",".join(map(str, LAYERS))})
    content = RecordDict({keys.ARRAYS: to_array_record(theta), keys.CONFIG: config})
    if request.step_sizes is not None:
        rng = np.random.default_rng(1)
        content[keys.STEP_SIZES] = to_array_record({k: np.exp(rng.normal(0, 0.3, v.shape)).astype(np.float32) for k, v in theta.items()})
    kind = MessageType.EVALUATE if request.evaluate else MessageType.TRAIN
    return Message(content=content, dst_node_id=9, message_type=kind)


def flower_reply(message: Message) -> RoundReply:
    context = Context(run_id=1, node_id=9, node_config={"partition-id": SEED}, state=RecordDict(), run_config={})
    reply, seed = sine_round(message, context)
    assert seed == SEED
    return reply


def mqtt_reply(message: Message) -> tuple[RoundReply, int, int]:
    wire = to_wire(message, f"sine-{SEED}", round_id=11, deadline_s=10.0)
    device = sine_device(SEED, stream_key=ROUND)
    device.deploy(NumpyMLP(LAYERS))
    result = run_task(device, local_init(SEED, LAYERS), wire.task, wire.model, wire.step_sizes)
    assert result.reply is not None
    published = len(result.update) + len(result.hypergradient or b"")
    return result.reply, len(wire.task), published


def assert_same_arrays(a: dict | None, b: dict | None) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        assert set(a) == set(b)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_same_request_gives_the_same_reply_on_both_transports(name):
    request = REQUESTS[name]
    flower = flower_reply(message_for(request))
    mqtt, task_bytes, published = mqtt_reply(message_for(request))

    assert_same_arrays(flower.weights, mqtt.weights)
    assert (flower.sparse_delta is None) == (mqtt.sparse_delta is None)
    for tensor_name, sparse in (flower.sparse_delta or {}).items():
        np.testing.assert_array_equal(sparse.indices, mqtt.sparse_delta[tensor_name].indices)
        np.testing.assert_array_equal(sparse.values, mqtt.sparse_delta[tensor_name].values)
    assert_same_arrays(flower.hypergradient, mqtt.hypergradient)
    assert flower.metrics == mqtt.metrics and flower.num_examples == mqtt.num_examples
    assert flower.step_size_query_loss == mqtt.step_size_query_loss
    # bytes are booked from the wire payloads on both: sent is what the MQTT device really published
    assert flower.bytes_sent == mqtt.bytes_sent == published
    assert mqtt.bytes_received - flower.bytes_received == task_bytes


def test_what_each_request_asks_for_is_what_the_reply_holds():
    replies = {name: flower_reply(message_for(request)) for name, request in REQUESTS.items()}
    assert replies["evaluate"].weights is None and replies["evaluate"].sparse_delta is None
    assert replies["metafed-sparse"].sparse_delta is not None and replies["metafed-sparse"].weights is None
    assert set(replies["metafed-dense"].weights) == {"w0", "b0", "w1", "b1"}  # the private head never leaves
    assert replies["reptile-step-sizes"].hypergradient is not None
    assert keys.RECONSTRUCTION_LOSS in replies["metafed-dense"].metrics
    one, five = replies["fedavg-1-epoch"].weights, replies["fedavg-5-epochs"].weights
    assert any(not np.array_equal(one[k], five[k]) for k in one)
