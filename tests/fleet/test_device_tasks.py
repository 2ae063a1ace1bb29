"""The device side of tasks as plugins (firmware_sim/device_tasks.py): one descriptor per task, found by name or
by a device id, and a device refuses a round meant for another task."""

from __future__ import annotations

import pytest

from edge import record_keys as keys
from edge.wire import DEFAULT_MAX_PAYLOAD, TaskAssignment, WireFormatError, encode_model, encoded_size
from firmware_sim.device_tasks import UnknownTaskError, device_task, seed_of, task_names, task_of_device
from firmware_sim.mqtt_round import run_task


@pytest.mark.parametrize("name", ["sine", "characters", "keywords", "presence"])
def test_every_built_in_task_builds_a_device_of_its_own_that_fits(name: str) -> None:
    task = device_task(name)
    device = task.device(5, stream_key=2)
    assert device.device_id == f"{name}-5" and task_of_device(device.device_id) is task and seed_of(f"{name}-5") == 5
    assert set(task.firmware_init(5)) == set(task.theta0(0)) and set(task.private_names) <= set(task.theta0(0))
    features, _label = next(iter(device.stream))
    assert features.shape[-1] == task.layer_sizes[0]
    # the receive buffer holds the whole model as one payload, and is never below the protocol's default
    assert task.receive_buffer_bytes() >= max(DEFAULT_MAX_PAYLOAD, encoded_size(task.theta0(0)))


def test_unknown_tasks_and_ids_are_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError, match="known tasks: sine, characters, keywords, presence"):
        device_task("speech")
    with pytest.raises(ValueError, match="<task>-<number>"):
        seed_of("pi-kitchen")
    assert task_names()[:4] == ("sine", "characters", "keywords", "presence")
    assert device_task("sine").with_layer_sizes((1, 8, 1)).private_names == ("w1", "b1")
    with pytest.raises(ValueError, match="only sine"):
        device_task("keywords").with_layer_sizes((120, 8, 4))


def test_a_device_refuses_a_round_for_another_task() -> None:
    task = device_task("presence")
    device, theta = task.device(3), task.theta0(0)
    assignment = TaskAssignment(round_id=7, deadline_s=10.0, hyperparameters={keys.TASK: "keywords", keys.SERVER_ROUND: 1})
    with pytest.raises(WireFormatError, match="learns presence; the round is for task 'keywords'"):
        run_task(device, task.firmware_init(3), assignment.to_json(), encode_model(theta, round_id=7), device_task="presence")
    assert device.ledger.rounds == 0  # refused before anything changed
