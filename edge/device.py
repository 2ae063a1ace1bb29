"""A device: a profile, a sensor stream, a learner and a budget (simulated boards and Linux-class devices alike).

Like a real board it refuses a model it cannot hold (flash) or train (RAM)
before touching anything, and it keeps a ledger of what each round cost in
simulated time, radio bytes and energy, derived from its profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edge.adaptation import AdaptationReport, Sample, adapt_online
from edge.learner import Learner
from edge.profiles import DeviceProfile


class ModelDoesNotFitError(ValueError):
    """The model needs more flash or RAM than the device has left for it."""


@dataclass(frozen=True)
class ModelRequirements:
    flash_bytes: int
    ram_bytes: int

    @classmethod
    def of(cls, learner: Learner, flash_bytes: int | None = None) -> "ModelRequirements":
        """Flash defaults to the float32 weights (what a weights-only image stores)."""
        footprint = learner.memory_footprint()
        return cls(flash_bytes=footprint.weights if flash_bytes is None else flash_bytes, ram_bytes=footprint.total)


def check_fits(profile: DeviceProfile, needs: ModelRequirements) -> None:
    problems = []
    if needs.flash_bytes > profile.usable_flash_bytes:
        problems.append(
            f"flash: model needs {needs.flash_bytes:,} B, {profile.board} has {profile.usable_flash_bytes:,} B free "
            f"({profile.flash_bytes:,} B total)"
        )
    if needs.ram_bytes > profile.usable_ram_bytes:
        problems.append(
            f"RAM: inference + training need {needs.ram_bytes:,} B, {profile.board} has "
            f"{profile.usable_ram_bytes:,} B free ({profile.ram_bytes:,} B total)"
        )
    if problems:
        raise ModelDoesNotFitError("model does not fit: " + "; ".join(problems))


@dataclass
class Ledger:
    """Cumulative costs of a device, in the units a battery cares about."""

    samples: int = 0
    compute_s: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    energy_j: float = 0.0
    rounds: int = 0


@dataclass
class RoundCost:
    compute_s: float
    radio_s: float
    energy_j: float


@dataclass
class SimulatedDevice:
    device_id: str
    profile: DeviceProfile
    stream: Iterator[Sample]
    learner: Learner | None = None
    requirements: ModelRequirements | None = None
    ledger: Ledger = field(default_factory=Ledger)

    def deploy(self, learner: Learner, flash_bytes: int | None = None) -> None:
        """Install a model; refused (and the old one kept) if it does not fit."""
        needs = ModelRequirements.of(learner, flash_bytes)
        check_fits(self.profile, needs)
        self.learner, self.requirements = learner, needs

    def _require_model(self) -> Learner:
        if self.learner is None:
            raise RuntimeError(f"device {self.device_id} has no model deployed")
        return self.learner

    def receive(self, weights: dict[str, np.ndarray], payload_bytes: int) -> None:
        self._require_model().set_weights(weights)
        self.ledger.bytes_received += payload_bytes

    def adapt(self, shots: int, learning_rate: float, probe: int = 0, epochs: int = 1) -> AdaptationReport:
        learner = self._require_model()
        report = adapt_online(learner, self.stream, shots, learning_rate, probe=probe, epochs=epochs)
        self.charge_compute(steps=shots * epochs, evaluations=2 * probe, samples=shots + probe)
        return report

    def charge_compute(self, steps: int, evaluations: int, samples: int) -> None:
        """Book ``steps`` SGD steps and ``evaluations`` forward passes on ``samples`` stream samples.

        Public so that on-device procedures other than :meth:`adapt` (e.g. partial
        reconstruction over MQTT) are costed with the same profile arithmetic.
        """
        cost = self._require_model().compute_cost()
        self.ledger.compute_s += self.profile.compute_seconds(
            float_macs=steps * cost.training_float_macs + evaluations * cost.inference_float_macs,
            int8_macs=(steps + evaluations) * cost.inference_int8_macs,
        )
        self.ledger.samples += samples

    def send(self, payload_bytes: int) -> None:
        self.ledger.bytes_sent += payload_bytes

    def close_round(self, ledger_at_start: Ledger) -> RoundCost:
        """Energy of the round since ``ledger_at_start`` (a copy taken when it began)."""
        compute = self.ledger.compute_s - ledger_at_start.compute_s
        sent = self.ledger.bytes_sent - ledger_at_start.bytes_sent
        received = self.ledger.bytes_received - ledger_at_start.bytes_received
        energy = self.profile.energy_joules(compute, sent, received)
        self.ledger.energy_j += energy
        self.ledger.rounds += 1
        return RoundCost(
            compute_s=compute,
            radio_s=self.profile.radio_seconds(sent) + self.profile.radio_seconds(received),
            energy_j=energy,
        )
