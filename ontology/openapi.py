"""The registry's OpenAPI 3.1 document, written out rather than inferred.

Why by hand: the routes read their bodies and parameters themselves (the SPARQL Protocol's
three request forms, TDs checked by our own validator), so FastAPI's inference saw no
parameters, no bodies, a "200" everywhere and one operationId for GET and POST. A client
generator or a fuzzer (schemathesis) needs what the service really takes and answers; a test
holds this document to the routes (``tests/ontology/test_registry_openapi.py``).
"""

from __future__ import annotations

from typing import Any

from ontology.problems import PROBLEM_JSON
from ontology.sparql_results import OFFERS

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_TD = {"$ref": "#/components/schemas/ThingDescription"}
_STRING = {"type": "string"}
_IRI = {"type": "string", "format": "iri"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM}}}


def _problems(*codes: int) -> dict[str, Any]:
    words = {
        400: "invalid request, query, update or TD (every violation in `errors`)",
        401: "bearer token missing or wrong",
        403: "the registry was started without a token: read-only",
        404: "no such Thing or named query",
        405: "method not allowed (see `Allow`)",
        406: "no acceptable result format for this query",
        413: "body over 4 MB (refused while it streams)",
        415: "unsupported Content-Type",
        503: "query or write time limit exceeded, or the query's worker stopped by its memory share",
    }
    return {str(code): _problem(words[code]) for code in codes}


def _param(name: str, where: str, doc: str, *, required: bool = False, schema: dict[str, Any] | None = None,
           many: bool = False) -> dict[str, Any]:
    body = schema or _STRING
    out: dict[str, Any] = {"name": name, "in": where, "description": doc, "required": required,
                           "schema": {"type": "array", "items": body} if many else body}
    if many:
        out["style"], out["explode"] = "form", True
    return out


_DATASET = [
    _param("default-graph-uri", "query", "A graph of the default graph (repeatable); replaces the union default.", schema=_IRI, many=True),
    _param("named-graph-uri", "query", "A named graph the query may read (repeatable).", schema=_IRI, many=True),
]
_USING = [
    _param("using-graph-uri", "query", "A graph of the update's WHERE default graph (repeatable).", schema=_IRI, many=True),
    _param("using-named-graph-uri", "query", "A named graph the update's WHERE may read (repeatable).", schema=_IRI, many=True),
]
_AUTH = [{"bearer": []}]


def _results(kinds: tuple[str, ...]) -> dict[str, Any]:
    media = dict.fromkeys(m for kind in kinds for m in OFFERS[kind])
    return {"200": {"description": "the query's results, in the format chosen by Accept; "
                                   "`TinyFleet-Truncated: true` if capped at max_results",
                    "content": {m: {"schema": _STRING if not m.endswith("json") else {"type": "object"}} for m in media}}}


def _sparql_ops(path: str, name: str, *, updates: bool) -> dict[str, Any]:
    query_form = {"type": "object", "properties": {"query": _STRING, **({"update": _STRING} if updates else {}),
                                                   "default-graph-uri": _IRI, "named-graph-uri": _IRI},
                  "description": "exactly one of query" + (" or update (update needs the token)" if updates else "")}
    content: dict[str, Any] = {"application/x-www-form-urlencoded": {"schema": query_form},
                               "application/sparql-query": {"schema": _STRING}}
    if updates:
        content["application/sparql-update"] = {"schema": _STRING}
    post_responses = {**_results(("SELECT", "ASK", "CONSTRUCT")), **_problems(400, 406, 413, 415, 503)}
    if updates:
        post_responses.update({"204": {"description": "update applied"}, **_problems(401, 403)})
    return {
        "get": {
            "operationId": f"{name}Get", "summary": f"SPARQL 1.1 Protocol query by GET ({path})",
            "parameters": [_param("query", "query", "The SPARQL query.", required=True, schema={"type": "string", "minLength": 1}),
                           *_DATASET],
            "responses": {**_results(("SELECT", "ASK", "CONSTRUCT")), **_problems(400, 406, 503)},
        },
        "post": {
            "operationId": f"{name}Post",
            "summary": "SPARQL 1.1 Protocol query" + (" or update" if updates else "") + " by POST",
            "parameters": [*_DATASET, *(_USING if updates else [])],
            "requestBody": {"required": True, "content": content},
            "responses": post_responses,
            **({"security": [{}, *_AUTH]} if updates else {}),
        },
    }


def openapi_document(title: str = "TinyFleet registry", version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 description of :func:`ontology.service.create_app`'s routes."""
    thing_id = _param("thing_id", "path", "A TD id (absolute IRI, percent-encoded) or a bare device id.", required=True,
                      schema={"type": "string", "pattern": r"^([A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+|[A-Za-z0-9._-]{1,128})$"})
    td_body = {"required": True, "content": {m: {"schema": _TD} for m in ("application/td+json", "application/json", "application/ld+json")}}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "SPARQL 1.1 Protocol, a WoT Discovery Things API subset and named queries. "
                                "Every error is RFC 7807 application/problem+json."},
        "paths": {
            "/sparql": _sparql_ops("/sparql", "sparql", updates=True),
            "/search/sparql": _sparql_ops("/search/sparql", "searchSparql", updates=False),
            "/queries": {"get": {"operationId": "listQueries", "summary": "The shipped named queries and their parameters",
                                 "responses": {"200": {"description": "the list", "content": {"application/json": {
                                     "schema": {"type": "array", "items": {"type": "object"}}}}}}}},
            "/queries/{name}": {"get": {
                "operationId": "runNamedQuery", "summary": "Run a named query; its parameters are query parameters (see /queries)",
                "parameters": [_param("name", "path", "The named query.", required=True)],
                "responses": {**_results(("SELECT",)), **_problems(400, 404, 406, 503)}}},
            "/things": {
                "get": {"operationId": "listThings", "summary": "Live TDs ordered by id; Link rel=next for the next page",
                        "parameters": [_param("offset", "query", "Things to skip.", schema={"type": "integer", "minimum": 0}),
                                       _param("limit", "query", "Page size.", schema={"type": "integer", "minimum": 1, "maximum": 1000})],
                        "responses": {"200": {"description": "one page of TDs",
                                              "content": {"application/ld+json": {"schema": {"type": "array", "items": _TD}}}},
                                      **_problems(400, 503)}},
                "post": {"operationId": "createAnonymousThing", "summary": "Register a TD without an id (gets a urn:uuid)",
                         "security": _AUTH, "requestBody": td_body,
                         "responses": {"201": {"description": "created; Location names it"}, **_problems(400, 401, 403, 413, 415, 503)}},
            },
            "/things/{thing_id}": {
                "parameters": [thing_id],
                "get": {"operationId": "getThing", "summary": "One live TD",
                        "responses": {"200": {"description": "the TD", "content": {"application/td+json": {"schema": _TD}}},
                                      **_problems(400, 404, 503)}},
                "put": {"operationId": "putThing", "summary": "Create (201) or replace (204) a TD", "security": _AUTH,
                        "requestBody": td_body,
                        "responses": {"201": {"description": "created"}, "204": {"description": "replaced"},
                                      **_problems(400, 401, 403, 413, 415, 503)}},
                "patch": {"operationId": "patchThing", "summary": "JSON Merge Patch; the result is validated again", "security": _AUTH,
                          "requestBody": {"required": True, "content": {"application/merge-patch+json": {"schema": {"type": "object"}}}},
                          "responses": {"204": {"description": "patched"}, **_problems(400, 401, 403, 404, 413, 415, 503)}},
                "delete": {"operationId": "deleteThing", "summary": "Remove a TD", "security": _AUTH,
                           "responses": {"204": {"description": "deleted"}, **_problems(400, 401, 403, 404, 503)}},
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                    "type": {"type": "string", "format": "uri"}, "title": _STRING, "status": {"type": "integer"},
                    "detail": _STRING, "instance": _STRING, "errors": {"type": "array", "items": _STRING}}},
                "ThingDescription": {"type": "object", "required": ["@context", "title", "security", "securityDefinitions"],
                                     "description": "A W3C WoT Thing Description 1.1 (checked against its JSON Schema, "
                                                    "the TD rules and the TinyFleet vocabulary)"},
            },
        },
    }


__all__ = ["openapi_document"]
