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
from functools import lru_cache
from typing import Any

from rdflib import Graph

from ontology.vocab import CONTEXTS_DIR, RESOURCE_BASE

#: Context URLs we can resolve offline -> file in ``contexts/``.
LOCAL_CONTEXTS: dict[str, str] = {
    "https://www.w3.org/2022/wot/td/v1.1": "td-context-1.1.json",
    "https://www.w3.org/2019/wot/td/v1": "td-context-1.1.json",
}

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


def parse_json_document(text: str) -> Any:
    """json.loads with a message that says where the JSON breaks."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRDF(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


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
        document = inline_contexts(parse_json_document(text))
        try:
            graph.parse(data=json.dumps(document), format="json-ld", base=base)
        except Exception as exc:  # rdflib's JSON-LD errors have no common base class
            raise InvalidRDF(f"invalid JSON-LD: {exc}") from None
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
