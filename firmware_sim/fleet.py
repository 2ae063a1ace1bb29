"""Who each simulated device is: its profile, its task and its stream.

A device is fully determined by its seed, so a Flower node, an MQTT client
and the evaluation of unseen devices all rebuild the same device from the
same number, in any process. Training fleets and unseen evaluation fleets use
disjoint seed ranges.
"""

from __future__ import annotations

import numpy as np

from collections.abc import Sequence

from edge.device import SimulatedDevice
from edge.identity import TEST_SEED_BASE, VALIDATION_SEED_BASE, DeviceIdentity
from edge.learner import Learner
from edge.mlp import NumpyMLP, init_mlp_weights
from edge.profiles import MICROCONTROLLERS, DeviceProfile
from firmware_sim.tasks.sine import SineStream, sample_task

__all__ = ["TEST_SEED_BASE", "VALIDATION_SEED_BASE", "local_init", "mlp_learner_for", "profile_for", "sine_device"]

PRIVATE_INIT_SEED_OFFSET = 10_000  # a device's firmware-local init of its private part: seed + offset


def local_init(device_seed: int, layer_sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """The weights a device's firmware ships with; its private part is where reconstruction starts.

    Shared by the MQTT fleet, the Flower ClientApp and the unseen-device
    evaluation so that "the device's local init" is one thing everywhere.
    """
    return init_mlp_weights(layer_sizes, seed=PRIVATE_INIT_SEED_OFFSET + device_seed)


def profile_for(device_seed: int) -> DeviceProfile:
    return MICROCONTROLLERS[device_seed % len(MICROCONTROLLERS)]


def sine_device(device_seed: int, stream_key: int, drift_per_sample: float = 0.0) -> SimulatedDevice:
    """The device with this seed; ``stream_key`` (e.g. the round) selects fresh samples."""
    task = sample_task(device_seed, drift_per_sample=drift_per_sample)
    return SimulatedDevice(
        device_id=DeviceIdentity.of_seed(device_seed).device_id,
        profile=profile_for(device_seed),
        stream=SineStream(task, seed=(device_seed, stream_key)),
    )


def mlp_learner_for(weights: dict[str, np.ndarray]) -> Learner:
    """A numpy MLP shaped like ``weights`` (w0, b0, w1, ...)."""
    n_layers = len([k for k in weights if k.startswith("w")])
    sizes = [weights["w0"].shape[0]] + [weights[f"w{i}"].shape[1] for i in range(n_layers)]
    return NumpyMLP(sizes)
