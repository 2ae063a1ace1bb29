"""The server's half of meta-learned step sizes: send them with θ, fold the devices' hypergradients in.

Why a separate piece: TinyReptile's θ update is the paper's and stays
untouched (with step-size learning on, θ is bit-identical to a run without);
the step sizes ride along in the same messages as a second ArrayRecord and are
learned from what the same devices measure on samples they have not used for
θ (:func:`edge.step_sizes.log_scale_hypergradient`). A device that does not
send a hypergradient (e.g. firmware without the feature) simply does not
contribute to this round's step-size update.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from edge import record_keys as keys
from edge.flower_records import to_array_record
from edge.step_sizes import LogScaleAdam, scale_spec

log = logging.getLogger(__name__)

STATE_PREFIX = "step-sizes/"


def step_sizes_from_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The learned step sizes in a checkpoint's strategy state, or None if the run learned none."""
    adam = LogScaleAdam(learning_rate=1.0)
    adam.restore(state, STATE_PREFIX)
    return adam.scales() if adam.log_scales else None


class StepSizeLearning:
    """Per-weight step sizes kept by the server and updated by Adam on log scale each round."""

    def __init__(self, learning_rate: float, base_rate: float, shots: int, query: int) -> None:
        if shots < 1 or query < 1:
            raise ValueError("step-size learning needs >= 1 support shot and >= 1 query sample")
        if not base_rate > 0:
            raise ValueError("the base adaptation rate must be positive")
        self.adam = LogScaleAdam(learning_rate)
        self.base_rate, self.shots, self.query = base_rate, shots, query
        self._warned = False

    def scales(self) -> dict[str, np.ndarray]:
        return self.adam.scales()

    def attach(self, content: RecordDict, config: ConfigRecord, theta: Mapping[str, np.ndarray]) -> None:
        """Add the current step sizes and what the device must measure to an outgoing request."""
        self.adam.start(theta)
        content[keys.STEP_SIZES] = to_array_record(self.scales())
        config[keys.STEP_SIZE_BASE_RATE] = self.base_rate
        config[keys.STEP_SIZE_SHOTS] = self.shots
        config[keys.STEP_SIZE_QUERY] = self.query

    def update(self, gradients: Sequence[Mapping[str, np.ndarray]], theta: Mapping[str, np.ndarray]) -> int:
        """One Adam step on the mean of the round's screened hypergradients (:mod:`server.strategies.screening`);
        returns how many contributed."""
        if gradients:
            self.adam.start(theta)
            self.adam.step({k: np.mean([g[k] for g in gradients], axis=0) for k in scale_spec(theta)})
        elif not self._warned:
            log.warning("no device sent a step-size hypergradient (e.g. MQTT firmware without the feature); "
                        "step sizes stay as they are until one does")  # fmt: skip
            self._warned = True
        return len(gradients)

    def state(self) -> dict[str, np.ndarray]:
        return self.adam.state(STATE_PREFIX)

    def restore(self, state: Mapping[str, np.ndarray]) -> None:
        self.adam.restore(state, STATE_PREFIX)
