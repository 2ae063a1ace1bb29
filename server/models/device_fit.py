"""Does a task model fit a device, and what does a head step cost there? Both from the registry's reading of the file.

Flash and arena come from :func:`ontology.describe_model.describe_model_bytes`
(the same describer the registry uses), the head's RAM and MACs from
:class:`edge.online_head.OnlineHead`, so the fit a benchmark reports is the fit
the registry records.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdflib import Literal

from edge.online_head import OnlineHead
from edge.profiles import NANO_33_BLE_SENSE, DeviceProfile
from ontology.describe_model import describe_model_bytes
from ontology.vocab import TF
from server.models.task_model import TaskModel


@dataclass(frozen=True)
class FitReport:
    """Memory a task model needs on a device, from the registry's description of the .tflite file."""

    task: str
    device: str
    flash_bytes: int  # tf:modelSizeBytes = .tflite file size
    arena_bytes: int  # tf:tensorArenaBytes = TFLM's whole used arena, estimated (planner head + persistent tail)
    head_ram_bytes: int  # OnlineHead weights + gradient + activations (memory_footprint().total)
    usable_flash_bytes: int
    usable_ram_bytes: int

    @property
    def training_ram_bytes(self) -> int:
        """What online learning needs in RAM: backbone inference arena + the trainable head."""
        return self.arena_bytes + self.head_ram_bytes

    @property
    def fits(self) -> bool:
        return self.flash_bytes <= self.usable_flash_bytes and self.training_ram_bytes <= self.usable_ram_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "task": self.task,
            "device": self.device,
            "flash_bytes": self.flash_bytes,
            "arena_bytes": self.arena_bytes,
            "head_ram_bytes": self.head_ram_bytes,
            "training_ram_bytes": self.training_ram_bytes,
            "usable_flash_bytes": self.usable_flash_bytes,
            "usable_ram_bytes": self.usable_ram_bytes,
            "fits": self.fits,
        }


def _integer(graph: object, subject: object, prop: object) -> int:
    value = graph.value(subject, prop)  # type: ignore[attr-defined]
    if not isinstance(value, Literal):
        raise ValueError(f"the model description has no {prop}")
    return int(value.toPython())


def fit_report(
    model: bytes, n_features: int, n_outputs: int, task: str = "model", profile: DeviceProfile = NANO_33_BLE_SENSE
) -> FitReport:
    """Describe ``model`` as the registry does and compare its needs plus a TinyOL head with ``profile``."""
    iri, graph = describe_model_bytes(model, name=task)
    head = OnlineHead(n_features, n_outputs, "classification").memory_footprint().total
    return FitReport(
        task=task,
        device=profile.name,
        flash_bytes=_integer(graph, iri, TF.modelSizeBytes),
        arena_bytes=_integer(graph, iri, TF.tensorArenaBytes),
        head_ram_bytes=head,
        usable_flash_bytes=profile.usable_flash_bytes,
        usable_ram_bytes=profile.usable_ram_bytes,
    )


def task_fit(model: TaskModel, n_outputs: int | None = None, profile: DeviceProfile = NANO_33_BLE_SENSE) -> FitReport:
    """:func:`fit_report` of a task model with its head (``n_outputs`` defaults to the initial head's)."""
    return fit_report(model.int8_model, model.n_features, n_outputs or model.n_outputs, model.task, profile)


HEAD_UPDATE_BUDGET = 0.15
"""Issue 5's bar: a TinyOL head step may cost at most 15 % on top of one backbone inference."""


@dataclass(frozen=True)
class DeviceUpdateCost:
    """A head step against a backbone inference on a device profile, from MAC counts and its cycles per MAC.

    ``backbone_int8_macs`` come from the registry's reading of the .tflite
    file (every layer, as :func:`ontology.tflite_facts.read_facts` counts
    them); ``head_update_float_macs`` from
    :meth:`edge.online_head.OnlineHead.compute_cost` (forward + rank-1
    update; the softmax and bias are not counted). Inference is the backbone
    alone, so the head's own forward pass is charged to the update.
    """

    device: str
    backbone_int8_macs: int
    head_update_float_macs: int
    inference_seconds: float
    head_update_seconds: float

    @property
    def overhead(self) -> float:
        return self.head_update_seconds / self.inference_seconds

    @property
    def within_budget(self) -> bool:
        return self.overhead <= HEAD_UPDATE_BUDGET

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "backbone_int8_macs": self.backbone_int8_macs,
            "head_update_float_macs": self.head_update_float_macs,
            "inference_s": self.inference_seconds,
            "head_update_s": self.head_update_seconds,
            "head_update_over_inference": self.overhead,
            "within_15_percent": self.within_budget,
        }


def device_update_cost(
    model: TaskModel, n_outputs: int | None = None, profile: DeviceProfile = NANO_33_BLE_SENSE
) -> DeviceUpdateCost:
    """What one head SGD step costs on ``profile`` next to one int8 backbone inference (``n_outputs`` defaults
    to the initial head's)."""
    from ontology.tflite_facts import read_facts

    macs = read_facts(model.int8_model).macs
    head = OnlineHead(model.n_features, n_outputs or model.n_outputs, "classification").compute_cost()
    return DeviceUpdateCost(
        device=profile.name,
        backbone_int8_macs=macs,
        head_update_float_macs=head.training_float_macs,
        inference_seconds=profile.compute_seconds(int8_macs=macs),
        head_update_seconds=profile.compute_seconds(float_macs=head.training_float_macs),
    )
