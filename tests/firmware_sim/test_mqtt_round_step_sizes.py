"""An MQTT microcontroller measures the step-size hypergradient a Flower SuperNode measures, bit for bit, books
it on its ledger, refuses bad step sizes before anything changes, and the server turns its payloads into the
reply a Flower device sends."""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.mlp import NumpyMLP
from edge.wire import MessageKind, WireFormatError, decode_hypergradient, decode_weights, encode_step_sizes
from edge.wire import encode_weights
from edge import device_round
from firmware_sim.client_app import handle_round, play_round
from edge.device import Ledger
from firmware_sim.fleet import local_init
from firmware_sim.fleet import sine_device
from firmware_sim.mqtt_round import run_task
from server.core.federation import DeviceRoundConfig, FederationSettings, initial_weights, train_config
from server.transports.mqtt_rounds import WireRequest, hypergradient_from_payload, reply_from_update, to_wire
from server.strategies.tiny_reptile import TinyReptile, TinyReptileConfig
from tests.server.strategy_harness import configured

SEED, LAYERS = 3, (1, 40, 40, 1)
SETTINGS = FederationSettings(
    strategy="tinyreptile",
    reptile=TinyReptileConfig(clients_per_round=1, step_size_learning_rate=0.05, step_size_shots=3, step_size_query=6),
    device=DeviceRoundConfig(stream_samples=6, probe_samples=5),
)
SHOTS_AND_QUERY = 3 + 6


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def learned_step_sizes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {k: np.exp(rng.normal(scale=0.3, size=v.shape)).astype(np.float32) for k, v in initial_weights(SETTINGS).items()}


def request(step_sizes: dict | None = None, with_step_sizes: bool = True) -> tuple[TinyReptile, Message]:
    """TinyReptile's training request for node 9 (device 3), with its step sizes replaced by ``step_sizes``."""
    strategy = TinyReptile(SETTINGS.reptile if with_step_sizes else replace(SETTINGS.reptile, step_size_learning_rate=0.0))
    message = configured(strategy, initial_weights(SETTINGS), nodes=(9,), config=train_config(SETTINGS))[0]
    if step_sizes is not None:
        message.content.array_records[keys.STEP_SIZES] = to_array_record(step_sizes)
    return strategy, message


def flower_device(message: Message) -> Message:
    context = Context(run_id=1, node_id=9, node_config={"partition-id": SEED}, state=RecordDict(), run_config={})
    return handle_round(message, context)


def mqtt_device(message: Message):
    """The MQTT device with the same seed and the same fresh samples, after its round: (wire request, device, result)."""
    wire = to_wire(message, f"sine-{SEED}", round_id=42, deadline_s=10.0)
    device = fresh_device(message)
    return wire, device, run_task(device, local_init(SEED, LAYERS), wire.task, wire.model, wire.step_sizes)


def fresh_device(message: Message):
    device = sine_device(SEED, stream_key=int(message.content.config_records[keys.CONFIG][keys.SERVER_ROUND]))
    device.deploy(NumpyMLP(LAYERS))
    return device


def test_the_mqtt_device_measures_what_the_flower_device_measures_and_books_it():
    _, message = request(learned_step_sizes())
    flower = flower_device(message)
    wire, device, result = mqtt_device(message)
    theta = from_array_record(message.content.array_records[keys.ARRAYS])
    spec = {k: (v.shape, v.dtype) for k, v in theta.items()}

    sent = decode_hypergradient(result.hypergradient, spec, expected_round_id=42, expected_device_id=f"sine-{SEED}")
    expected = from_array_record(flower.content.array_records[keys.HYPERGRADIENT])
    for name in theta:
        np.testing.assert_array_equal(sent.tensors[name], expected[name], err_msg=name)
    flower_metrics = flower.content.metric_records[keys.METRICS]
    assert sent.metrics[keys.STEP_SIZE_QUERY_LOSS] == float(np.float32(flower_metrics[keys.STEP_SIZE_QUERY_LOSS]))
    assert sent.num_examples == SHOTS_AND_QUERY
    # θ's update is the Flower device's φ (δ on the wire), untouched by the measurement that followed it
    update = decode_weights(result.update, spec, expected_kind=MessageKind.UPDATE)
    phi = from_array_record(flower.content.array_records[keys.ARRAYS])
    for name in theta:
        np.testing.assert_allclose(theta[name] + update.tensors[name], phi[name], atol=1e-6, err_msg=name)

    # the ledger books the bytes as received and sent and the measurement's compute, in one round
    assert wire.step_sizes is not None and len(wire.step_sizes) == len(wire.model)
    assert device.ledger.bytes_received == len(wire.model) + len(wire.task) + len(wire.step_sizes) == wire.bytes_received
    assert device.ledger.bytes_sent == len(result.update) + len(result.hypergradient) == result.telemetry[keys.BYTES_SENT]
    assert device.ledger.rounds == 1
    assert update.metrics[keys.DEVICE_ENERGY_J] == pytest.approx(device.ledger.energy_j, rel=1e-6)
    assert result.telemetry[keys.DEVICE_ENERGY_J] == pytest.approx(device.ledger.energy_j, rel=1e-12)
    _, without = request(with_step_sizes=False)
    plain_wire, plain, plain_result = mqtt_device(without)
    assert plain_wire.step_sizes is None and plain_result.hypergradient is None
    assert device.ledger.samples - plain.ledger.samples == SHOTS_AND_QUERY
    assert device.ledger.compute_s > plain.ledger.compute_s
    assert update.metrics[keys.DEVICE_TIME_S] > decode_weights(plain_result.update).metrics[keys.DEVICE_TIME_S]
    assert device.ledger.energy_j > plain.ledger.energy_j
    plain_update = decode_weights(plain_result.update, spec, expected_kind=MessageKind.UPDATE)
    assert len(plain_result.update) == len(result.update)  # the same UPDATE frame; the hypergradient is extra
    for name in theta:
        np.testing.assert_array_equal(update.tensors[name], plain_update.tensors[name], err_msg=name)


def test_the_server_turns_the_payloads_into_the_flower_reply_and_learns_from_it(caplog):
    strategy, message = request(learned_step_sizes())
    flower = flower_device(message)
    wire, device, result = mqtt_device(message)
    reply = reply_from_update(wire, result.update, hypergradient=hypergradient_from_payload(wire, result.hypergradient))
    expected = from_array_record(flower.content.array_records[keys.HYPERGRADIENT])
    received = from_array_record(reply.content.array_records[keys.HYPERGRADIENT])
    for name in expected:
        np.testing.assert_array_equal(received[name], expected[name], err_msg=name)
    metrics = reply.content.metric_records[keys.METRICS]
    assert metrics[keys.BYTES_SENT] == device.ledger.bytes_sent  # what the device's ledger says it sent
    assert metrics[keys.BYTES_RECEIVED] == device.ledger.bytes_received
    assert keys.STEP_SIZE_QUERY_LOSS in metrics
    with caplog.at_level(logging.WARNING):
        _, aggregated = strategy.aggregate_train(1, [reply])
    assert aggregated["step-size-clients"] == 1
    assert "no device sent a step-size hypergradient" not in caplog.text
    assert any(not np.allclose(v, 1.0) for v in strategy.step_sizes.scales().values())


def with_crc(payload: bytes | bytearray) -> bytes:
    body = bytes(payload[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def bad_step_sizes(wire: WireRequest, case: str) -> bytes | None:
    good = learned_step_sizes()
    if case == "non-positive":
        good["b1"][5] = 0.0
        return encode_weights(good, round_id=42, kind=MessageKind.STEP_SIZES)
    if case == "nan":
        payload = bytearray(wire.step_sizes)
        payload[-8:-4] = struct.pack("<f", float("nan"))
        return with_crc(payload)
    if case == "shape":
        return encode_step_sizes({**good, "w1": np.ones((40, 41), np.float32)}, round_id=42)
    if case == "dtype":
        return encode_weights({**good, "b1": good["b1"].astype(np.float16)}, round_id=42, kind=MessageKind.STEP_SIZES)
    if case == "round":
        return encode_step_sizes(good, round_id=43)
    return None  # "missing": the task asks for step sizes, none came


@pytest.mark.parametrize(
    "case, code",
    [("non-positive", "non-positive"), ("nan", "non-finite"), ("shape", "spec-mismatch"), ("dtype", "spec-mismatch"),
     ("round", "wrong-round"), ("missing", "bad-field")],
)  # fmt: skip
def test_bad_step_sizes_are_refused_before_anything_changes(case, code):
    _, message = request(learned_step_sizes())
    wire = to_wire(message, f"sine-{SEED}", round_id=42, deadline_s=10.0)
    device = fresh_device(message)
    weights, ledger = device.learner.get_weights(), Ledger(**vars(device.ledger))
    with pytest.raises(WireFormatError) as info:
        run_task(device, local_init(SEED, LAYERS), wire.task, wire.model, bad_step_sizes(wire, case))
    assert info.value.code == code, str(info.value)
    assert vars(device.ledger) == vars(ledger)
    for name, value in device.learner.get_weights().items():
        np.testing.assert_array_equal(value, weights[name])
    x, y = next(device.stream)  # not one sample was consumed
    x0, y0 = next(fresh_device(message).stream)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


def test_a_bad_task_plan_is_refused_too():
    _, message = request(learned_step_sizes())
    message.content.config_records[keys.CONFIG][keys.STEP_SIZE_SHOTS] = 0
    wire = to_wire(message, f"sine-{SEED}", round_id=42, deadline_s=10.0)
    with pytest.raises(WireFormatError, match="step-size-shots = 0 must be a whole number >= 1"):
        run_task(fresh_device(message), local_init(SEED, LAYERS), wire.task, wire.model, wire.step_sizes)


def test_the_flower_device_refuses_bad_step_sizes_before_its_round_starts():
    bad = learned_step_sizes()
    bad["w1"][0, 0] = -1.0
    _, message = request(bad)
    device = fresh_device(message)
    ledger = Ledger(**vars(device.ledger))
    with pytest.raises(ValueError, match="step sizes 'w1' must be finite and positive"):
        play_round(message, device, None)
    assert vars(device.ledger) == vars(ledger)
    np.testing.assert_array_equal(next(device.stream)[0], next(fresh_device(message).stream)[0])


def test_evaluation_rounds_ignore_step_sizes():
    _, message = request(learned_step_sizes())
    evaluation = Message(content=message.content, dst_node_id=9, message_type=MessageType.EVALUATE)
    wire = to_wire(evaluation, f"sine-{SEED}", round_id=42, deadline_s=10.0)
    result = run_task(fresh_device(message), local_init(SEED, LAYERS), wire.task, wire.model)  # no STEP_SIZES
    assert result.hypergradient is None


def test_a_hypergradient_that_cannot_be_sent_is_dropped_and_the_update_still_goes(monkeypatch):
    _, message = request(learned_step_sizes())

    def diverged(theta, *_args):
        return {k: np.full_like(v, np.nan) for k, v in theta.items()}, float("nan")

    monkeypatch.setattr(device_round, "stream_hypergradient", diverged)
    wire, device, result = mqtt_device(message)
    assert result.hypergradient is None
    assert decode_weights(result.update, expected_kind=MessageKind.UPDATE).num_examples == 6
    assert device.ledger.bytes_sent == len(result.update)
