"""The registry over HTTP: SPARQL 1.1 Protocol, a WoT Discovery Things API subset, named queries.

``create_app(store, token, ...)`` builds the FastAPI app; ``tinyfleet registry
serve`` runs it under uvicorn. The app owns no state but the store handed in
(so tests and the CLI decide where data lives) and one background task that
purges expired registrations.

Endpoints (all errors are RFC 7807 ``application/problem+json``, see :mod:`ontology.problems`):

=============================  ===============================================================
``GET|POST /sparql``           SPARQL 1.1 Protocol: ``query`` (GET param, form, or
                               ``application/sparql-query``) and ``update`` (form or
                               ``application/sparql-update``, bearer token required), with
                               the dataset parameters (:mod:`ontology.sparql_protocol`).
                               SELECT/ASK -> SPARQL JSON, XML (SELECT also CSV, TSV);
                               CONSTRUCT/DESCRIBE -> Turtle, JSON-LD, N-Triples or RDF/XML.
``GET|POST /search/sparql``    WoT Discovery SPARQL search: queries only.
``GET /things``                TDs ordered by id, ``offset``/``limit``; ``Link: rel="next"``.
``PUT /things/{id}``           create (201) or replace (204); token required.
``POST /things``               anonymous TD -> 201 + ``Location``; token required.
``GET /things/{id}``           ``application/td+json``.
``PATCH /things/{id}``         ``application/merge-patch+json``; re-validated; 204.
``DELETE /things/{id}``        204.
``GET /queries[/{name}]``      list / run the shipped named queries (parameters as query params).
=============================  ===============================================================

Every query runs with ``query_timeout_s`` and ``max_results`` (a capped answer
carries ``TinyFleet-Truncated: true``). A query the service did not write is
first refused if too deep, long or operator-heavy (400 ``query-too-complex``),
then run in a forked worker process with a memory share, SIGKILLed at the
deadline (503 ``query-timeout``); a worker that crashes or runs out of memory
costs that request a 503 ``query-aborted`` and nothing else
(:mod:`ontology.query_sandbox`). An update's ``WHERE`` is first counted in such a worker with
half the write time limit; past it the update gets 503 ``update-timeout`` and writes nothing
(:mod:`ontology.update_guard`). ``{id}`` is a TD id
(an absolute IRI, percent-encoded in the path) or a bare device id, which
names ``https://w3id.org/tinyfleet/id/device/{id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from ontology.directory import Directory, ThingRejected, parse_json_body
from ontology.events import mount_events
from ontology.named_queries import QueryParamError, get_named_query, named_queries, run_named_query
from ontology.openapi import openapi_document
from ontology.problems import Problem
from ontology.query_sandbox import QueryLimits, QueryTooComplex, WorkerDied, check_query_shape, run_in_worker
from ontology.sparql_protocol import Dataset as ProtocolDataset
from ontology.sparql_protocol import DatasetConflict, has_where, implicit_graphs, with_using
from ontology.sparql_results import OFFERS, negotiate, serialize
from ontology.store import QueryResult, QueryTimeout, RegistryStore, StoreError
from ontology.update_guard import check_update_cost

log = logging.getLogger("tinyfleet.registry")

TD_JSON = "application/td+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_TYPES = ("application/td+json", "application/json", "application/ld+json")
MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _media_type(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


def _too_large() -> Problem:
    # Connection: close, since the rest of the body is never read
    return Problem(413, "body-too-large", "request body too large", f"the limit is {MAX_BODY_BYTES} bytes",
                   headers={"Connection": "close"})


async def _body(request: Request) -> bytes:
    """The request body, refused (413) as soon as it is known to pass the cap: by its Content-Length, or
    while it streams (a chunked body has none), so an oversized body is never held in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _too_large()
            chunks.append(chunk)
    except ClientDisconnect:  # nobody is left to answer; a plain 400 ends the request without a logged crash
        raise Problem(400, "client-disconnected", "the client went away before its body ended") from None
    return b"".join(chunks)


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, "bad-encoding", "body is not UTF-8", f"invalid byte at offset {exc.start}") from None


_QUERY_DATASET = ("default-graph-uri", "named-graph-uri")
_UPDATE_DATASET = ("using-graph-uri", "using-named-graph-uri")
_DATASET_PARAMS = _QUERY_DATASET + _UPDATE_DATASET


@dataclasses.dataclass(frozen=True)
class Operation:
    """One SPARQL 1.1 Protocol request: a query or an update, its dataset, the base IRI (the endpoint's URL)."""

    query: str | None
    update: str | None
    dataset: ProtocolDataset
    base: str


def _single(pairs: Any, names: tuple[str, ...]) -> None:
    """400 if any of ``names`` occurs more than once (SPARQL 1.1 Protocol: exactly one query or update)."""
    seen: set[str] = set()
    for key, _value in pairs:
        if key in names:
            if key in seen:
                raise Problem(400, "invalid-request", f"repeated {key} parameter",
                              f"the request carries more than one '{key}'; send exactly one")
            seen.add(key)


def _thing_location(thing_id: str) -> str:
    return "/things/" + quote(thing_id, safe=":")


class _Auth:
    """Bearer-token check for every write; no token configured means the service is read-only."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def require(self, request: Request) -> None:
        if self.token is None:
            raise Problem(403, "read-only", "writes are disabled", "this registry was started without a token, so it accepts no updates")
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        challenge = 'Bearer realm="tinyfleet-registry"'
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(401, "unauthorized", "bearer token required", "send 'Authorization: Bearer <token>' to write",
                          headers={"WWW-Authenticate": challenge})
        if not hmac.compare_digest(value.strip().encode(), self.token.encode()):
            raise Problem(401, "unauthorized", "invalid token", "the bearer token is not this registry's token",
                          headers={"WWW-Authenticate": challenge + ', error="invalid_token"'})


def create_app(
    store: RegistryStore,
    token: str | None,
    query_timeout_s: float = 10.0,
    max_results: int | None = 10_000,
    *,
    purge_interval_s: float = 60.0,
    query_memory_bytes: int | None = None,
    query_limits: QueryLimits | None = None,
    isolate_queries: bool | None = None,
    write_timeout_s: float = 30.0,
) -> FastAPI:
    """The registry service over ``store``; writes need ``Authorization: Bearer <token>``.

    Untrusted SPARQL (``/sparql``, ``/search/sparql``) is shape-checked against ``query_limits``
    and, when ``isolate_queries`` (default: the store lives in this process), run in a forked
    worker with ``query_memory_bytes`` of memory (default a quarter of RAM), killed at
    ``query_timeout_s`` (:mod:`ontology.query_sandbox`). The shipped named queries run in-process.
    Every write answers within ``write_timeout_s`` (503 ``write-timeout`` past it).
    """
    limits = query_limits or QueryLimits(timeout_s=query_timeout_s, memory_bytes=query_memory_bytes)
    isolate = store.local if isolate_queries is None else isolate_queries
    directory = Directory(store, query_timeout_s=query_timeout_s)
    auth = _Auth(token)

    async def purge_loop() -> None:
        while True:
            await asyncio.sleep(purge_interval_s)
            try:
                await run_in_threadpool(directory.purge_expired)
            except Exception:  # keep purging later; one failed purge must not kill the task
                log.exception("purging expired registrations failed")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(purge_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="TinyFleet registry", version="1", lifespan=lifespan)
    app.state.directory = directory
    mount_events(app, store)  # GET /events[/{type}]: WoT Discovery's SSE notifications of registrations

    # -- errors -> problem+json --------------------------------------------------

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return exc.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110 15.5.6: Allow MUST list every method of the resource, over all its routes
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return Problem(exc.status_code, kind, str(exc.detail), headers=headers).response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return Problem(400, "invalid-request", "invalid request parameters", errors=errors).response(request.url.path)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return Problem(500, "internal-error", "internal error", type(exc).__name__).response(request.url.path)

    async def bounded(fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on a worker thread; 503 ``write-timeout`` if it has not finished in ``write_timeout_s``.

        The engine cannot abandon a transaction, so the thread runs on: the write may still land
        (it is atomic either way) and the client is told to check.
        """
        try:
            with anyio.fail_after(write_timeout_s):
                return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
        except TimeoutError:
            raise Problem(503, "write-timeout", "write time limit exceeded",
                          f"the operation did not finish in {write_timeout_s:g} s; it is atomic and may still complete, "
                          "so read the resource before retrying") from None

    # -- SPARQL --------------------------------------------------------------------

    def answer(result: QueryResult, accept: str | None) -> tuple[str, str | None, bytes, bool]:
        """(kind, media type or None if none is acceptable, body, truncated): what a worker sends back."""
        media_type = negotiate(accept, OFFERS[result.kind])
        body = serialize(result, media_type) if media_type is not None else b""
        return result.kind, media_type, body, result.truncated

    def untrusted(sparql: str, accept: str | None, dataset: ProtocolDataset | None, base: str | None) -> tuple[str, str | None, bytes, bool]:
        check_query_shape(sparql, limits)
        options = {"dataset": dataset, "base_iri": base}
        if not isolate:
            return answer(store.query(sparql, timeout_s=query_timeout_s, max_results=max_results, **options), accept)

        def work() -> tuple[str, str | None, bytes, bool]:  # in the worker: the parent kills it at the deadline
            return answer(store.query(sparql, timeout_s=None, max_results=max_results, isolate=False, **options), accept)

        return run_in_worker(work, timeout_s=query_timeout_s, memory_bytes=limits.memory())

    async def run_query(sparql: str, accept: str | None, bindings: dict[str, Any] | None = None, named: str | None = None,
                        dataset: ProtocolDataset | None = None, base: str | None = None) -> Response:
        def work() -> tuple[str, str | None, bytes, bool]:
            if named is not None:
                return answer(run_named_query(store, named, bindings or {}, timeout_s=query_timeout_s, max_results=max_results), accept)
            return untrusted(sparql, accept, dataset, base)

        try:
            kind, media_type, body, truncated = await run_in_threadpool(work)
        except QueryTimeout as exc:
            raise Problem(503, "query-timeout", "query time limit exceeded", str(exc)) from None
        except WorkerDied as exc:
            raise Problem(503, "query-aborted", "query stopped by its resource limits", str(exc)) from None
        except QueryParamError as exc:
            raise Problem(400, "invalid-parameter", "invalid query parameter", str(exc)) from None
        except QueryTooComplex as exc:
            raise Problem(400, "query-too-complex", "query refused before parsing", str(exc)) from None
        except ValueError as exc:
            raise Problem(400, "invalid-query", "invalid SPARQL query", str(exc)) from None
        except StoreError as exc:
            raise Problem(500, "store-error", "store error", str(exc)) from None
        if media_type is None:
            raise Problem(406, "not-acceptable", "no acceptable result format", f"{kind} results are available as {', '.join(OFFERS[kind])}")
        headers = {"TinyFleet-Truncated": "true"} if truncated else {}
        return Response(body, media_type=media_type, headers=headers)

    async def sparql_operation(request: Request) -> Operation:
        """The query or update of a SPARQL 1.1 Protocol request, with its dataset parameters and base IRI."""
        params = request.query_params
        pairs: list[tuple[str, str]] = list(params.multi_items())
        query = update = None
        if request.method == "GET":
            if "update" in params:
                raise Problem(400, "invalid-request", "updates must be POSTed", "send SPARQL updates by POST")
            if "query" not in params:
                raise Problem(400, "invalid-request", "missing query", "pass the SPARQL query as ?query=...")
            query = params["query"]
        else:
            media_type = _media_type(request)
            body = await _body(request)
            if media_type == "application/x-www-form-urlencoded":
                form_pairs = parse_qsl(_decode(body), keep_blank_values=True)
                pairs += form_pairs  # dataset parameters may come in the body or the URL
                form = dict(form_pairs)
                if ("query" in form) == ("update" in form):
                    raise Problem(400, "invalid-request", "exactly one of query or update",
                                  "the form must carry exactly one 'query' or 'update' field")
                query, update = form.get("query"), form.get("update")
            elif media_type == "application/sparql-query":
                query = _decode(body)
            elif media_type == "application/sparql-update":
                update = _decode(body)
            else:
                raise Problem(415, "unsupported-media-type", "unsupported content type",
                              "POST application/x-www-form-urlencoded, application/sparql-query or application/sparql-update")
        _single(pairs, ("query", "update"))  # in the body and the URL together
        values = {name: [v for k, v in pairs if k == name] for name in _DATASET_PARAMS}
        wrong = [n for n in (_UPDATE_DATASET if update is None else _QUERY_DATASET) if values[n]]
        if wrong:
            raise Problem(400, "invalid-request", "dataset parameter of the other operation",
                          f"{', '.join(wrong)} apply to {'updates' if update is None else 'queries'} only")
        try:
            if update is None:
                dataset = ProtocolDataset.of(values["default-graph-uri"], values["named-graph-uri"])
            else:
                dataset = ProtocolDataset.of(values["using-graph-uri"], values["using-named-graph-uri"])
        except ValueError as exc:
            raise Problem(400, "invalid-parameter", "invalid graph IRI", str(exc)) from None
        return Operation(query, update, dataset, str(request.url.replace(query="", fragment="")))

    def union_update(text: str, dataset: ProtocolDataset) -> str:
        """The update as the store runs it: its WHERE reads the protocol's graphs, or the same union a query reads."""
        text = implicit_graphs(text)
        if dataset.given:
            return with_using(text, dataset.default_graphs or (), dataset.named_graphs or ())
        if not store.local or not has_where(text):
            return text  # a remote store defines its own default graph; INSERT DATA, CLEAR ... read no graph
        names = store.graph_names()
        try:
            return with_using(text, names, names) if names else text
        except DatasetConflict:  # the update names its own dataset (USING/WITH): it means exactly that
            return text

    @app.api_route("/sparql", methods=["GET", "POST"])
    async def sparql(request: Request) -> Response:
        op = await sparql_operation(request)
        if op.update is not None:
            auth.require(request)
            try:
                check_query_shape(op.update, dataclasses.replace(limits, max_chars=MAX_BODY_BYTES))  # INSERT DATA may be long
                text = union_update(op.update, op.dataset)
                if isolate:  # its WHERE first, in a worker killed at half the write limit (ontology.update_guard)
                    await run_in_threadpool(lambda: check_update_cost(store, text, budget_s=write_timeout_s / 2,
                                                                      memory_bytes=limits.memory(), base_iri=op.base))
                await bounded(lambda: store.update(text, base_iri=op.base))
            except QueryTimeout as exc:
                raise Problem(503, "update-timeout", "update refused: its WHERE exceeded the time limit",
                              f"{exc}; nothing was written") from None
            except WorkerDied as exc:
                raise Problem(503, "update-aborted", "update refused: its WHERE was stopped by its resource limits",
                              f"{exc}; nothing was written") from None
            except QueryTooComplex as exc:
                raise Problem(400, "update-too-complex", "update refused before parsing", str(exc)) from None
            except DatasetConflict as exc:
                raise Problem(400, "dataset-conflict", "dataset given twice", str(exc)) from None
            except ValueError as exc:
                raise Problem(400, "invalid-update", "invalid SPARQL update", str(exc)) from None
            except StoreError as exc:
                raise Problem(500, "store-error", "store error", str(exc)) from None
            return Response(status_code=204)
        return await run_query(op.query or "", request.headers.get("accept"), dataset=op.dataset, base=op.base)

    @app.api_route("/search/sparql", methods=["GET", "POST"])
    async def search_sparql(request: Request) -> Response:
        op = await sparql_operation(request)
        if op.update is not None:
            raise Problem(400, "invalid-request", "search is read-only", "send updates to /sparql")
        return await run_query(op.query or "", request.headers.get("accept"), dataset=op.dataset, base=op.base)

    @app.get("/queries")
    async def list_queries() -> JSONResponse:
        return JSONResponse([
            {"name": q.name, "summary": q.summary, "params": [{"name": p.name, "kind": p.kind, "doc": p.doc} for p in q.params]}
            for q in named_queries().values()
        ])

    @app.get("/queries/{name}")
    async def named_query(name: str, request: Request) -> Response:
        try:
            get_named_query(name)
        except QueryParamError as exc:
            raise Problem(404, "not-found", "no such named query", str(exc)) from None
        return await run_query("", request.headers.get("accept"), dict(request.query_params), named=name)

    # -- Things API ----------------------------------------------------------------

    def rejected(exc: ThingRejected) -> Problem:
        return Problem(400, "invalid-thing-description", exc.summary, "; ".join(exc.problems) if exc.problems else None, errors=exc.problems)

    async def td_body(request: Request, allowed: tuple[str, ...]) -> Any:
        if _media_type(request) not in allowed:
            raise Problem(415, "unsupported-media-type", "unsupported content type", f"send {' or '.join(allowed)}")
        try:
            return parse_json_body(await _body(request))
        except ThingRejected as exc:
            raise rejected(exc) from None

    async def write(fn: Any, *args: Any) -> Any:
        try:
            return await bounded(fn, *args)
        except ThingRejected as exc:
            raise rejected(exc) from None
        except KeyError:
            raise Problem(404, "not-found", "no such Thing", f"no Thing {args[0]!r} is registered") from None
        except ValueError as exc:  # a malformed id in the path
            raise Problem(400, "invalid-id", "invalid Thing id", str(exc)) from None
        except StoreError as exc:
            raise Problem(500, "store-error", "store error", str(exc)) from None

    @app.get("/things")
    async def list_things(request: Request) -> Response:
        offset = _int_param(request, "offset", 0, 0, None)
        limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        things, total = await write(lambda: directory.list(offset=offset, limit=limit))
        headers = {}
        if offset + len(things) < total:
            headers["Link"] = f'</things?offset={offset + len(things)}&limit={limit}>; rel="next"'
        return JSONResponse([t.document for t in things], media_type="application/ld+json", headers=headers)

    @app.post("/things")
    async def create_thing(request: Request) -> Response:
        auth.require(request)
        td = await td_body(request, JSON_TYPES)
        iri = await write(directory.create_anonymous, td)
        return Response(status_code=201, headers={"Location": _thing_location(iri)})

    @app.put("/things/{thing_id:path}")
    async def put_thing(thing_id: str, request: Request) -> Response:
        auth.require(request)
        td = await td_body(request, JSON_TYPES)
        created = await write(directory.put, thing_id, td)
        if created:
            return Response(status_code=201, headers={"Location": _thing_location(thing_id)})
        return Response(status_code=204)

    @app.get("/things/{thing_id:path}")
    async def get_thing(thing_id: str) -> Response:
        thing = await write(directory.get, thing_id)
        if thing is None:
            raise Problem(404, "not-found", "no such Thing", f"no live Thing {thing_id!r} is registered")
        return JSONResponse(thing.document, media_type=TD_JSON)

    @app.patch("/things/{thing_id:path}")
    async def patch_thing(thing_id: str, request: Request) -> Response:
        auth.require(request)
        patch = await td_body(request, (MERGE_PATCH,))
        await write(directory.patch, thing_id, patch)
        return Response(status_code=204)

    @app.delete("/things/{thing_id:path}")
    async def delete_thing(thing_id: str, request: Request) -> Response:
        auth.require(request)
        if not await write(directory.delete, thing_id):
            raise Problem(404, "not-found", "no such Thing", f"no Thing {thing_id!r} is registered")
        return Response(status_code=204)

    document = openapi_document(app.title, app.version)
    app.openapi = lambda: document  # type: ignore[method-assign]  # written out: see ontology.openapi
    return app


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at this request's path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in app.routes:
        match, _scope = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, "invalid-request", f"invalid {name}", f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise Problem(400, "invalid-request", f"invalid {name}", f"{name} must be {bound}, got {value}")
    return value
