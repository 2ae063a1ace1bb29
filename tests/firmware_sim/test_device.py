import copy

import numpy as np
import pytest

from edge.mlp import NumpyMLP
from edge.online_head import OnlineHead
from edge.device import ModelDoesNotFitError, SimulatedDevice
from firmware_sim.fleet import sine_device
from edge.profiles import NANO_33_BLE_SENSE, PROFILES, get_profile
from firmware_sim.tasks.sine import SineStream, sample_task


def test_nano_profile_has_the_boards_real_limits():
    nano = get_profile("nano33ble")
    assert nano.ram_bytes == 256 * 1024 and nano.flash_bytes == 1024 * 1024 and nano.clock_hz == 64_000_000
    assert nano.usable_ram_bytes == 172 * 1024 and nano.usable_flash_bytes == 628 * 1024
    assert {"nano33ble", "esp32s3", "rp2040", "rpi4"} <= set(PROFILES)
    with pytest.raises(KeyError, match="known"):
        get_profile("arduino-uno")


def test_device_refuses_a_model_too_large_naming_the_numbers():
    device = SimulatedDevice("d1", NANO_33_BLE_SENSE, iter(()))
    small = NumpyMLP([1, 40, 40, 1])
    device.deploy(small)
    big = NumpyMLP([1, 200, 200, 1])  # ~40k parameters: ~160 KB weights, ~330 KB with training buffers
    with pytest.raises(ModelDoesNotFitError, match=r"RAM: inference \+ training need [\d,]+ B, Arduino Nano 33 BLE Sense has 176,128 B free"):
        device.deploy(big)
    with pytest.raises(ModelDoesNotFitError, match="flash: model needs 2,000,000 B"):
        device.deploy(OnlineHead(4, 1), flash_bytes=2_000_000)
    assert device.learner is small  # the old model stays


def test_round_accounting_uses_profile_clock_and_currents():
    device = sine_device(0, stream_key=0)
    learner = NumpyMLP([1, 40, 40, 1])
    device.deploy(learner)
    start = copy.copy(device.ledger)
    weights = learner.get_weights()
    device.receive(weights, payload_bytes=7000)
    device.adapt(shots=10, learning_rate=0.01)
    device.send(7000)
    cost = device.close_round(start)
    profile = device.profile
    expected_compute = 10 * learner.compute_cost().training_float_macs * profile.cycles_per_float_mac / profile.clock_hz
    assert cost.compute_s == pytest.approx(expected_compute)
    expected_energy = profile.supply_voltage_v * (
        profile.active_current_a * expected_compute
        + (profile.radio_tx_current_a + profile.radio_rx_current_a) * 8 * 7000 / profile.radio_bitrate_bps
    )
    assert cost.energy_j == pytest.approx(expected_energy)
    assert device.ledger.samples == 10 and device.ledger.bytes_sent == 7000


def test_sine_tasks_are_deterministic_per_seed_and_streams_fresh_per_round():
    assert sample_task(3) == sample_task(3) and sample_task(3) != sample_task(4)
    a = SineStream(sample_task(3), seed=(3, 1)).take(4)
    b = SineStream(sample_task(3), seed=(3, 1)).take(4)
    c = SineStream(sample_task(3), seed=(3, 2)).take(4)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in a]), np.concatenate([x for x, _ in b]))
    assert not np.array_equal(np.concatenate([x for x, _ in a]), np.concatenate([x for x, _ in c]))


def test_drifting_stream_changes_the_target_over_time():
    task = sample_task(0, drift_per_sample=0.1)
    x = np.array([1.0])
    assert not np.isclose(task.value(x, 0), task.value(x, 20)).all()
