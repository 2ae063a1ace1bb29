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
SPARQL_XML = "application/sparql-results+xml"
SPARQL_CSV = "text/csv"
SPARQL_TSV = "text/tab-separated-values"
TURTLE = "text/turtle"
JSON_LD = "application/ld+json"
N_TRIPLES = "application/n-triples"
RDF_XML = "application/rdf+xml"

#: Media types offered per query kind, preferred first (the first is the default for ``*/*``).
#: XML matters beyond browsers: rdflib's SPARQLStore (our remote backend) asks for
#: ``application/sparql-results+xml`` and ``application/rdf+xml`` only.
OFFERS: dict[str, tuple[str, ...]] = {
    "SELECT": (SPARQL_JSON, "application/json", SPARQL_XML, "application/xml", SPARQL_CSV, SPARQL_TSV),
    "ASK": (SPARQL_JSON, "application/json", SPARQL_XML, "application/xml"),
    "CONSTRUCT": (TURTLE, JSON_LD, N_TRIPLES, RDF_XML),
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


def _tsv_term(term: Node) -> str:
    """One RDF term as SPARQL 1.1 TSV writes it: Turtle/N-Triples syntax, with tabs and newlines escaped."""
    if isinstance(term, URIRef):
        return f"<{term}>"
    if isinstance(term, BNode):
        return f"_:{term}"
    if isinstance(term, Literal):
        escaped = str(term).translate(_TSV_ESCAPES)
        if term.language:
            return f'"{escaped}"@{term.language}'
        if term.datatype is not None and str(term.datatype) != _XSD_STRING:
            return f'"{escaped}"^^<{term.datatype}>'
        return f'"{escaped}"'
    raise TypeError(f"not an RDF term: {term!r}")


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


def to_tsv(result: QueryResult) -> str:
    """SPARQL 1.1 Query Results TSV of a SELECT result (``?var`` header, terms in Turtle syntax, LF rows)."""
    lines = ["\t".join(f"?{v}" for v in result.variables)]
    for row in result.rows:
        lines.append("\t".join("" if value is None else _tsv_term(value) for value in row))
    return "\n".join(lines) + "\n"


_XML_NS = "http://www.w3.org/2005/sparql-results#"


def to_xml(result: QueryResult) -> str:
    """SPARQL Query Results XML Format (second edition) of a SELECT or ASK result."""
    from xml.sax.saxutils import escape, quoteattr

    out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<sparql xmlns="{_XML_NS}">']
    if result.kind == "ASK":
        out += ["<head/>", f"<boolean>{'true' if result.boolean else 'false'}</boolean>", "</sparql>"]
        return "\n".join(out) + "\n"
    out.append("<head>" + "".join(f"<variable name={quoteattr(v)}/>" for v in result.variables) + "</head>")
    out.append("<results>")
    for row in result.rows:
        cells = []
        for var, value in zip(result.variables, row, strict=False):
            if value is None:
                continue
            if isinstance(value, URIRef):
                inner = f"<uri>{escape(str(value))}</uri>"
            elif isinstance(value, BNode):
                inner = f"<bnode>{escape(str(value))}</bnode>"
            elif isinstance(value, Literal):
                if value.language:
                    attrs = f" xml:lang={quoteattr(value.language)}"
                elif value.datatype is not None:
                    attrs = f" datatype={quoteattr(str(value.datatype))}"
                else:
                    attrs = ""
                inner = f"<literal{attrs}>{escape(str(value))}</literal>"
            else:
                raise TypeError(f"not an RDF term: {value!r}")
            cells.append(f"<binding name={quoteattr(var)}>{inner}</binding>")
        out.append("<result>" + "".join(cells) + "</result>")
    out += ["</results>", "</sparql>"]
    return "\n".join(out) + "\n"


def serialize(result: QueryResult, media_type: str) -> bytes:
    """``result`` as bytes of ``media_type`` (one of :data:`OFFERS` for its kind)."""
    if result.kind == "CONSTRUCT":
        graph = bind_prefixes(result.graph) if result.graph is not None else None
        fmt = {TURTLE: "turtle", JSON_LD: "json-ld", N_TRIPLES: "nt", RDF_XML: "xml"}[media_type]
        text = graph.serialize(format=fmt) if graph is not None else ""
        return text.encode("utf-8")
    if media_type == SPARQL_CSV:
        return to_csv(result).encode("utf-8")
    if media_type == SPARQL_TSV:
        return to_tsv(result).encode("utf-8")
    if media_type in (SPARQL_XML, "application/xml"):
        return to_xml(result).encode("utf-8")
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
