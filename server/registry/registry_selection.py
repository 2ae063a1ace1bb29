"""Which MQTT devices may join a federation: their announced Thing Descriptions, asked of the registry.

Every device announces its W3C WoT Thing Description (retained, ``.../announce``).
With a registry, ``tinyfleet server --local-broker/--mqtt --registry DIR`` registers
each one through the registry's own validation (:class:`ontology.directory.Directory`:
the TD's JSON structure, its id = the announcing device, the SHACL shapes), describes
the model it trains from its TFLite training flatbuffer and the RAM that training
needs (as ``make demo`` does), and offers each round only the online, announced
devices the shipped ``eligible-devices`` query returns for that model and task.
A refused TD is logged with the registry's reasons and leaves its device
ineligible; the server keeps running.

Why a queue: paho calls :meth:`AnnouncedSelection.announced` on its network
thread, while pyoxigraph answers must be read (and dropped) on the thread that
asked (:mod:`ontology.store`). So the callback only keeps the newest TD of each
device, and the thread that runs the rounds registers them when it next asks
the grid for node ids (:meth:`AnnouncedSelection.__call__`, the grid's
``device_filter``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rdflib import URIRef

from ontology.directory import ThingRejected
from ontology.thing_description import device_iri

if TYPE_CHECKING:
    import numpy as np

    from server.registry.registry_link import FederationRegistry

log = logging.getLogger(__name__)

TRAINING_METHOD = "whole-model SGD (TFLite training signatures)"
#: The sine task as the registry names it: (id under task/, label). The one place it is named.
SINE_TASK = ("sine", "sine-wave regression")


def sine_model_name(layer_sizes: Sequence[int]) -> str:
    """The registry name (and file stem) of the sine MLP's training model, e.g. ``sine-mlp-1-40-40-1-train``."""
    return "sine-mlp-" + "-".join(str(n) for n in layer_sizes) + "-train"

# What a model needs and what each device offers, as exclusion_reason compares them (the console reads the same).
MODEL_NEEDS = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?model ?runtime ?size ?training_ram WHERE {
  ?model tf:runtime ?runtime ; tf:modelSizeBytes ?size ; tf:hasOnDeviceTraining ?training .
  ?training tf:trainingRamBytes ?training_ram .
}"""
DEVICE_OFFERS = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?device ?runtime ?ram ?flash WHERE {
  ?device tf:hasCapability ?cap .
  ?cap tf:capabilityRuntime ?runtime ; tf:capabilityRamBytes ?ram ; tf:capabilityFlashBytes ?flash .
}"""


class AnnouncedSelection:
    """The grid's hooks: ``announced`` (network thread, queues) and the device filter (round thread)."""

    def __init__(self, registry: FederationRegistry, model: str, task: str, say: Callable[[str], None] | None = None) -> None:
        self.registry = registry
        self.model = model
        self.task = task
        self.say = say or log.info
        self._lock = threading.Lock()
        self._pending: dict[str, dict | None] = {}  # device id -> newest announced TD, not yet registered
        self.registered: set[str] = set()  # devices whose current TD the registry accepted (this run)
        self.refused: dict[str, str] = {}  # device id -> why the registry refused its current TD
        self.excluded: dict[str, str] = {}  # device id -> why it was last left out
        self._registered_td: dict[str, str] = {}  # device id -> its registered TD, canonical JSON
        self._needs = self._model_needs()

    # -- paho's network thread: take note only -------------------------------------------

    def announced(self, device_id: str, td: dict | None) -> None:
        with self._lock:
            self._pending[device_id] = td

    # -- the thread that runs the rounds ------------------------------------------------

    def register_pending(self) -> None:
        """Register every TD announced since the last call (the newest per device)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for device_id, td in sorted(pending.items(), key=lambda item: item[0]):
            canonical = json.dumps(td, sort_keys=True) if td is not None else None
            if canonical is not None and device_id in self.registered and self._registered_td.get(device_id) == canonical:
                continue  # the same TD again (retained, re-delivered after a broker restart): it is registered already
            self.registered.discard(device_id)
            self._registered_td.pop(device_id, None)
            self.refused.pop(device_id, None)
            self.excluded.pop(device_id, None)  # say again why, if it is still left out
            if td is None:
                continue
            try:
                self.registry.directory.put(device_iri(device_id), td)
            except (ThingRejected, ValueError) as exc:
                reason = "; ".join(exc.problems[:3]) if isinstance(exc, ThingRejected) and exc.problems else str(exc)
                summary = exc.summary if isinstance(exc, ThingRejected) else "not registrable"
                self.refused[device_id] = f"Thing Description refused ({summary}: {reason})"
                log.warning("registry refused the Thing Description %s announced: %s", device_id, exc)
            else:
                self.registered.add(device_id)
                self._registered_td[device_id] = canonical  # type: ignore[assignment]

    def __call__(self, device_ids: Sequence[str]) -> list[str]:
        """The devices among ``device_ids`` that ``eligible-devices`` returns; says once why each other is out."""
        self.register_pending()
        eligible = set(self.registry.eligible_devices(self.model, self.task))
        chosen = []
        for device_id in device_ids:
            if device_id in self.registered and device_iri(device_id) in eligible:
                chosen.append(device_id)
                self.excluded.pop(device_id, None)
                continue
            reason = self.refused.get(device_id) or self._why_not(device_id)
            if self.excluded.get(device_id) != reason:
                self.excluded[device_id] = reason
                self.say(f"device {device_id} excluded: {reason}")
        return chosen

    def _model_needs(self) -> tuple[set[str], int, int]:
        rows = self.registry.store.query(MODEL_NEEDS, {"model": URIRef(self.model)}).rows
        if not rows:
            raise ValueError(f"the registry has no on-device training description of {self.model}")
        return {str(r[1]) for r in rows}, max(int(r[2]) for r in rows), max(int(r[3]) for r in rows)

    def _why_not(self, device_id: str) -> str:
        """What the registry knows that keeps a registered device out of ``eligible-devices``."""
        if device_id not in self.registered:
            return "no Thing Description registered"
        rows = self.registry.store.query(DEVICE_OFFERS, {"device": URIRef(device_iri(device_id))}).rows
        offer = ({str(r[1]) for r in rows}, int(rows[0][2]), int(rows[0][3])) if rows else None
        return exclusion_reason(offer, self._needs)


def exclusion_reason(offer: tuple[set[str], int, int] | None, needs: tuple[set[str], int, int] | None) -> str:
    """Why ``eligible-devices`` leaves a registered device out, from its offer (runtimes, RAM, flash) and the model's
    needs (runtimes, size, training RAM): the one wording the server's selection and the console both show."""
    if offer is None:
        return "not eligible (the registry derived no capability for it)"
    if needs is None:
        return "not eligible (the registry has no on-device training description of the model)"
    offered, ram, flash = offer
    runtimes, size, training_ram = needs
    problems = []
    if ram < training_ram:
        problems.append(f"usable RAM {ram:,} B < {training_ram:,} B to train the model")
    if flash < size:
        problems.append(f"usable flash {flash:,} B < model size {size:,} B")
    if not offered & runtimes:
        problems.append(f"runtime {', '.join(sorted(offered))} is not the model's {', '.join(sorted(runtimes))}")
    return "; ".join(problems) or "not eligible (a sensor the task needs, or its registration lapsed)"


def describe_training_model(
    registry: FederationRegistry, task: str, layer_sizes: Sequence[int], weights: dict[str, np.ndarray], path: Path
) -> str:
    """Export the sine MLP's TFLite training model to ``path``; register its description; its IRI.

    What ``make demo`` and the MQTT server both do: the description comes from the flatbuffer (named after
    the file's stem), and its on-device training needs the RAM the TFLite trainer measures
    (:meth:`edge.tflite_learner.TFLiteTrainer.memory_footprint`).
    """
    from edge.tflite_learner import TFLiteTrainer
    from server.models.sine_mlp import export_training_model

    path.parent.mkdir(parents=True, exist_ok=True)
    model_file = export_training_model(path, tuple(layer_sizes), weights)
    ram = TFLiteTrainer(model_file).memory_footprint().total
    return registry.register_trainable_model(model_file, task, ram, TRAINING_METHOD)


def open_selection(
    registry: FederationRegistry,
    layer_sizes: Sequence[int],
    weights: dict[str, np.ndarray],
    directory: Path,
    say: Callable[[str], None] | None = None,
) -> AnnouncedSelection:
    """Describe the task (``task/sine``) and the trained model in the registry; the grid hooks that select by them."""
    task = registry.register_task(*SINE_TASK)
    name = sine_model_name(layer_sizes)
    model = describe_training_model(registry, task, layer_sizes, weights, directory / f"{name}.tflite")
    return AnnouncedSelection(registry, model, task, say)
