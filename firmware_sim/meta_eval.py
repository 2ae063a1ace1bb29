"""How good is a meta-model: grid MSE on unseen devices after they adapt to it.

Shared by the MQTT fleet tests and the fleet benchmark so "accuracy on unseen
devices" means one thing. With private names, each device first rebuilds its
private part from its local init (TinyMetaFed), exactly as it does in a round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.mlp import NumpyMLP
from edge.reconstruction import reconstruct_and_adapt, split_weights
from firmware_sim.fleet import VALIDATION_SEED_BASE, local_init, sine_device


def unseen_device_mse(
    theta: dict[str, np.ndarray],
    layer_sizes: Sequence[int],
    *,
    private_names: Sequence[str] = (),
    reconstruction_samples: int = 5,
    reconstruction_lr: float = 0.02,
    shots: int = 10,
    learning_rate: float = 0.02,
    n_devices: int = 30,
    step_sizes: dict[str, np.ndarray] | None = None,
) -> float:
    """Mean grid MSE over ``n_devices`` unseen sine devices after reconstruction + online adaptation.

    ``step_sizes`` (meta-learned per-weight multipliers of ``learning_rate``) need the whole model: no private names.
    """
    if step_sizes is not None and private_names:
        raise ValueError("per-weight step sizes cover the whole model; they cannot be combined with private names")
    shared, _ = split_weights(theta, private_names)
    errors = []
    for j in range(n_devices):
        seed = VALIDATION_SEED_BASE + j
        device = sine_device(seed, stream_key=0)
        learner = NumpyMLP(layer_sizes)
        learner.set_step_sizes(step_sizes)
        _, private = split_weights(local_init(seed, layer_sizes), private_names)
        reconstruct_and_adapt(
            learner, shared, private, device.stream,
            reconstruction_samples=reconstruction_samples if private_names else 0,
            reconstruction_lr=reconstruction_lr, shots=shots, learning_rate=learning_rate,
        )
        x, y = device.stream.task.evaluation_grid()
        errors.append(learner.loss(x, y))
    return float(np.mean(errors))
