"""Derived capability facts, materialised when descriptions are written, so matchmaking is index lookups.

Why: the matchmaking questions compare a device's RAM, flash, runtime and
sensor kinds with a model's needs. Asked over the raw descriptions, Oxigraph
follows device -> microcontroller -> RAM and device -> sensor -> rdf:type for
every device (each step is a RocksDB seek, ~5 us), and a nested ``FILTER NOT
EXISTS`` per candidate; at 100,000 devices that is seconds per question.

What is added (terms documented in ``tinyfleet.ttl``):

* in the device's own named graph: ``tf:hasSensorKind K`` for every class K of
  each ``tf:hasSensor`` value, and ``tf:hasCapability C``;
* in :data:`~ontology.vocab.CAPABILITY_GRAPH`: the capability node C with
  ``tf:capabilityRuntime``, ``tf:capabilityRamBytes``, ``tf:capabilityFlashBytes``
  and ``tf:capabilitySensorKind``. C's IRI is a hash of exactly those facts,
  so all devices that agree share one node: a fleet of 100,000 devices of a
  handful of board types has a few thousand nodes, and "which devices can
  train this model" filters those, then reads the devices of the survivors
  from the (object-indexed) ``tf:hasCapability`` triples.

The device facts live in the device's graph, so re-registering or deleting a
device replaces or removes them in the same transaction. Capability nodes are
immutable (content-addressed): a write only ever adds one, and
:meth:`~ontology.store.RegistryStore.prune_capabilities` drops the ones no
device links to any more. Writes that bypass ``put_graph`` (raw SPARQL
updates, bulk loads) are followed by a full :func:`derive_all`.

A device gets a capability only if it has exactly one microcontroller with
``tf:ramBytes`` and ``tf:flashBytes`` and at least one runtime -- the facts the
original path queries needed to match it at all.

Leases (why: checking ``tf:registrationExpires`` of every candidate device is
one RocksDB seek each, ~12 us; "devices eligible for a task" returns thousands):
each device with a capability also gets ``tf:hasLease L``, a shared node for
(its capability, the *hour* its registration expires in), with
``tf:leaseCapability``, ``tf:leaseBucketStart`` and ``tf:leaseBucketEnd``
(``xsd:dateTime``, UTC, end exclusive). A query reads the few lease nodes of the
matching capabilities and decides per *bucket*: end <= NOW() -> every device in
it has lapsed; start > NOW() -> every one is live; only the bucket holding
NOW() checks each device's own ``tf:registrationExpires``. A device without an
expiry gets a lease node without bucket (always live); one whose expiry is not
a timezone-aware ``xsd:dateTime`` gets an always-checked bucket, so the answer
is exactly what the per-device check would give.

Model requirements (why: "models that fit a device" otherwise scans the size
facts of every model): every subject with ``tf:tensorArenaBytes`` (a model, by
the property's domain) gets ``tf:matchRequirement R``, a shared node for its
runtimes and tasks (``tf:requirementRuntime``, ``tf:requirementTask``). A fleet
of 10,000 models for 20 tasks has ~40; the query keeps the ones the device's
capability satisfies (runtime, the tasks' sensor kinds, read at query time so a
task's requirements may change without re-deriving) and only reads the sizes of
their models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from datetime import UTC, datetime, timedelta

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF, XSD

from ontology.vocab import CAPABILITY_GRAPH, RESOURCE_BASE, TF

CAPABILITY_BASE = RESOURCE_BASE + "capability/"
LEASE_BASE = RESOURCE_BASE + "lease/"
RESOURCES_BASE = RESOURCE_BASE + "resources/"
OFFER_BASE = RESOURCE_BASE + "offer/"
REQUIREMENT_BASE = RESOURCE_BASE + "requirement/"
SENSOR_SET_BASE = RESOURCE_BASE + "sensor-set/"
#: Largest sensor-kind set a capability is linked to (all its subsets up to this size); a task needing more
#: kinds than this matches no device (validation refuses such tasks, see ontology/validation.py).
MAX_SET_KINDS = 4
#: Width of a lease bucket: devices whose registrations lapse in the same hour share a lease node.
LEASE_BUCKET = timedelta(hours=1)
#: Bounds of the always-checked bucket (an expiry the registry cannot place in an hour).
CHECK_ALWAYS = (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
#: Bucket of registrations that never lapse: it starts after any NOW() the registry will see.
NEVER = (datetime(9999, 12, 31, 23, 0, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
#: Version of the derived facts' design. A store whose capability graph carries another (or none, i.e.
#: written before leases, offers and requirement nodes existed) is re-derived when opened.
DERIVATION_VERSION = 2
#: The predicates this module writes into device, model and task graphs (removed before re-deriving).
DEVICE_PREDICATES = (TF.hasSensorKind, TF.hasCapability, TF.hasLease, TF.matchRequirement, TF.requiresSensorSet)


def sensor_set(kinds: Iterable[str]) -> str:
    """IRI of the shared node for exactly this set of sensor kinds (the empty set included)."""
    return _hash(SENSOR_SET_BASE, *sorted(set(kinds)))


def sensor_set_triples(kinds: Iterable[str]) -> Iterable[tuple[URIRef, URIRef, URIRef]]:
    """The triples describing a sensor-set node (for CAPABILITY_GRAPH)."""
    kinds = sorted(set(kinds))
    node = URIRef(sensor_set(kinds))
    yield node, RDF.type, TF.SensorSet
    for kind in kinds:
        yield node, TF.setSensorKind, URIRef(kind)


def covered_sets(kinds: Iterable[str]) -> list[tuple[str, ...]]:
    """Every subset of ``kinds`` with at most MAX_SET_KINDS members: the sets a device with these kinds satisfies."""
    ordered = sorted(set(kinds))
    return [combo for size in range(min(len(ordered), MAX_SET_KINDS) + 1) for combo in combinations(ordered, size)]


def _hash(base: str, *parts: str) -> str:
    return base + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def lease_bucket(expiries: Iterable[object]) -> tuple[datetime, datetime] | None:
    """The lease bucket [start, end) of a device with these ``tf:registrationExpires`` values; None: no expiry.

    The SPARQL test is "some value > NOW()", i.e. the latest value decides. A value that is not a
    timezone-aware dateTime (compared with NOW() it may be an error rather than false) puts the device in
    the always-checked bucket, where the query applies that exact test per device.
    """
    values = list(expiries)
    if not values:
        return None
    moments = []
    for value in values:
        moment = value.toPython() if isinstance(value, Literal) and value.datatype == XSD.dateTime else None
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            return CHECK_ALWAYS
        moments.append(moment.astimezone(UTC))
    latest = max(moments)
    start = latest.replace(minute=0, second=0, microsecond=0)
    return start, start + LEASE_BUCKET


@dataclass(frozen=True)
class DeviceFacts:
    """What matchmaking needs to know about one device."""

    device: str
    runtimes: tuple[str, ...]
    ram: int
    flash: int
    kinds: tuple[str, ...]
    #: [start, end) of the hour its registration lapses in (UTC); None if it never does.
    lease: tuple[datetime, datetime] | None = None

    @property
    def capability(self) -> str:
        key = "\n".join([" ".join(self.runtimes), str(self.ram), str(self.flash), " ".join(self.kinds)])
        return CAPABILITY_BASE + hashlib.sha256(key.encode()).hexdigest()[:20]

    @property
    def resources(self) -> str:
        """IRI of the shared resource profile: runtimes, usable RAM and flash (no sensors)."""
        return _hash(RESOURCES_BASE, " ".join(self.runtimes), str(self.ram), str(self.flash))

    def offer(self, kinds: tuple[str, ...]) -> str:
        """IRI of the shared (resource profile, sensor set) pair for one sensor set the device covers."""
        return _hash(OFFER_BASE, self.resources, sensor_set(kinds))

    @property
    def bucket(self) -> tuple[datetime, datetime]:
        """The lease bucket [start, end); registrations that never lapse get NEVER."""
        return NEVER if self.lease is None else self.lease

    @property
    def lease_node(self) -> str:
        """``LEASE_BASE`` + capability hash + ``/START/END`` (canonical UTC xsd:dateTime lexical forms).

        The bucket is spelled in the IRI so a query can read it from the IRI it already holds (``STR``,
        ``STRAFTER``, an ``xsd:dateTime`` cast) instead of one store lookup per lease node; the node also
        carries it as tf:leaseBucketStart / tf:leaseBucketEnd for everyone else.
        """
        start, end = self.bucket
        return f"{LEASE_BASE}{self.capability.rsplit('/', 1)[1]}/{_iso(start)}/{_iso(end)}"


@dataclass(frozen=True)
class ModelFacts:
    """What "models that fit a device" reads before a model's sizes: its runtimes and tasks."""

    model: str
    runtimes: tuple[str, ...]
    tasks: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return _hash(REQUIREMENT_BASE, " ".join(self.runtimes), " ".join(self.tasks))


def _int(node: object) -> int | None:
    if isinstance(node, Literal):
        value = node.toPython()
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def device_facts(graph: Graph) -> list[DeviceFacts]:
    """The matchmaking facts of every tf:Device in ``graph`` that has them (see module doc)."""
    out = []
    for device in sorted(set(graph.subjects(RDF.type, TF.Device)), key=str):
        mcus = list(graph.objects(device, TF.hasMicrocontroller))
        runtimes = tuple(sorted({str(r) for r in graph.objects(device, TF.supportsRuntime) if isinstance(r, URIRef)}))
        if len(mcus) != 1 or not runtimes or not isinstance(device, URIRef):
            continue
        rams = [_int(v) for v in graph.objects(mcus[0], TF.ramBytes)]
        flashes = [_int(v) for v in graph.objects(mcus[0], TF.flashBytes)]
        if len(rams) != 1 or len(flashes) != 1 or rams[0] is None or flashes[0] is None:
            continue
        kinds = tuple(sorted({str(k) for s in graph.objects(device, TF.hasSensor) for k in graph.objects(s, RDF.type) if isinstance(k, URIRef)}))
        lease = lease_bucket(graph.objects(device, TF.registrationExpires))
        out.append(DeviceFacts(str(device), runtimes, rams[0], flashes[0], kinds, lease))
    return out


def model_facts(graph: Graph) -> list[ModelFacts]:
    """The requirement facts of every subject in ``graph`` with a tensor arena and a runtime."""
    out = []
    for model in sorted({s for s in graph.subjects(TF.tensorArenaBytes, None) if isinstance(s, URIRef)}, key=str):
        runtimes = tuple(sorted({str(r) for r in graph.objects(model, TF.runtime) if isinstance(r, URIRef)}))
        tasks = tuple(sorted({str(t) for t in graph.objects(model, TF.forTask) if isinstance(t, URIRef)}))
        if runtimes:  # without a runtime no device can run it: the query never matched such a model
            out.append(ModelFacts(str(model), runtimes, tasks))
    return out


def device_triples(facts: DeviceFacts) -> Iterable[tuple[URIRef, URIRef, URIRef]]:
    """The derived triples that go into the device's own graph."""
    device = URIRef(facts.device)
    yield device, TF.hasCapability, URIRef(facts.capability)
    yield device, TF.hasLease, URIRef(facts.lease_node)
    for kind in facts.kinds:
        yield device, TF.hasSensorKind, URIRef(kind)


def capability_triples(facts: DeviceFacts) -> Iterable[tuple[URIRef, URIRef, URIRef | Literal]]:
    """The triples of the device's capability and lease nodes (for CAPABILITY_GRAPH)."""
    cap = URIRef(facts.capability)
    yield cap, RDF.type, TF.Capability
    for runtime in facts.runtimes:
        yield cap, TF.capabilityRuntime, URIRef(runtime)
    yield cap, TF.capabilityRamBytes, Literal(facts.ram, datatype=XSD.integer)
    yield cap, TF.capabilityFlashBytes, Literal(facts.flash, datatype=XSD.integer)
    for kind in facts.kinds:
        yield cap, TF.capabilitySensorKind, URIRef(kind)
    resources = URIRef(facts.resources)
    yield cap, TF.capabilityResources, resources
    yield resources, RDF.type, TF.ResourceProfile
    for runtime in facts.runtimes:
        yield resources, TF.resourceRuntime, URIRef(runtime)
    yield resources, TF.resourceRamBytes, Literal(facts.ram, datatype=XSD.integer)
    yield resources, TF.resourceFlashBytes, Literal(facts.flash, datatype=XSD.integer)
    for kinds in covered_sets(facts.kinds):
        kind_set, offer = URIRef(sensor_set(kinds)), URIRef(facts.offer(kinds))
        yield cap, TF.capabilitySensorSet, kind_set
        yield cap, TF.capabilityOffer, offer
        yield offer, RDF.type, TF.Offer
        yield offer, TF.offerResources, resources
        yield offer, TF.offerSensorSet, kind_set
    yield from lease_triples(facts)


def lease_triples(facts: DeviceFacts) -> Iterable[tuple[URIRef, URIRef, URIRef | Literal]]:
    """The triples of the device's lease node (for CAPABILITY_GRAPH)."""
    lease = URIRef(facts.lease_node)
    yield lease, RDF.type, TF.Lease
    yield lease, TF.leaseCapability, URIRef(facts.capability)
    start, end = facts.bucket
    yield lease, TF.leaseBucketStart, Literal(_iso(start), datatype=XSD.dateTime)
    yield lease, TF.leaseBucketEnd, Literal(_iso(end), datatype=XSD.dateTime)


def _iso(moment: datetime) -> str:
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%SZ")


def model_triples(facts: ModelFacts) -> Iterable[tuple[URIRef, URIRef, URIRef]]:
    """The derived triple that goes into the model's own graph."""
    yield URIRef(facts.model), TF.matchRequirement, URIRef(facts.requirement)


def requirement_kinds(facts: ModelFacts, task_kinds: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """Every sensor kind the model's tasks need (a task the registry does not describe needs none)."""
    return tuple(sorted({k for task in facts.tasks for k in task_kinds.get(task, ())}))


def requirement_triples(facts: ModelFacts, task_kinds: Mapping[str, Iterable[str]]) -> Iterable[tuple[URIRef, URIRef, URIRef]]:
    """The triples of the model's requirement node (for CAPABILITY_GRAPH), its sensor set from ``task_kinds``."""
    req = URIRef(facts.requirement)
    yield req, RDF.type, TF.Requirement
    for runtime in facts.runtimes:
        yield req, TF.requirementRuntime, URIRef(runtime)
    for task in facts.tasks:
        yield req, TF.requirementTask, URIRef(task)
    yield req, TF.requirementSensorSet, URIRef(sensor_set(requirement_kinds(facts, task_kinds)))


def task_kinds_in(graph: Graph) -> dict[str, tuple[str, ...]]:
    """Sensor kinds needed by every task described in ``graph`` (typed tf:Task or with tf:requiresSensorType)."""
    tasks = {t for t in graph.subjects(RDF.type, TF.Task)} | {t for t in graph.subjects(TF.requiresSensorType, None)}
    return {str(t): tuple(sorted({str(k) for k in graph.objects(t, TF.requiresSensorType) if isinstance(k, URIRef)}))
            for t in tasks if isinstance(t, URIRef)}


def with_derived(
    graph: Graph,
    task_kinds: Callable[[set[str]], Mapping[str, Iterable[str]]] | None = None,
    known: Callable[[set[str]], set[str]] | None = None,
) -> tuple[Graph, Graph]:
    """(``graph`` plus its devices', models' and tasks' derived facts, the triples to add to CAPABILITY_GRAPH).

    ``task_kinds`` looks up the sensor kinds of tasks that ``graph`` does not describe (the store's
    current descriptions); without it such tasks count as needing no sensor. ``graph`` is not modified;
    derived triples it already carries are recomputed, not trusted.

    ``known`` says which of the given shared node IRIs the store already holds; their triples are left
    out of the second graph. Why: Oxigraph writes every inserted quad to its write log even when the quad
    is already stored, and a 10-sensor board's capability closure is ~3,600 triples (~2 MB of log) that
    every other board of its kind would write again. The shared nodes are content-addressed and pruned
    only as a whole with what they link to (:func:`prune_update`), so a stored capability node implies
    its resource profile, offers and covered sensor sets; a lease, requirement or sensor-set node is
    looked up on its own. A stored requirement node's sensor set is kept current by
    :meth:`~ontology.store.RegistryStore.refresh_requirements`.
    """
    out = Graph()
    for triple in graph:
        if triple[1] not in DEVICE_PREDICATES:
            out.add(triple)
    devices = device_facts(out)
    local_tasks = task_kinds_in(out)
    models = model_facts(out)
    wanted = {t for m in models for t in m.tasks} - set(local_tasks)
    kinds_of = {**(task_kinds(wanted) if task_kinds and wanted else {}), **local_tasks}
    candidates = {n for f in devices for n in (f.capability, f.lease_node)} | {m.requirement for m in models}
    candidates |= {sensor_set(kinds) for kinds in local_tasks.values()}
    candidates |= {sensor_set(requirement_kinds(m, kinds_of)) for m in models}
    stored = known(candidates) if known is not None and candidates else set()
    shared = Graph()
    sets: set[tuple[str, ...]] = set()
    for facts in devices:
        for triple in device_triples(facts):
            out.add(triple)
        if facts.capability not in stored:
            for triple in capability_triples(facts):
                shared.add(triple)
            sets.update(covered_sets(facts.kinds))
        elif facts.lease_node not in stored:
            for triple in lease_triples(facts):
                shared.add(triple)
    for task, kinds in local_tasks.items():
        out.add((URIRef(task), TF.requiresSensorSet, URIRef(sensor_set(kinds))))
        sets.add(kinds)
    for model in models:
        for triple in model_triples(model):
            out.add(triple)
        if model.requirement not in stored:
            for triple in requirement_triples(model, kinds_of):
                shared.add(triple)
        sets.add(requirement_kinds(model, kinds_of))
    for kinds in sets:
        if sensor_set(kinds) in stored:
            continue
        for triple in sensor_set_triples(kinds):
            shared.add(triple)
    return out, shared


#: All devices' matchmaking facts, one row per (device, runtime, kind, expiry) -- read by derive_all.
FACTS_QUERY = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?g ?device ?mcu ?ram ?flash ?runtime ?kind ?expires WHERE {
  GRAPH ?g {
    ?device a tf:Device ; tf:hasMicrocontroller ?mcu ; tf:supportsRuntime ?runtime .
    ?mcu tf:ramBytes ?ram ; tf:flashBytes ?flash .
    OPTIONAL { ?device tf:hasSensor ?sensor . ?sensor a ?kind }
    OPTIONAL { ?device tf:registrationExpires ?expires }
  }
}"""

#: Every task's sensor kinds, one row per (graph, task, kind) -- read by derive_all and requirement refreshes.
TASK_FACTS_QUERY = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT DISTINCT ?g ?task ?kind WHERE {
  GRAPH ?g { { ?task a tf:Task } UNION { ?task tf:requiresSensorType ?any } OPTIONAL { ?task tf:requiresSensorType ?kind } }
}"""

#: All models' requirement facts, one row per (model, runtime, task) -- read by derive_all.
MODEL_FACTS_QUERY = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT DISTINCT ?g ?model ?runtime ?task WHERE {
  GRAPH ?g {
    ?model tf:tensorArenaBytes ?arena ; tf:runtime ?runtime .
    OPTIONAL { ?model tf:forTask ?task }
  }
}"""

__all__ = ["all_derived_nquads", "CAPABILITY_BASE", "CAPABILITY_GRAPH", "DERIVATION_VERSION", "DEVICE_PREDICATES", "LEASE_BUCKET", "MAX_SET_KINDS", "DeviceFacts",
           "FACTS_QUERY", "MODEL_FACTS_QUERY", "ModelFacts", "TASK_FACTS_QUERY", "capability_triples", "covered_sets",
           "device_facts", "device_triples", "lease_bucket", "lease_triples", "model_facts", "model_triples",
           "requirement_kinds", "requirement_triples", "sensor_set", "sensor_set_triples", "task_kinds_in", "with_derived"]


def prune_update() -> str:
    """The SPARQL update that drops shared derived nodes nothing links to any more.

    In order, one request: capabilities, leases and requirement nodes no description links to;
    offers no capability links to; resource profiles and sensor sets nothing else links to
    (run by :meth:`ontology.store.RegistryStore.prune_capabilities`).
    """
    cap = f"<{CAPABILITY_GRAPH}>"
    tf = "https://w3id.org/tinyfleet#"

    def drop(types: str, unused: str) -> str:  # the link test runs once per node, not once per triple
        return (f"DELETE {{ GRAPH {cap} {{ ?c ?p ?o }} }} WHERE {{\n"
                f"  {{ SELECT ?c WHERE {{ VALUES ?type {{ {types} }} GRAPH {cap} {{ ?c a ?type }} FILTER NOT EXISTS {{ {unused} }} }} }}\n"
                f"  GRAPH {cap} {{ ?c ?p ?o }} }}")

    return " ;\n".join([
        drop(f"<{tf}Capability> <{tf}Lease> <{tf}Requirement>", f"GRAPH ?g {{ ?d ?link ?c }} FILTER(?g != {cap})"),
        drop(f"<{tf}Offer>", f"GRAPH {cap} {{ ?d <{tf}capabilityOffer> ?c }}"),
        drop(f"<{tf}ResourceProfile> <{tf}SensorSet>", "GRAPH ?g { ?d ?link ?c } FILTER(?d != ?c)"),
    ])


def all_derived_nquads(rows: Callable[[str], list[tuple]]) -> tuple[str, int]:
    """(N-Quads of the derived facts of every device, model and task, number of devices), from the answers
    ``rows`` gives to :data:`FACTS_QUERY`, :data:`TASK_FACTS_QUERY` and :data:`MODEL_FACTS_QUERY` over the store
    (what :meth:`~ontology.store.RegistryStore.derive_all` writes)."""
    seen: dict[tuple[object, object], dict[str, set]] = {}
    for g, device, mcu, ram, flash, runtime, kind, expires in rows(FACTS_QUERY):
        entry = seen.setdefault((g, device), {"mcu": set(), "ram": set(), "flash": set(), "runtime": set(), "kind": set(), "expires": set()})
        entry["mcu"].add(mcu)
        entry["ram"].add(ram)
        entry["flash"].add(flash)
        entry["runtime"].add(str(runtime))
        if isinstance(kind, URIRef):
            entry["kind"].add(str(kind))
        if expires is not None:
            entry["expires"].add(expires)
    lines: list[str] = []
    shared: set[str] = set()
    kind_sets: set[tuple[str, ...]] = set()
    count = 0
    for (g, device), entry in seen.items():
        if not isinstance(device, URIRef) or len(entry["mcu"]) != 1 or len(entry["ram"]) != 1 or len(entry["flash"]) != 1:
            continue  # the same rules as derived.device_facts
        ram, flash = next(iter(entry["ram"])).toPython(), next(iter(entry["flash"])).toPython()
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (ram, flash)):
            continue
        facts = DeviceFacts(str(device), tuple(sorted(entry["runtime"])), ram, flash, tuple(sorted(entry["kind"])),
                            lease_bucket(entry["expires"]))
        count += 1
        graph = g.n3()
        lines.extend(f"{s.n3()} {p.n3()} {o.n3()} {graph} ." for s, p, o in device_triples(facts))
        if facts.capability not in shared:
            shared.add(facts.capability)
            for s, p, o in capability_triples(facts):  # resource-profile and offer triples recur across capabilities
                line = f"{s.n3()} {p.n3()} {o.n3()} <{CAPABILITY_GRAPH}> ."
                if line not in shared:
                    shared.add(line)
                    lines.append(line)
            kind_sets.update(covered_sets(facts.kinds))
        elif facts.lease_node not in shared:
            lines.extend(f"{s.n3()} {p.n3()} {o.n3()} <{CAPABILITY_GRAPH}> ." for s, p, o in lease_triples(facts))
        shared.add(facts.lease_node)
    sets = kind_sets
    task_graph_kinds: dict[tuple[object, object], set[str]] = {}
    for g, task, kind in rows(TASK_FACTS_QUERY):
        if isinstance(task, URIRef):
            entry = task_graph_kinds.setdefault((g, task), set())
            if isinstance(kind, URIRef):
                entry.add(str(kind))
    task_kinds: dict[str, set[str]] = {}
    for (g, task), kinds in task_graph_kinds.items():
        task_kinds.setdefault(str(task), set()).update(kinds)
        lines.append(f"{task.n3()} <{TF.requiresSensorSet}> <{sensor_set(kinds)}> {g.n3()} .")
        sets.add(tuple(sorted(kinds)))
    models: dict[tuple[object, object], tuple[set[str], set[str]]] = {}
    for g, model, runtime, task in rows(MODEL_FACTS_QUERY):
        if isinstance(model, URIRef) and isinstance(runtime, URIRef):
            runtimes, tasks = models.setdefault((g, model), (set(), set()))
            runtimes.add(str(runtime))
            if isinstance(task, URIRef):
                tasks.add(str(task))
    for (g, model), (runtimes, tasks) in models.items():
        mfacts = ModelFacts(str(model), tuple(sorted(runtimes)), tuple(sorted(tasks)))
        graph = g.n3()
        lines.extend(f"{s.n3()} {p.n3()} {o.n3()} {graph} ." for s, p, o in model_triples(mfacts))
        if mfacts.requirement not in shared:
            shared.add(mfacts.requirement)
            lines.extend(f"{s.n3()} {p.n3()} {o.n3()} <{CAPABILITY_GRAPH}> ." for s, p, o in requirement_triples(mfacts, task_kinds))
            sets.add(requirement_kinds(mfacts, task_kinds))
    for kinds in sets:
        lines.extend(f"{s.n3()} {p.n3()} {o.n3()} <{CAPABILITY_GRAPH}> ." for s, p, o in sensor_set_triples(kinds))
    if lines:  # an empty registry stays empty (no capability graph)
        version = Literal(DERIVATION_VERSION, datatype=XSD.integer).n3()
        lines.append(f"<{CAPABILITY_GRAPH}> <{TF.derivationVersion}> {version} <{CAPABILITY_GRAPH}> .")
    return "\n".join(lines) + "\n", count
