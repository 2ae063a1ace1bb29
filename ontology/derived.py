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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF, XSD

from ontology.vocab import CAPABILITY_GRAPH, RESOURCE_BASE, TF

CAPABILITY_BASE = RESOURCE_BASE + "capability/"
#: The predicates this module writes into device graphs (removed before re-deriving).
DEVICE_PREDICATES = (TF.hasSensorKind, TF.hasCapability)


@dataclass(frozen=True)
class DeviceFacts:
    """What matchmaking needs to know about one device."""

    device: str
    runtimes: tuple[str, ...]
    ram: int
    flash: int
    kinds: tuple[str, ...]

    @property
    def capability(self) -> str:
        key = "\n".join([" ".join(self.runtimes), str(self.ram), str(self.flash), " ".join(self.kinds)])
        return CAPABILITY_BASE + hashlib.sha256(key.encode()).hexdigest()[:20]


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
        out.append(DeviceFacts(str(device), runtimes, rams[0], flashes[0], kinds))
    return out


def device_triples(facts: DeviceFacts) -> Iterable[tuple[URIRef, URIRef, URIRef]]:
    """The derived triples that go into the device's own graph."""
    device = URIRef(facts.device)
    yield device, TF.hasCapability, URIRef(facts.capability)
    for kind in facts.kinds:
        yield device, TF.hasSensorKind, URIRef(kind)


def capability_triples(facts: DeviceFacts) -> Iterable[tuple[URIRef, URIRef, URIRef | Literal]]:
    """The triples of the device's capability node (for CAPABILITY_GRAPH)."""
    cap = URIRef(facts.capability)
    yield cap, RDF.type, TF.Capability
    for runtime in facts.runtimes:
        yield cap, TF.capabilityRuntime, URIRef(runtime)
    yield cap, TF.capabilityRamBytes, Literal(facts.ram, datatype=XSD.integer)
    yield cap, TF.capabilityFlashBytes, Literal(facts.flash, datatype=XSD.integer)
    for kind in facts.kinds:
        yield cap, TF.capabilitySensorKind, URIRef(kind)


def with_derived(graph: Graph) -> tuple[Graph, Graph]:
    """(``graph`` plus its devices' derived facts, the capability triples to add to CAPABILITY_GRAPH).

    ``graph`` is not modified; derived triples it already carries are recomputed, not trusted.
    """
    out = Graph()
    for triple in graph:
        if triple[1] not in DEVICE_PREDICATES:
            out.add(triple)
    caps = Graph()
    for facts in device_facts(out):
        for triple in device_triples(facts):
            out.add(triple)
        for triple in capability_triples(facts):
            caps.add(triple)
    return out, caps


#: All devices' matchmaking facts, one row per (device, runtime, kind) -- read by derive_all.
FACTS_QUERY = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?g ?device ?mcu ?ram ?flash ?runtime ?kind WHERE {
  GRAPH ?g {
    ?device a tf:Device ; tf:hasMicrocontroller ?mcu ; tf:supportsRuntime ?runtime .
    ?mcu tf:ramBytes ?ram ; tf:flashBytes ?flash .
    OPTIONAL { ?device tf:hasSensor ?sensor . ?sensor a ?kind }
  }
}"""

__all__ = ["CAPABILITY_BASE", "CAPABILITY_GRAPH", "DEVICE_PREDICATES", "DeviceFacts", "FACTS_QUERY", "capability_triples",
           "device_facts", "device_triples", "with_derived"]
