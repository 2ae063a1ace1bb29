"""Check a device or model description against the SHACL shapes, in words a person can act on.

pyshacl reports violations as an RDF graph; an operator registering a board
wants "device <...>, tf:ramBytes: a microcontroller needs exactly one ...",
so every result is flattened to a :class:`Violation` (focus node, path,
offending value, message from the shape). :func:`check_description` raises
:class:`DescriptionRejected` carrying them, and callers store nothing then.

Validation runs with the ontology mixed in (``ont_graph``) so that
``sh:targetClass tf:Sensor`` also reaches a ``tf:Microphone`` and
``sh:class tf:Transport`` accepts a ``tf:MQTTTransport``; no other inference
is done, so what is checked is what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pyshacl import validate
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF, SH
from rdflib.term import Node

from ontology.rdf_input import format_for, parse_rdf
from ontology.vocab import SHAPES_FILE, bind_prefixes, load_ontology


@dataclass(frozen=True)
class Violation:
    """One failed constraint: which node, which property, what was wrong."""

    focus: str
    path: str | None
    message: str
    value: str | None
    severity: str

    def __str__(self) -> str:
        where = self.focus if self.path is None else f"{self.focus} {self.path}"
        got = "" if self.value is None else f" (got {self.value})"
        return f"{where}: {self.message}{got}"


class DescriptionRejected(ValueError):
    """The description fails the shapes; ``violations`` says what to fix. Nothing was stored."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"description rejected, {len(violations)} problem(s):\n{lines}")


@lru_cache(maxsize=1)
def _shapes() -> Graph:
    return Graph().parse(SHAPES_FILE, format="turtle")


@lru_cache(maxsize=1)
def _ontology() -> Graph:
    """The ontology's typing and hierarchy (rdf:type, rdfs:subClassOf, rdfs:subPropertyOf): all that validation
    without inference reads of it. Why not all of it: pyshacl copies ``ont_graph`` into every data graph it
    checks, and the labels, comments, domains and units (490 of 702 triples) made that copy half of a TD's check."""
    from rdflib.namespace import RDFS

    whole = load_ontology()
    kept = Graph()
    for triple in whole.triples((None, None, None)):
        if triple[1] in (RDF.type, RDFS.subClassOf, RDFS.subPropertyOf):
            kept.add(triple)
    return kept


def _show(node: Node | None, names: Graph, data: Graph) -> str | None:
    """Readable name of a node; a blank node is named by its type and who points to it."""
    if node is None:
        return None
    if isinstance(node, (URIRef, Literal)):
        return node.n3(names.namespace_manager)
    kinds = ", ".join(sorted(t.n3(names.namespace_manager) for t in data.objects(node, RDF.type))) or "untyped node"
    owner = next(iter(data.subject_predicates(node)), None)
    if owner is None:
        return f"[{kinds}]"
    return f"[{kinds} at {_show(owner[0], names, data)} {owner[1].n3(names.namespace_manager)}]"


def validate_graph(data: Graph, context: Graph | None = None) -> list[Violation]:
    """All violations of ``data`` against the shapes (empty list = accepted).

    ``context`` holds facts from elsewhere (the store) that ``data`` relies on, e.g. that the task a
    model names is a ``tf:Task``; it is validated with ``data`` but its own nodes are not judged.
    """
    judged = None
    if context is not None and len(context):
        judged = set(data.subjects())
        combined = Graph()
        for triple in data:
            combined.add(triple)
        for triple in context:
            combined.add(triple)
        data = combined
    conforms, report, _text = validate(
        data,
        shacl_graph=_shapes(),
        ont_graph=_ontology(),
        inference="none",
        allow_warnings=False,
    )
    if conforms:
        return []
    names = bind_prefixes(Graph())
    out = []
    for result in report.subjects(SH.resultSeverity, None):
        if judged is not None and report.value(result, SH.focusNode) not in judged:
            continue  # a node only the context describes
        message = report.value(result, SH.resultMessage)
        severity = report.value(result, SH.resultSeverity)
        out.append(
            Violation(
                focus=_show(report.value(result, SH.focusNode), names, data) or "?",
                path=_show(report.value(result, SH.resultPath), names, data),
                message=str(message) if message is not None else "constraint violated",
                value=_show(report.value(result, SH.value), names, data),
                severity=str(severity).rsplit("#", 1)[-1],
            )
        )
    return sorted(set(out), key=lambda v: (v.focus, v.path or "", v.message))  # one shape can fail twice on a value


def check_description(data: Graph, context: Graph | None = None) -> Graph:
    """Return ``data`` if it conforms, else raise DescriptionRejected with every problem.

    Besides the shapes, the TinyFleet vocabulary is closed: a ``tf:`` term the ontology does not
    define (a sensor predicate spelt ``hasSensr``) is a violation naming the nearest defined term, since
    matchmaking would silently never see the device. ``context``: see :func:`validate_graph`.
    """
    from ontology.td_validation import unknown_terms

    violations = validate_graph(data, context)
    violations += [Violation(focus="vocabulary", path=None, message=m, value=None, severity="Violation") for m in unknown_terms(data)]
    if violations:
        raise DescriptionRejected(violations)
    return data


def load_and_check(text: str | bytes, filename: str) -> Graph:
    """Parse a description file (format from its suffix) and check it; InvalidRDF or DescriptionRejected on failure."""
    return check_description(parse_rdf(text, format_for(filename)))
