"""Who each simulated device is: its profile, its task and its stream.

A device is fully determined by its seed, so a Flower node, an MQTT client
and the evaluation of unseen devices all rebuild the same device from the
same number, in any process. Training fleets and unseen evaluation fleets use
disjoint seed ranges.
"""

from __future__ import annotations

import numpy as np

from edge.learner import Learner
from edge.mlp import NumpyMLP
from firmware_sim.device import SimulatedDevice
from edge.profiles import MICROCONTROLLERS, DeviceProfile
from firmware_sim.tasks.sine import SineStream, sample_task

UNSEEN_SEED_BASE = 1_000_000  # validation devices: never in a training fleet; used while tuning
TEST_SEED_BASE = 2_000_000  # the demo's held-out devices: never used for any choice of hyperparameters


def profile_for(device_seed: int) -> DeviceProfile:
    return MICROCONTROLLERS[device_seed % len(MICROCONTROLLERS)]


def sine_device(device_seed: int, stream_key: int, drift_per_sample: float = 0.0) -> SimulatedDevice:
    """The device with this seed; ``stream_key`` (e.g. the round) selects fresh samples."""
    task = sample_task(device_seed, drift_per_sample=drift_per_sample)
    return SimulatedDevice(
        device_id=f"sine-{device_seed}",
        profile=profile_for(device_seed),
        stream=SineStream(task, seed=(device_seed, stream_key)),
    )


def mlp_learner_for(weights: dict[str, np.ndarray]) -> Learner:
    """A numpy MLP shaped like ``weights`` (w0, b0, w1, ...)."""
    n_layers = len([k for k in weights if k.startswith("w")])
    sizes = [weights["w0"].shape[0]] + [weights[f"w{i}"].shape[1] for i in range(n_layers)]
    return NumpyMLP(sizes)
