"""Serialise a :class:`QueryResult` in the SPARQL 1.1 result formats, and pick one by ``Accept``.

Why here and not in the service: the CLI prints the same JSON/CSV the HTTP
endpoint returns (``query --format json`` is byte-for-byte what ``curl
/sparql`` gives), so a script can switch between them without surprises.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rdflib import BNode, Literal, URIRef
from rdflib.term import Node

from ontology.store import QueryResult
from ontology.vocab import bind_prefixes

SPARQL_JSON = "application/sparql-results+json"
SPARQL_CSV = "text/csv"
TURTLE = "text/turtle"
JSON_LD = "application/ld+json"
N_TRIPLES = "application/n-triples"

#: Media types offered per query kind, preferred first (the first is the default for ``*/*``).
OFFERS: dict[str, tuple[str, ...]] = {
    "SELECT": (SPARQL_JSON, "application/json", SPARQL_CSV),
    "ASK": (SPARQL_JSON, "application/json"),
    "CONSTRUCT": (TURTLE, JSON_LD, N_TRIPLES),
}


def term_json(term: Node) -> dict[str, str]:
    """One RDF term in the SPARQL 1.1 JSON results encoding."""
    if isinstance(term, URIRef):
        return {"type": "uri", "value": str(term)}
    if isinstance(term, BNode):
        return {"type": "bnode", "value": str(term)}
    if isinstance(term, Literal):
        out = {"type": "literal", "value": str(term)}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype is not None:
            out["datatype"] = str(term.datatype)
        return out
    raise TypeError(f"not an RDF term: {term!r}")


def to_json(result: QueryResult) -> dict[str, Any]:
    """SPARQL 1.1 Query Results JSON of a SELECT or ASK result."""
    if result.kind == "ASK":
        return {"head": {}, "boolean": bool(result.boolean)}
    bindings = [
        {var: term_json(value) for var, value in zip(result.variables, row, strict=False) if value is not None}
        for row in result.rows
    ]
    return {"head": {"vars": list(result.variables)}, "results": {"bindings": bindings}}


def to_csv(result: QueryResult) -> str:
    """SPARQL 1.1 Query Results CSV of a SELECT result (plain values, CRLF rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(result.variables)
    for row in result.rows:
        writer.writerow(["" if value is None else str(value) for value in row])
    return buffer.getvalue()


def serialize(result: QueryResult, media_type: str) -> bytes:
    """``result`` as bytes of ``media_type`` (one of :data:`OFFERS` for its kind)."""
    if result.kind == "CONSTRUCT":
        graph = bind_prefixes(result.graph) if result.graph is not None else None
        fmt = {TURTLE: "turtle", JSON_LD: "json-ld", N_TRIPLES: "nt"}[media_type]
        text = graph.serialize(format=fmt) if graph is not None else ""
        return text.encode("utf-8")
    if media_type == SPARQL_CSV:
        return to_csv(result).encode("utf-8")
    return json.dumps(to_json(result), ensure_ascii=False).encode("utf-8")


def _accepted(accept: str) -> list[tuple[str, float, int]]:
    """(media range, q, position) from an Accept header."""
    out = []
    for position, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out.append((fields[0].lower(), q, position))
    return out


def negotiate(accept: str | None, offers: tuple[str, ...]) -> str | None:
    """Best of ``offers`` for an Accept header (None/empty = the first offer); None if none is acceptable."""
    if not accept or not accept.strip():
        return offers[0]
    best: tuple[float, int, int, str] | None = None  # (q, specificity, -offer index, type)
    for media_range, q, _pos in _accepted(accept):
        if q <= 0:
            continue
        for index, offer in enumerate(offers):
            major = offer.split("/")[0]
            if media_range == offer:
                specificity = 2
            elif media_range == f"{major}/*":
                specificity = 1
            elif media_range == "*/*":
                specificity = 0
            else:
                continue
            candidate = (q, specificity, -index, offer)
            if best is None or candidate[:3] > best[:3]:
                best = candidate
    return best[3] if best else None
