"""A model too large for the device is refused with the numbers, and the device keeps running (issue 15).

The sine firmware (edge/firmware/device/sine_firmware.c) under QEMU mps2-an386, over its UART (docs/protocol.md §7):

- with its shipped 8 KiB MODEL buffer, a 1-64-64-1 MODEL (17 KB) is longer than any frame it can receive: the serial
  decoder refuses it as ``oversized``, and the telemetry's reason gives the device's limit;
- built with a 32 KiB MODEL buffer, the same MODEL arrives, and the round refuses it as ``too-large`` with a
  reason naming the RAM training it would take (weights, gradients, θ, activations, deltas: 3·4,353 + 130 + 128
  floats) against what the firmware has (its static MLP arena and θ buffer); a different MLP that would fit stays
  ``spec-mismatch`` (what Python's decoder says for any shape that is not the device's), and a task holding more
  samples than the replay buffer is ``too-many`` with its numbers;

after each refusal the next round runs and its UPDATE is run_task's for the same samples.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.firmware.build import SERIAL_LINK_C, build_elf
from edge.firmware.device import DEVICE_DIR, LIBRARY, SINE_FIRMWARE_C, build_sine_firmware
from edge.firmware.qemu import SerialRun
from edge.mlp import NumpyMLP
from edge.serial_link import Topic
from edge.wire import TaskAssignment, encode_model
from firmware_sim.fleet import local_init, profile_for, sine_device
from firmware_sim.mqtt_round import run_task
from tests.edge.test_firmware_device_uart import Line, assert_same_update, theta

SIZES, SEED = (1, 40, 40, 1), 4
pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)
# what sine_firmware.c holds for the 1-40-40-1 MLP: arena[2 * N_PARAMS + 512] and theta[N_PARAMS] floats
DEVICE_RAM_FOR_TRAINING = 4 * ((2 * 1761 + 512) + 1761)


def bigger_model(sizes: tuple[int, ...], round_id: int) -> bytes:
    return encode_model(NumpyMLP(sizes, seed=1).get_weights(), round_id=round_id)


def training_bytes(sizes: tuple[int, ...]) -> int:
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return 4 * (3 * params + sum(sizes) + 2 * max(sizes))


def firmware(tmp_path: Path, max_model: int | None) -> Path:
    reference = sine_device(SEED, stream_key=3)
    elf = build_sine_firmware(tmp_path, device_id=reference.device_id, local_init=local_init(SEED, SIZES),
                              sensor=reference.stream.take(80), profile=profile_for(SEED))  # fmt: skip
    if max_model is None:
        return elf
    return build_elf("mps2-an386", [SINE_FIRMWARE_C, *LIBRARY, SERIAL_LINK_C], include_dirs=[tmp_path, DEVICE_DIR],
                     out_dir=tmp_path, name="sine_firmware_32k", defines={"DEVICE_MAX_MODEL": max_model})  # fmt: skip


def task(round_id: int, **hyperparameters: object) -> bytes:
    values = {k.replace("_", "-"): v for k, v in hyperparameters.items()}
    return TaskAssignment(round_id=round_id, deadline_s=30.0, hyperparameters=values).to_json()


def good_round(line: Line, device, round_id: int) -> None:
    t, model = task(round_id, stream_samples=4, probe_samples=2), encode_model(theta(), round_id=round_id)
    line.send(Topic.MODEL, model)
    line.send(Topic.TASK, t)
    update, telemetry = line.next(), line.next()
    assert (update.topic, telemetry.topic) == (Topic.UPDATE, Topic.TELEMETRY), json.loads(telemetry.payload)
    assert_same_update(update.payload, run_task(device, local_init(SEED, SIZES), t, model).update,
                       sine_device(SEED, stream_key=3).device_id, round_id)  # fmt: skip


def python_device():
    reference = sine_device(SEED, stream_key=3)
    device = sine_device(SEED, stream_key=3)
    device.deploy(NumpyMLP(SIZES))
    device.stream = iter(reference.stream.take(80))  # the firmware's sensor recording, each sample used once
    return device


def test_a_model_longer_than_the_receive_buffer_is_refused_with_the_limit(tmp_path: Path) -> None:
    big = bigger_model((1, 64, 64, 1), round_id=3)
    assert len(big) > 8192
    device = python_device()
    with SerialRun(firmware(tmp_path, None), icount=True) as run:
        line = Line(run)
        assert (line.next().topic, line.next().topic) == (Topic.STATUS, Topic.ANNOUNCE)
        line.send(Topic.MODEL, big)
        refusal = line.next()
        assert refusal.topic == Topic.TELEMETRY
        assert json.loads(refusal.payload) == {"serial-error": "oversized", "v": 1,
                                               "reason": "a frame's payload may be 8192 B at most on this device"}  # fmt: skip
        line.send(Topic.TASK, task(3, stream_samples=4))  # the task alone: no round (its MODEL never came)
        good_round(line, device, 4)


def test_a_model_too_large_for_the_ram_is_refused_naming_the_numbers(tmp_path: Path) -> None:
    device = python_device()
    needs = training_bytes((1, 64, 64, 1))
    assert needs == 4 * (3 * 4353 + 130 + 128) > DEVICE_RAM_FOR_TRAINING
    with SerialRun(firmware(tmp_path, 32768), icount=True) as run:
        line = Line(run)
        assert (line.next().topic, line.next().topic) == (Topic.STATUS, Topic.ANNOUNCE)

        line.send(Topic.MODEL, bigger_model((1, 64, 64, 1), round_id=3))
        line.send(Topic.TASK, task(3, stream_samples=4))
        refusal = json.loads(line.next().payload)
        assert refusal == {"round-error": "too-large", "round-id": 3, "v": 1,
                           "reason": f"model 1-64-64-1 needs {needs:,} B of RAM to train, device has {DEVICE_RAM_FOR_TRAINING:,} B"}
        print(f"refused: {refusal['reason']}")
        good_round(line, device, 4)  # nothing was spent on it: the next round takes the first samples

        # an MLP that would fit but is not the firmware's: the decoder's spec-mismatch, no numbers to give
        assert training_bytes((1, 20, 20, 1)) < DEVICE_RAM_FOR_TRAINING
        line.send(Topic.MODEL, bigger_model((1, 20, 20, 1), round_id=5))
        line.send(Topic.TASK, task(5, stream_samples=4))
        assert json.loads(line.next().payload) == {"round-error": "spec-mismatch", "round-id": 5, "v": 1}

        # a task holding more samples than the replay buffer (DEVICE_REPLAY_FLOATS = 1,024 floats): 600 + 1 slot of 2
        line.send(Topic.MODEL, encode_model(theta(), round_id=6))
        line.send(Topic.TASK, task(6, stream_samples=4, probe_samples=600))
        assert json.loads(line.next().payload) == {"round-error": "too-many", "round-id": 6, "v": 1,
                                                   "reason": "task needs 4,808 B of sample buffer (probe + replayed shots), device has 4,096 B"}  # fmt: skip
        good_round(line, device, 7)


def test_the_ram_arithmetic_is_the_firmwares_own() -> None:
    """DEVICE_RAM_FOR_TRAINING is what the image reserves: the static arena and θ of sine_firmware.c."""
    text = SINE_FIRMWARE_C.read_text()
    assert "static float arena[2 * N_PARAMS + 512];" in text and "static float theta[N_PARAMS];" in text
    assert sum(v.size for v in NumpyMLP(SIZES).get_weights().values()) == 1761
    assert training_bytes(SIZES) <= DEVICE_RAM_FOR_TRAINING  # the firmware's own model fits its arithmetic
