"""How a federation uses the semantic registry: who may join, and what each round produced.

Before training, the server asks the registry (SPARQL, the shipped
``eligible-devices`` query) which registered devices can train the model on
the task: enough RAM for on-device training, enough flash, the runtime, the
sensors, and a registration that has not expired. Only those devices take
part. After every round it registers the new meta-model version with PROV-O
provenance: the round that generated it (and its participants), the version
it derives from, and the round's metrics, so ``model-lineage`` can trace any
version back to the initialisation.

Participants are read by the round loop (:func:`server.core.round_loop.participants_of`)
from the replies a round aggregated, whichever way they came: an MQTT reply
names its device (from the broker-authenticated topic), a Flower-path reply its
simulated device's seed. :class:`RunVersions`, an observer of the round loop,
is the one path that registers versions, for every transport.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdflib import RDF, RDFS, BNode, Graph, Literal, URIRef
from rdflib.namespace import PROV, XSD

from edge.profiles import DeviceProfile
from ontology.describe_model import describe_model_file
from ontology.directory import Directory
from ontology.named_queries import run_named_query
from ontology.store import RegistryStore
from ontology.thing_description import device_iri, thing_description
from ontology.vocab import RESOURCE_BASE, SCHEMA, TF
from server.core.round_loop import PARTICIPANT_DEVICES, RoundReport, numeric_metrics, participants_of  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

#: Key of a round's participants (device IRIs, :func:`participants_of`) in the metrics that
#: :func:`server.core.federation.run_federation` hands its ``on_round`` callback. Present only for a round
#: whose aggregation produced a new θ.
_FEDERATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass
class FederationRecord:
    """What the registry now knows of one federation (the demo reports it)."""

    federation: str
    model: str
    task: str
    selected_devices: list[str] = field(default_factory=list)
    excluded_devices: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)


def weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    """A content hash of a weight set, so a registered version names exactly one model."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()


class FederationRegistry:
    """One federation's view of a registry store (the store is opened and closed by the caller)."""

    def __init__(self, store: RegistryStore, federation_id: str) -> None:
        self.store = store
        self.directory = Directory(store)
        self.federation_id = federation_id
        self.federation = f"{RESOURCE_BASE}federation/{federation_id}"

    # -- what is known before training -------------------------------------------------

    def register_devices(self, devices: Iterable[tuple[str, DeviceProfile]], ttl_s: float) -> None:
        """Register each device's W3C WoT Thing Description with a lease of ``ttl_s`` seconds."""
        for device_id, profile in devices:
            td = thing_description(profile, device_id)
            td["registration"] = {"ttl": ttl_s}
            self.directory.put(device_iri(device_id), td)

    def register_task(self, task_id: str, label: str, required_sensor_types: Iterable[URIRef] = ()) -> str:
        task = f"{RESOURCE_BASE}task/{task_id}"
        graph = Graph()
        graph.add((URIRef(task), RDF.type, TF.Task))
        graph.add((URIRef(task), RDFS.label, Literal(label)))
        for sensor_type in required_sensor_types:
            graph.add((URIRef(task), TF.requiresSensorType, sensor_type))
        self.store.put_graph(task, graph)
        return task

    def register_trainable_model(self, tflite: Path, task: str, training_ram_bytes: int, method: str) -> str:
        """Describe the model from its flatbuffer, plus how it trains on the device and the RAM that needs.

        The describer's own training estimate is for a TinyOL head; a whole-model
        TFLite training graph needs what its learner measured, so that is stated.
        """
        iri, graph = describe_model_file(tflite, task=task)
        training = BNode()
        graph.add((iri, TF.hasOnDeviceTraining, training))
        graph.add((training, RDF.type, TF.OnDeviceTraining))
        graph.add((training, TF.trainingMethod, Literal(method)))
        graph.add((training, TF.trainingRamBytes, Literal(int(training_ram_bytes), datatype=XSD.integer)))
        for layer in graph.objects(iri, TF.hasLayer):
            graph.add((training, TF.trainsLayer, layer))
        self.store.put_graph(str(iri), graph)
        return str(iri)

    def link_federation(self, model: str, task: str) -> None:
        """Declare this federation: it trains ``model`` on ``task``."""
        federation = Graph()
        federation.add((URIRef(self.federation), RDF.type, TF.Federation))
        federation.add((URIRef(self.federation), TF.trainsModel, URIRef(model)))
        federation.add((URIRef(self.federation), TF.forTask, URIRef(task)))
        self.store.put_graph(self.federation, federation)

    def eligible_devices(self, model: str, task: str) -> list[str]:
        """Device IRIs the ``eligible-devices`` query returns for this model and task."""
        result = run_named_query(self.store, "eligible-devices", {"model": model, "task": task})
        column = result.variables.index("device")
        return sorted({str(row[column]) for row in result.rows})

    # -- what each round produced -------------------------------------------------------

    def version_iri(self, number: int) -> str:
        return f"{self.federation}/version/{number}"

    def register_version(
        self,
        number: int,
        model: str,
        weights: Mapping[str, np.ndarray],
        participants: Iterable[str] = (),
        metrics: Mapping[str, float] | None = None,
    ) -> str:
        """Version ``number`` of ``model``: generated by round ``number`` from version ``number - 1``."""
        version = URIRef(self.version_iri(number))
        graph = Graph()
        graph.add((version, RDF.type, TF.ModelVersion))
        graph.add((version, TF.versionOf, URIRef(model)))
        graph.add((version, TF.versionNumber, Literal(number, datatype=XSD.integer)))
        graph.add((version, SCHEMA.identifier, Literal(f"sha256:{weights_digest(weights)}")))
        if number > 0:
            round_node = URIRef(f"{self.federation}/round/{number}")
            graph.add((round_node, RDF.type, TF.FederationRound))
            graph.add((round_node, TF.partOfFederation, URIRef(self.federation)))
            graph.add((round_node, TF.roundNumber, Literal(number, datatype=XSD.integer)))
            graph.add((round_node, PROV.used, URIRef(self.version_iri(number - 1))))
            for device in participants:
                graph.add((round_node, TF.participant, URIRef(device)))
            graph.add((version, PROV.wasGeneratedBy, round_node))
            graph.add((version, PROV.wasDerivedFrom, URIRef(self.version_iri(number - 1))))
        for name, value in sorted((metrics or {}).items()):
            if isinstance(value, float) and np.isfinite(value):
                metric = BNode()
                graph.add((version, TF.hasMetric, metric))
                graph.add((metric, RDF.type, TF.Metric))
                graph.add((metric, TF.metricName, Literal(name)))
                graph.add((metric, TF.metricValue, Literal(value, datatype=XSD.double)))
        self.store.put_graph(str(version), graph)
        return str(version)

    def lineage(self, version: str, newest: int | None = None) -> list[dict[str, str]]:
        """The ``model-lineage`` rows of ``version``, newest first; with ``newest``, only the first ``newest``.

        Why ``newest``: the named query walks the whole chain, and for a 1,000-round federation that took
        seconds of CPU (and timed out on a loaded machine) when the demo reads three rows. The bounded form
        is the same query with its ``wasDerivedFrom*`` path cut at ``newest - 1`` steps (:func:`bounded_lineage`).
        """
        if newest is None:
            result = run_named_query(self.store, "model-lineage", {"version": version})
        else:
            result = self.store.query(bounded_lineage(newest), {"version": URIRef(version)}, isolate=False, self_contained=True)
        return [
            {name: ("" if value is None else str(value)) for name, value in zip(result.variables, row)}
            for row in result.rows
        ]


class RunVersions:
    """Registers the versions a :func:`server.core.federation.run_federation` run reports through ``on_round``.

    The one registration path for every transport: an observer of the round loop
    (:mod:`server.core.round_loop`), told each round after its checkpoint is written. Version ``r`` is what round ``r`` aggregated, with the devices whose
    replies made it (:data:`PARTICIPANT_DEVICES`) and the round's numeric metrics. A round that
    aggregated nothing (no usable reply) registers nothing. The θ a
    fresh run starts from (``initial``, version 0) is registered with the first round's version, so a
    run that never got to train (no broker, no devices) leaves nothing in the registry.
    """

    def __init__(self, registry: FederationRegistry, model: str, initial: Mapping[str, np.ndarray] | None = None) -> None:
        self.registry = registry
        self.model = model
        self.initial = initial
        self.versions: list[str] = []

    def __call__(self, report: RoundReport) -> None:
        """Observe one round of the round loop."""
        self.on_round(report.server_round, report.weights, report.as_metrics())

    def on_round(self, server_round: int, weights: Mapping[str, np.ndarray], metrics: Mapping[str, object]) -> None:
        if PARTICIPANT_DEVICES not in metrics:
            return
        if self.initial is not None:
            self.versions.append(self.registry.register_version(0, self.model, self.initial))
            self.initial = None
        participants = [str(device) for device in metrics[PARTICIPANT_DEVICES]]  # type: ignore[attr-defined]
        self.versions.append(
            self.registry.register_version(server_round, self.model, weights, participants, numeric_metrics(metrics))
        )


def open_run_versions(
    store: RegistryStore,
    federation_id: str,
    model_name: str,
    start_round: int,
    initial: Mapping[str, np.ndarray],
    *,
    describe: Callable[[FederationRegistry, str], str] | None = None,
) -> RunVersions:
    """Declare a server's federation in the registry and what registers its versions; refuse clashes.

    The model is named ``model/<model_name>`` and the task ``task/sine`` (the demo's task), unless
    ``describe(registry, task)`` registers the model's description and returns its IRI: then every version
    registered is a version of a model the store describes. A fresh run
    (``start_round`` 0) registers ``initial`` as version 0 and is refused if the federation already has one, so
    versions of an earlier run are never overwritten; a resumed run continues the federation's versions
    (if the registry lacks the version it resumes from, that is logged and the lineage stops there).
    """
    if not _FEDERATION_ID.fullmatch(federation_id):
        raise ValueError(f"federation id {federation_id!r}: use letters, digits, '.', '_' or '-' (at most 100)")
    registry = FederationRegistry(store, federation_id)
    model = f"{RESOURCE_BASE}model/{model_name}"
    first = URIRef(registry.version_iri(start_round))
    exists = store.query("ASK { ?v ?p ?o }", {"v": first}).boolean
    if start_round == 0 and exists:
        raise ValueError(
            f"the registry already holds version 0 of federation {federation_id!r} (from an earlier run); "
            "give another federation id or registry, or resume that run from its checkpoint"
        )
    from server.registry.registry_selection import SINE_TASK

    task = registry.register_task(*SINE_TASK)
    if describe is not None:
        model = describe(registry, task)
    registry.link_federation(model, task)
    versions = RunVersions(registry, model, initial if start_round == 0 else None)
    if start_round > 0 and not exists:
        log.warning("resuming at round %d, but the registry has no version %d of federation %r: "
                    "the lineage of the versions registered now will stop there", start_round, start_round, federation_id)
    return versions


_LINEAGE_PATH = "?version prov:wasDerivedFrom* ?ancestor ."


def bounded_lineage(newest: int) -> str:
    """The shipped ``model-lineage`` query, tracing only ``version`` and its ``newest - 1`` nearest ancestors.

    Derived from the named query's text (its one home) by replacing the unbounded path with a union of
    fixed-length ones, so the columns, grouping and order stay the named query's.
    """
    from ontology.named_queries import get_named_query

    if newest < 1:
        raise ValueError("a lineage has at least the version itself")
    text = get_named_query("model-lineage").text
    if text.count(_LINEAGE_PATH) != 1:
        raise RuntimeError(f"model-lineage no longer traces {_LINEAGE_PATH!r}; update bounded_lineage")
    steps = ["{ ?version a tf:ModelVersion . BIND(?version AS ?ancestor) }"]
    steps += ["{ ?version " + "/".join(["prov:wasDerivedFrom"] * depth) + " ?ancestor }" for depth in range(1, newest)]
    return text.replace(_LINEAGE_PATH, " UNION ".join(steps))


def wait_until_expired(registered_at: float, ttl_s: float) -> None:
    """Leases count whole seconds (rounded up); sleep until a lease taken at ``registered_at`` has lapsed."""
    remaining = registered_at + ttl_s + 1.05 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
