"""Strict JSON control messages."""

from __future__ import annotations

import json

import pytest

from edge import record_keys as rk
from edge.wire import ControlMessageError, TaskAssignment, WireFormatError, encode_telemetry, parse_announce, parse_telemetry


def task_json(**override) -> bytes:
    obj = {"v": 1, "type": "task", "round_id": 3, "deadline_s": 30.0, "hyperparameters": {rk.INNER_LEARNING_RATE: 0.01, rk.STREAM_SAMPLES: 64}, "top_p": 0.1}
    obj.update(override)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


def test_task_round_trip() -> None:
    task = TaskAssignment(round_id=3, deadline_s=30, hyperparameters={rk.INNER_LEARNING_RATE: 0.01, "flag": True, "mode": "online"}, top_p=0.1)
    again = TaskAssignment.from_json(task.to_json())
    assert again == task and isinstance(again.deadline_s, float)
    dense = TaskAssignment(round_id=0, deadline_s=1.5)
    assert TaskAssignment.from_json(dense.to_json()).top_p is None
    assert json.loads(task.to_json())["v"] == 1


def test_task_parses_without_optional_top_p() -> None:
    assert TaskAssignment.from_json(task_json(top_p=...)).top_p is None


@pytest.mark.parametrize(
    "payload, code, text",
    [
        (b"\xff\xfe", WireFormatError.BAD_JSON, "not UTF-8"),
        (b"{", WireFormatError.BAD_JSON, "not valid JSON"),
        (b"[1]", WireFormatError.BAD_JSON, "must be a JSON object"),
        (b'{"v":1,"v":1}', WireFormatError.BAD_JSON, "duplicate key 'v'"),
        (task_json(deadline_s=float("nan")), WireFormatError.BAD_JSON, "NaN"),
        (task_json(v=2), WireFormatError.BAD_VERSION, "version 2"),
        (task_json(v=True), WireFormatError.BAD_VERSION, "version True"),
        (task_json(type="model"), WireFormatError.BAD_FIELD, "type must be 'task'"),
        (task_json(round_id=...), WireFormatError.BAD_FIELD, "missing fields ['round_id']"),
        (task_json(extra=1), WireFormatError.BAD_FIELD, "unknown fields ['extra']"),
        (task_json(round_id=-1), WireFormatError.BAD_FIELD, "round_id must be an integer"),
        (task_json(round_id=2**32), WireFormatError.BAD_FIELD, "round_id"),
        (task_json(round_id=3.0), WireFormatError.BAD_FIELD, "round_id"),
        (task_json(round_id=True), WireFormatError.BAD_FIELD, "round_id"),
        (task_json(round_id="3"), WireFormatError.BAD_FIELD, "round_id"),
        (task_json(deadline_s=0), WireFormatError.BAD_FIELD, "deadline_s must be a finite number in (0.0"),
        (task_json(deadline_s=1e9), WireFormatError.BAD_FIELD, "deadline_s"),
        (task_json(deadline_s=False), WireFormatError.BAD_FIELD, "deadline_s"),
        (task_json(top_p=0), WireFormatError.BAD_FIELD, "top_p"),
        (task_json(top_p=10), WireFormatError.BAD_FIELD, "top_p"),
        (task_json(hyperparameters=[]), WireFormatError.BAD_FIELD, "hyperparameters must be an object"),
        (task_json(hyperparameters={"lr": [1]}), WireFormatError.BAD_FIELD, "hyperparameters['lr']"),
        (task_json(hyperparameters={"lr": {"a": 1}}), WireFormatError.BAD_FIELD, "hyperparameters['lr']"),
        (task_json(hyperparameters={"lr": None}), WireFormatError.BAD_FIELD, "NoneType"),
        (task_json(hyperparameters={"bad key": 1}), WireFormatError.BAD_NAME, "'bad key'"),
        (task_json(hyperparameters={"s": "x" * 129}), WireFormatError.BAD_FIELD, "129 characters"),
        (task_json(hyperparameters={f"k{i}": i for i in range(33)}), WireFormatError.TOO_MANY, "33 entries"),
        (b" " * 4097, WireFormatError.OVERSIZED, "4097 bytes"),
        (b"[" * 100_000 + b"]" * 100_000, WireFormatError.OVERSIZED, ""),
        ("[" * 3000 + "]" * 3000, WireFormatError.OVERSIZED, ""),
    ],
)
def test_task_refusals(payload, code, text) -> None:
    with pytest.raises(ControlMessageError) as info:
        TaskAssignment.from_json(payload)
    assert info.value.code == code and text in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


def test_deeply_nested_json_under_the_cap_is_a_control_error() -> None:
    deep = b'{"v":' + b"[" * 1500 + b"]" * 1500 + b"}"
    with pytest.raises(ControlMessageError):
        parse_announce(deep)


def test_task_constructor_validates_too() -> None:
    with pytest.raises(ControlMessageError, match="deadline_s"):
        TaskAssignment(round_id=1, deadline_s=-1)


def test_telemetry_round_trip_and_refusals() -> None:
    payload = encode_telemetry({rk.BYTES_SENT: 1612, rk.DEVICE_ENERGY_J: 0.02, rk.PROFILE: "nano33"})
    assert parse_telemetry(payload) == {rk.BYTES_SENT: 1612, rk.DEVICE_ENERGY_J: 0.02, rk.PROFILE: "nano33"}
    with pytest.raises(ControlMessageError, match="version None"):
        parse_telemetry(b'{"x": 1}')
    with pytest.raises(ControlMessageError, match="must be a number"):
        parse_telemetry(b'{"v": 1, "x": [1]}')
    with pytest.raises(ControlMessageError, match="reserved"):
        encode_telemetry({"v": 2})
    with pytest.raises(ControlMessageError, match="non-finite|inf"):
        encode_telemetry({"x": float("inf")})


def test_announce_is_a_strict_json_object() -> None:
    td = {"@context": "https://www.w3.org/2022/wot/td/v1.1", "id": "urn:dev:sine-1", "title": "sine-1"}
    assert parse_announce(json.dumps(td).encode()) == td
    for bad in (b"", b"null", b'"x"', b"\x00"):
        with pytest.raises(ControlMessageError):
            parse_announce(bad)
