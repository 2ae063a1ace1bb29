"""Turn bytes a user hands us (Turtle, JSON-LD) into a Graph, or a clear refusal.

Why a module of its own: the registry takes descriptions from files, the CLI
and HTTP bodies, and every path must refuse the same malformed input with the
same actionable message (line/column for Turtle, the JSON error position for
JSON-LD) instead of leaking a parser traceback. JSON-LD contexts are never
fetched from the network: the known WoT TD context URLs are replaced by the
copy shipped in ``contexts/``, and any other remote context is refused,
because a registry that dereferences attacker-chosen URLs is an SSRF hole and
breaks offline deployments.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from rdflib import Graph, URIRef

from ontology.vocab import CONTEXTS_DIR, RESOURCE_BASE

#: Context URLs we can resolve offline -> file in ``contexts/``.
LOCAL_CONTEXTS: dict[str, str] = {
    "https://www.w3.org/2022/wot/td/v1.1": "td-context-1.1.json",
    "https://www.w3.org/2019/wot/td/v1": "td-context-1.1.json",
}

#: Deepest JSON the registry reads (TDs nest affordances, data schemas and forms a few levels deep).
MAX_JSON_DEPTH = 64

FORMATS = {"turtle": "turtle", "ttl": "turtle", "json-ld": "json-ld", "jsonld": "json-ld", "json": "json-ld"}


class InvalidRDF(ValueError):
    """The input is not well-formed RDF in the stated format; nothing was stored."""


def format_for(filename: str) -> str:
    """Parser name from a file suffix ('.ttl' -> 'turtle', '.json'/.jsonld -> 'json-ld')."""
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    try:
        return FORMATS[suffix]
    except KeyError:
        raise InvalidRDF(f"cannot tell the RDF format of {filename!r}: use .ttl, .json or .jsonld") from None


@lru_cache(maxsize=None)
def _local_context(name: str) -> dict[str, Any]:
    return json.loads((CONTEXTS_DIR / name).read_text(encoding="utf-8"))["@context"]


def inline_contexts(node: Any) -> Any:
    """Copy of a JSON-LD document with every known remote ``@context`` replaced by its local copy.

    Raises InvalidRDF for a remote context we do not ship (we will not fetch it).
    """
    if isinstance(node, list):
        return [inline_contexts(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "@context":
            out[key] = _resolve_context(value)
        else:
            out[key] = inline_contexts(value)
    return out


def _resolve_context(value: Any) -> Any:
    if isinstance(value, list):
        return [_resolve_context(item) for item in value]
    if isinstance(value, str):
        if value in LOCAL_CONTEXTS:
            return _local_context(LOCAL_CONTEXTS[value])
        raise InvalidRDF(
            f"JSON-LD context {value!r} is not available offline; the registry never fetches contexts. "
            f"Known: {', '.join(LOCAL_CONTEXTS)}; put other terms in an inline @context object"
        )
    if isinstance(value, dict):
        return inline_contexts(value)
    return value


def parse_json_document(text: str | bytes) -> Any:
    """json.loads that refuses what JSON leaves ambiguous or dangerous, with a message saying where.

    Refused (InvalidRDF): malformed JSON (line and column), nesting deeper than
    :data:`MAX_JSON_DEPTH` (every later step, JSON-LD expansion included, recurses; at about
    1,000 levels Python's own parser raises RecursionError), and an object with the same member
    name twice (JSON parsers differ on which one wins; RFC 8259 says names SHOULD be unique).
    """
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out and key not in duplicates:
                duplicates.append(key)
            out[key] = value
        return out

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise InvalidRDF(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InvalidRDF(f"JSON nested too deep; the limit is {MAX_JSON_DEPTH} levels") from None
    depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRDF(f"JSON nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    if duplicates:
        raise InvalidRDF("duplicate JSON member name(s) in one object: " + ", ".join(json.dumps(k) for k in duplicates))
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` is 1), computed without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


_IRI_UNSAFE = re.compile(r"[\s<>\"{}|\\^`]")


def unsafe_iri_problems(graph: Graph, document: Any) -> list[str]:
    """One message per IRI in ``graph`` that is not IRI-safe, naming the JSON member (or value) it came from.

    Why: JSON-LD turns an undeclared member name such as ``"bad key"`` into the IRI
    ``<vocab#bad key>``; rdflib accepts it with a warning and fails only when the graph is
    written. Such a TD must be refused at the door, with the key named.
    """
    bad = sorted({str(term) for triple in graph for term in triple if isinstance(term, URIRef) and _IRI_UNSAFE.search(str(term))})
    if not bad:
        return []
    keys, values = _members(document)
    problems = []
    for iri in bad:
        key = next((k for k, _path in keys if iri.endswith(k) and _IRI_UNSAFE.search(k)), None)
        if key is not None:
            where = next(path for k, path in keys if k == key)
            problems.append(f"member name {json.dumps(key)}{' in ' + where if where else ''} is not IRI-safe: as a JSON-LD "
                            f"term it becomes <{iri}>; rename it (no spaces or <>\"{{}}|\\^`) or map it in @context")
            continue
        value = next((v for v, _path in values if iri.endswith(v) and _IRI_UNSAFE.search(v)), None)
        if value is not None:
            where = next(path for v, path in values if v == value)
            problems.append(f"value {json.dumps(value)} at {where} is not an IRI-safe identifier (<{iri}>)")
        else:
            problems.append(f"<{iri}> is not an IRI-safe identifier")
    return problems


def _members(document: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(member name, path of its object) and (string value, its path) of every node, without recursion."""
    keys: list[tuple[str, str]] = []
    values: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                keys.append((key, path))
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, str):
            values.append((node, path))
    return keys, values


def parse_rdf(data: str | bytes, fmt: str, base: str | None = None) -> Graph:
    """Parse Turtle or JSON-LD into a new Graph; InvalidRDF with a readable reason otherwise."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise InvalidRDF(f"the description is not UTF-8 text (byte {exc.start})") from None
    base = base or RESOURCE_BASE  # never resolve relative IRIs against the server's working directory
    fmt = FORMATS.get(fmt, fmt)
    graph = Graph()
    if fmt == "json-ld":
        original = parse_json_document(text)
        document = inline_contexts(original)
        try:
            graph.parse(data=json.dumps(document), format="json-ld", base=base)
        except Exception as exc:  # rdflib's JSON-LD errors have no common base class
            raise InvalidRDF(f"invalid JSON-LD: {exc}") from None
        unsafe = unsafe_iri_problems(graph, original)
        if unsafe:
            raise InvalidRDF("; ".join(unsafe))
    elif fmt == "turtle":
        try:
            graph.parse(data=text, format="turtle", publicID=base)
        except Exception as exc:  # BadSyntax, ValueError ... depending on the fault
            raise InvalidRDF(f"malformed Turtle: {_short(exc)}") from None
    else:
        raise InvalidRDF(f"unsupported RDF format {fmt!r}; use turtle or json-ld")
    if len(graph) == 0:
        raise InvalidRDF("the description contains no RDF statements")
    return graph


def _short(exc: Exception) -> str:
    """rdflib's BadSyntax repeats the whole input; keep the position and the reason."""
    text = str(exc)
    return text if len(text) < 400 else text[:400] + " ..."
