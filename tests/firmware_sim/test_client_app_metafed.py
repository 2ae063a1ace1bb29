"""A Flower SuperNode and an MQTT microcontroller run the same TinyMetaFed round, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.mlp import NumpyMLP
from edge.sparse_records import sparse_from_array_record
from edge.wire import MessageKind, decode_weights, encode_model
from firmware_sim.client_app import handle_round, parse_layer_sizes
from firmware_sim.fleet import local_init
from firmware_sim.fleet import sine_device
from firmware_sim.mqtt_round import run_task
from server.core.federation import DeviceRoundConfig, FederationSettings, initial_weights, train_config
from server.transports.mqtt_rounds import to_wire
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig

SEED, ROUND = 3, 7


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower messages need a process-wide task identity; set one for this test only."""
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def request(top_p: float, kind: str = MessageType.TRAIN) -> Message:
    """What TinyMetaFed sends a device in round ``ROUND`` (θ without the head, the reconstruction settings)."""
    settings = FederationSettings(strategy="tinymetafed", metafed=TinyMetaFedConfig(top_p=top_p),
                                  device=DeviceRoundConfig(stream_samples=10))  # a short round, not the demo's 50
    shared, config = TinyMetaFed(settings.metafed)._shared_request(
        to_array_record(initial_weights(settings)), train_config(settings)
    )
    config[keys.SERVER_ROUND] = ROUND
    return Message(content=RecordDict({keys.ARRAYS: shared, keys.CONFIG: config}), dst_node_id=9, message_type=kind)


def flower_device(message: Message) -> Message:
    context = Context(run_id=1, node_id=9, node_config={"partition-id": SEED}, state=RecordDict(), run_config={})
    return handle_round(message, context)


def mqtt_device(message: Message) -> tuple[bytes, bytes, bytes]:
    """(MODEL, task, UPDATE) of an MQTT device with the same seed and the same fresh samples."""
    wire = to_wire(message, f"sine-{SEED}", round_id=42, deadline_s=10.0)
    device = sine_device(SEED, stream_key=ROUND)
    device.deploy(NumpyMLP(parse_layer_sizes(message.content.config_records[keys.CONFIG][keys.LAYER_SIZES])))
    result = run_task(device, local_init(SEED, (1, 40, 40, 1)), wire.task, wire.model)
    return wire.model, wire.task, result.update


def test_top_p_round_matches_the_mqtt_device_and_counts_wire_bytes():
    message = request(top_p=0.1)
    reply = flower_device(message)
    model, _, update = mqtt_device(message)

    theta = from_array_record(message.content.array_records[keys.ARRAYS])
    spec = {k: (v.shape, v.dtype) for k, v in theta.items()}
    flower_delta = sparse_from_array_record(reply.content.array_records[keys.SPARSE_DELTA], spec)
    mqtt_delta = decode_weights(update, spec, expected_kind=MessageKind.UPDATE).sparse
    assert set(flower_delta) == set(mqtt_delta) == {"w0", "b0", "w1", "b1"}  # the head never goes up
    for name in flower_delta:
        assert flower_delta[name] == mqtt_delta[name]
    metrics = reply.content.metric_records[keys.METRICS]
    assert metrics[keys.BYTES_SENT] == len(update)  # the UPDATE this reply would be on the radio
    assert metrics[keys.BYTES_RECEIVED] == len(model) == len(encode_model(theta, round_id=0))
    assert metrics[keys.NUM_EXAMPLES] == 15 and np.isfinite(metrics[keys.RECONSTRUCTION_LOSS])
    assert metrics[keys.DEVICE_ENERGY_J] > 0


def test_dense_round_replies_phi_and_evaluation_replies_metrics_only():
    dense = flower_device(request(top_p=1.0))
    phi = from_array_record(dense.content.array_records[keys.ARRAYS])
    assert set(phi) == {"w0", "b0", "w1", "b1"} and keys.SPARSE_DELTA not in dense.content.array_records
    evaluation = flower_device(request(top_p=0.1, kind=MessageType.EVALUATE))
    assert not evaluation.content.array_records and keys.LOSS_AFTER in evaluation.content.metric_records[keys.METRICS]


def test_a_request_the_device_cannot_honour_is_refused_with_the_reason():
    message = request(top_p=0.1)
    config = message.content.config_records[keys.CONFIG]
    config[keys.LAYER_SIZES] = "1,40,1"
    with pytest.raises(ValueError, match="are not weights of this firmware"):  # no w2/b2 head in a 2-layer MLP
        flower_device(message)
    config[keys.LAYER_SIZES] = "1,20,40,1"
    with pytest.raises(ValueError, match="w0"):  # θ's first layer has 40 units, this firmware's 20
        flower_device(message)
    config[keys.LAYER_SIZES] = "one,two"
    with pytest.raises(ValueError, match="comma-separated integers"):
        flower_device(message)
    del config[keys.LAYER_SIZES]
    with pytest.raises(ValueError, match="layer-sizes"):
        flower_device(message)
    config[keys.LAYER_SIZES] = "1,40,40,1"
    config[keys.PRIVATE_NAMES] = "w2,head"
    with pytest.raises(ValueError, match="head"):
        flower_device(message)
