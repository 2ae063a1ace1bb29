"""TD -> RDF: the registry's view of a W3C WoT Thing Description.

A device builds its own TD as plain JSON (``edge.thing_description``, re-exported
here). The RDF of a device is *derived from its TD* (one source of truth), with
the TD context inlined from ``contexts/``: nothing is fetched at run time.

>>> from edge.profiles import PROFILES
>>> td = thing_description(PROFILES["nano33ble"], "nano-1")
>>> td["tf:hasMicrocontroller"]["tf:ramBytes"]
176128
"""

from __future__ import annotations

import json
from typing import Any

from rdflib import Graph

from edge.identity import device_iri
from edge.thing_description import DEFAULT_BROKER, SENSOR_CLASSES, TD_CONTEXT_URL, TF_CONTEXT, thing_description
from ontology.rdf_input import MAX_JSON_DEPTH, InvalidRDF, inline_contexts, json_depth, parse_json_document, unsafe_iri_problems
from ontology.vocab import RESOURCE_BASE

def td_to_graph(td: dict[str, Any] | str | bytes) -> Graph:
    """RDF of a TD (dict or JSON text) with every known context inlined; InvalidRDF if it cannot be read."""
    if isinstance(td, (str, bytes)):
        td = parse_json_document(td)
    if not isinstance(td, dict):
        raise InvalidRDF("a Thing Description must be a JSON object")
    depth = json_depth(td)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRDF(f"JSON nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    document = inline_contexts(td)
    graph = Graph()
    try:
        graph.parse(data=json.dumps(document), format="json-ld", base=RESOURCE_BASE)
    except Exception as exc:  # rdflib's JSON-LD errors have no common base class
        raise InvalidRDF(f"invalid JSON-LD in Thing Description: {exc}") from None
    unsafe = unsafe_iri_problems(graph, td)
    if unsafe:
        raise InvalidRDF("; ".join(unsafe))
    return graph


__all__ = ["DEFAULT_BROKER", "TD_CONTEXT_URL", "TF_CONTEXT", "device_iri", "td_to_graph", "thing_description", "SENSOR_CLASSES"]
