"""FedAvg's local epochs reach an MQTT device as they reach a Flower SuperNode: the same request gives the same
update on both transports, and 1 and 5 epochs give different updates (over MQTT they were once ignored)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.mlp import NumpyMLP
from edge.wire import MessageKind, WireFormatError, decode_weights
from firmware_sim.client_app import handle_round
from firmware_sim.fleet import local_init
from firmware_sim.fleet import sine_device
from firmware_sim.mqtt_round import run_task
from server.core.federation import DeviceRoundConfig, FederationSettings, initial_weights, train_config
from server.transports.mqtt_rounds import to_wire

SEED, ROUND = 4, 3


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower messages need a process-wide task identity; set one for this test only."""
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def fedavg_request(epochs: int) -> Message:
    settings = FederationSettings(strategy="fedavg", device=DeviceRoundConfig(local_epochs=epochs))
    config = train_config(settings)
    config[keys.SERVER_ROUND] = ROUND
    content = RecordDict({keys.ARRAYS: to_array_record(initial_weights(settings)), keys.CONFIG: config})
    return Message(content=content, dst_node_id=9, message_type=MessageType.TRAIN)


def flower_delta(message: Message) -> dict[str, np.ndarray]:
    context = Context(run_id=1, node_id=9, node_config={"partition-id": SEED}, state=RecordDict(), run_config={})
    reply = handle_round(message, context)
    theta = from_array_record(message.content.array_records[keys.ARRAYS])
    phi = from_array_record(reply.content.array_records[keys.ARRAYS])
    return {k: (phi[k] - theta[k]).astype(theta[k].dtype) for k in theta}


def mqtt_delta(message: Message) -> dict[str, np.ndarray]:
    wire = to_wire(message, f"sine-{SEED}", round_id=11, deadline_s=10.0)
    device = sine_device(SEED, stream_key=ROUND)
    device.deploy(NumpyMLP((1, 40, 40, 1)))
    result = run_task(device, local_init(SEED, (1, 40, 40, 1)), wire.task, wire.model)
    theta = from_array_record(message.content.array_records[keys.ARRAYS])
    spec = {k: (v.shape, v.dtype) for k, v in theta.items()}
    return decode_weights(result.update, spec, expected_kind=MessageKind.UPDATE).dense


@pytest.mark.parametrize("epochs", [1, 5])
def test_both_transports_reply_the_same_update_for_the_same_request(epochs):
    # Both devices run the same learn_one calls on the same samples in one process: the deltas are equal exactly.
    flower, mqtt = flower_delta(fedavg_request(epochs)), mqtt_delta(fedavg_request(epochs))
    assert set(flower) == set(mqtt) == {"w0", "b0", "w1", "b1", "w2", "b2"}
    for name in flower:
        np.testing.assert_array_equal(mqtt[name], flower[name], err_msg=name)


def test_five_local_epochs_move_the_mqtt_update_further_than_one():
    one, five = mqtt_delta(fedavg_request(1)), mqtt_delta(fedavg_request(5))
    assert any(not np.array_equal(one[k], five[k]) for k in one)
    norm = lambda delta: float(np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in delta.values())))  # noqa: E731
    assert norm(five) > norm(one)  # four more passes over the same 10 samples at the same rate


def test_zero_local_epochs_are_refused_before_the_device_pays():
    message = fedavg_request(1)
    message.content.config_records[keys.CONFIG][keys.LOCAL_EPOCHS] = 0
    wire = to_wire(message, f"sine-{SEED}", round_id=11, deadline_s=10.0)
    device = sine_device(SEED, stream_key=ROUND)
    device.deploy(NumpyMLP((1, 40, 40, 1)))
    before = vars(device.ledger).copy()
    with pytest.raises(WireFormatError, match="local-epochs"):
        run_task(device, local_init(SEED, (1, 40, 40, 1)), wire.task, wire.model)
    assert vars(device.ledger) == before
