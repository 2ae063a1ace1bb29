"""The console's web app: the Fleet, Federations and Registry pages, their live fragments and the event stream.

:func:`create_console_app` takes a :class:`ConsoleState` (the runs being
watched, the registry clients, the broker subscription) and serves:

==============================  =====================================================================
``/fleet``, ``/federations``,   the pages (whole HTML, usable without JavaScript)
``/federations/{name}``,
``/registry``
``/fragments/...``              the live parts of those pages, re-fetched by ``static/console.js``
``/api/stream``                 SSE: ``round`` when a watched run records a round, ``presence`` when
                                the broker reports a device change, ``keep-alive`` comments
``/api/registry/...``           the registry's own API (``/sparql``, ``/things``, ``/queries``,
                                ``/events``): the registry app itself, or a proxy to its URL
``/api/fleet``, ``/api/runs``   the same data as JSON
==============================  =====================================================================

It is read-only: nothing here writes but ``POST /registry/update``, which hands
the user's SPARQL update and token to the registry, and the registry decides.
Every handler answers; a registry that is down or refuses is shown on the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.staticfiles import StaticFiles

from ontology.events import LIVE_THINGS
from ontology.named_queries import get_named_query
from server.console.fleet import (
    FEDERATIONS, Federation, FleetFilter, RegistryFacts, fleet_rows, needs_by_model,
    offers_by_device,
)  # fmt: skip
from server.console.html import e, layout, notice
from server.console.pages_fleet import fleet_page, fleet_table
from server.console.pages_registry import registry_page, results
from server.console.pages_runs import federations_page, lineage_table, run_live, run_page, runs_table
from server.console.presence import Presence
from server.console.registry_client import SPARQL_JSON, RegistryClient, RegistryError, bindings, iri_ref, problem_text
from server.console.sources import RunSource
from server.registry.registry_selection import DEVICE_OFFERS, MODEL_NEEDS

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: The console's registry answers are rationed: its queries share the server's CPU and store with the round loop.
#: They are reused for FACTS_MIN_GAP_S; after that one small query (FACTS_FINGERPRINT) says whether any TD, model
#: or federation changed, and only then, or after FACTS_TTL_S, are they asked again.
FACTS_MIN_GAP_S = 1.0
FACTS_TTL_S = 60.0
#: A run's lineage (``model-lineage`` walks every version back to the first) is re-read at most this often.
LINEAGE_MIN_GAP_S = 10.0
FACTS_FINGERPRINT = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?things ?hash ?models ?federations WHERE {
  { SELECT (COUNT(?g) AS ?things) (SHA1(GROUP_CONCAT(SHA1(?doc); separator=" ")) AS ?hash)
    WHERE { GRAPH ?g { ?g tf:thingDescriptionDocument ?doc } } }
  { SELECT (COUNT(DISTINCT ?m) AS ?models) WHERE { ?m tf:modelSizeBytes ?size } }
  { SELECT (COUNT(DISTINCT ?f) AS ?federations) WHERE { ?f a tf:Federation } }
}"""
#: The stream looks for news at most this often (a device storm becomes one event).
STREAM_TICK_S = 0.5
KEEPALIVE_S = 15.0
MAX_FORM_BYTES = 1024 * 1024
_FORWARDED = ("accept", "content-type", "authorization", "last-event-id")


class Wakeup:
    """Lets another thread (the round loop's observer, paho's network thread) wake the streams at once."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self) -> None:
        self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()

    def poke(self) -> None:
        """Thread-safe and cheap (one write to the loop's self-pipe); a no-op before the app has started."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        event = self._event
        if event is None:
            await asyncio.sleep(timeout_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)


@dataclass
class ConsoleState:
    """Everything the console reads from. ``registry`` serves the user's queries and writes, ``reader`` the
    console's own reads (in process: a second, non-isolated app over the same store; remote: the same URL)."""

    runs: list[RunSource] = field(default_factory=list)
    registry: RegistryClient | None = None
    reader: RegistryClient | None = None
    registry_app: Any = None  # the registry app mounted at /api/registry (in process)
    registry_url: str | None = None  # or the URL /api/registry proxies to
    presence: Presence | None = None
    writable: bool = False  # the registry has a token: writes are possible with it
    closing: bool = False
    wakeup: Wakeup = field(default_factory=Wakeup)
    _facts: tuple[float, RegistryFacts] | None = None
    _fingerprint: tuple[float, Any] | None = None  # (when loaded, FACTS_FINGERPRINT's row then)
    _lineage: dict[str, tuple[float, int, Any]] = field(default_factory=dict)  # federation -> (when, version, lineage)
    _facts_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def round_recorded(self) -> None:
        """Any thread: a round ended; the streams tell the pages (the run's versions are re-read by feed version)."""
        self.wakeup.poke()

    def run(self, name: str) -> RunSource | None:
        return next((r for r in self.runs if r.name == name or r.federation_id() == name), None)

    async def facts(self) -> RegistryFacts:
        """The registry's answers the pages need, at most :data:`FACTS_TTL_S` old."""
        if self.reader is None:
            return RegistryFacts(error=None)
        async with self._facts_lock:
            now = time.monotonic()
            if self._facts is not None and now - self._facts[0] < FACTS_MIN_GAP_S:
                return self._facts[1]
            try:
                fingerprint = (await self.reader.select(FACTS_FINGERPRINT))[1]
            except RegistryError:
                fingerprint = None
            if (self._facts is not None and fingerprint is not None and self._fingerprint is not None
                    and fingerprint == self._fingerprint[1] and now - self._fingerprint[0] < FACTS_TTL_S):
                self._facts = (now, self._facts[1])  # nothing changed: the same answers, looked at again later
                return self._facts[1]
            facts = await load_facts(self.reader)
            self._facts = (now, facts)
            self._fingerprint = (now, fingerprint) if fingerprint is not None and facts.error is None else None
            return facts


async def load_facts(client: RegistryClient) -> RegistryFacts:
    """Things, what fits each device, the federations, who is eligible for each and the facts that say why not."""
    facts = RegistryFacts()
    try:
        _, documents = await client.select(LIVE_THINGS)  # read-only (GET /things would purge expired leases)
        facts.things = [td for row in documents if isinstance(td := _json(row["doc"]), dict)]
        _, fits = await client.select(get_named_query("models-for-device").text)  # ?device unbound: every device
        for row in fits:
            facts.fits.setdefault(row["device"], []).append(row.get("name") or row["model"].rsplit("/", 1)[-1])
        _, federations = await client.select(FEDERATIONS)
        facts.federations = [Federation(r["federation"], r["model"], r["task"], r.get("task_label") or r["task"].rsplit("/", 1)[-1])
                             for r in federations]
        for federation in facts.federations:
            _, rows = await client.named("eligible-devices", {"model": federation.model, "task": federation.task})
            facts.eligible[federation.name] = {r["device"] for r in rows}
        facts.needs = needs_by_model((await client.select(MODEL_NEEDS))[1])
        facts.offers = offers_by_device((await client.select(DEVICE_OFFERS))[1])
    except RegistryError as exc:
        facts.error = str(exc)
    return facts


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def create_console_app(state: ConsoleState) -> FastAPI:
    """The console over ``state`` (see the module docstring for its routes)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.wakeup.bind()
        try:
            yield
        finally:
            state.closing = True
            for client in {id(c): c for c in (state.registry, state.reader) if c is not None}.values():
                await client.close()

    app = FastAPI(title="TinyFleet console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("console error on %s", request.url.path)
        return _page(layout("Error", "", notice(f"the console failed on {request.url.path}: {type(exc).__name__}: {exc}")), 500)

    def registry_label() -> str:
        return state.registry.label if state.registry is not None else "none (start the console with --registry)"

    def broker_label() -> str:
        presence = state.presence
        if presence is None:
            return "no broker (start the console with --broker or a workdir holding accounts.json)"
        return f"{presence.broker} ({'connected' if presence.connected else presence.error or 'connecting'})"

    # -- Fleet -------------------------------------------------------------------

    async def fleet_data(request: Request) -> tuple[list[Any], RegistryFacts, FleetFilter]:
        params = request.query_params
        chosen = FleetFilter(params.get("task", ""), params.get("profile", ""), params.get("eligibility", ""))
        if chosen.eligibility not in ("", "eligible", "excluded"):
            raise _BadRequest(f"eligibility must be 'eligible', 'excluded' or empty, not {chosen.eligibility!r}")
        facts = await state.facts()
        seen = state.presence.devices() if state.presence is not None else {}
        rounds = [record for run in state.runs for record in _fresh(run)]
        return fleet_rows(facts, seen, rounds), facts, chosen

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/fleet")

    @app.get("/fleet")
    async def fleet(request: Request) -> HTMLResponse:
        rows, facts, chosen = await fleet_data(request)
        return _page(fleet_page(rows, facts, chosen, broker=broker_label(), registry=registry_label(), writable=state.writable))

    @app.get("/fragments/fleet")
    async def fleet_fragment(request: Request) -> HTMLResponse:
        rows, facts, chosen = await fleet_data(request)
        return _page(fleet_table(rows, facts, chosen))

    @app.get("/api/fleet")
    async def fleet_json(request: Request) -> JSONResponse:
        rows, facts, _chosen = await fleet_data(request)
        return JSONResponse({"devices": [asdict(r) for r in rows], "federations": [asdict(f) for f in facts.federations],
                             "registry_error": facts.error, "broker": broker_label()})

    # -- Federations -------------------------------------------------------------

    async def runs_html() -> tuple[str, str | None]:
        facts = await state.facts()
        by_name = {f.name: f for f in facts.federations}
        watched = []
        for run in state.runs:
            info = run.info()
            federation = by_name.get(info.get("federation") or "")
            watched.append((info, _fresh(run), federation.task_label if federation else ""))
        names = {info.get("federation") for info, _, _ in watched}
        others = []
        for federation in facts.federations:
            if federation.name not in names:
                others.append((federation.name, federation.task_label, await _version_count(federation)))
        return runs_table(watched, others), facts.error

    async def _version_count(federation: Federation) -> int:
        try:
            _, rows = await state.reader.select(_VERSIONS.format(federation=iri_ref(federation.iri)))  # type: ignore[union-attr]
        except (RegistryError, ValueError):
            return 0
        return int(rows[0].get("n", 0)) if rows else 0

    @app.get("/federations")
    async def federations() -> HTMLResponse:
        body, error = await runs_html()
        return _page(federations_page(body, error, state.writable))

    @app.get("/fragments/federations")
    async def federations_fragment() -> HTMLResponse:
        return _page((await runs_html())[0])

    @app.get("/api/runs")
    async def runs_json() -> JSONResponse:
        return JSONResponse([{**run.info(), "rounds": _fresh(run)} for run in state.runs])

    Lineage = tuple[list[str], list[dict[str, str]]]

    async def lineage_of(name: str, fresh: bool = False) -> tuple[Lineage | None, Federation | None, str | None]:
        facts = await state.facts()
        federation = next((f for f in facts.federations if f.name == name), None)
        if federation is None or state.reader is None:
            return None, None, facts.error
        run = state.run(name)
        version = run.feed.version if run is not None else -1
        cached = state._lineage.get(name)  # (when read, the run's feed version then, the lineage)
        recent = cached is not None and (cached[1] == version or time.monotonic() - cached[0] < LINEAGE_MIN_GAP_S)
        if not fresh and recent:
            return cached[2], federation, None  # type: ignore[index]  # no round since, or read moments ago
        try:
            _, latest = await state.reader.select(_LATEST.format(federation=iri_ref(federation.iri)))
            lineage: Lineage = ([], [])
            if latest and latest[0].get("version"):
                lineage = await state.reader.named("model-lineage", {"version": latest[0]["version"]})
        except (RegistryError, ValueError) as exc:
            return None, federation, str(exc)
        state._lineage[name] = (time.monotonic(), version, lineage)
        return lineage, federation, None

    @app.get("/federations/{name}")
    async def federation_page(name: str) -> HTMLResponse:
        run = state.run(name)
        lineage, federation, error = await lineage_of(name, fresh=True)  # a page asked for: never a cached answer
        if run is None and federation is None:
            return _page(layout("Not found", "federations", notice(f"no federation {name!r}: neither a watched run nor "
                                                                  "in the registry")), 404)
        info = {**run.info(), "workdir": run.workdir} if run is not None else None
        task = federation.task_label if federation is not None else ""
        return _page(run_page(name, info, task, _fresh(run) if run is not None else None, lineage, error, state.writable))

    @app.get("/fragments/federations/{name}")
    async def run_fragment(name: str) -> HTMLResponse:
        run = state.run(name)
        if run is None:
            return _page(notice(f"no watched run {name!r}"), 404)
        return _page(run_live(_fresh(run)))

    @app.get("/fragments/lineage/{name}")
    async def lineage_fragment(name: str) -> HTMLResponse:
        lineage, _federation, error = await lineage_of(name)
        return _page(notice(error) + (lineage_table(*lineage) if lineage is not None else ""))

    # -- Registry ----------------------------------------------------------------

    @app.get("/registry")
    async def registry(request: Request) -> HTMLResponse:
        params = request.query_params
        sparql, named, thing_id = params.get("query", ""), params.get("named", ""), params.get("thing", "")
        values = {k[2:]: v for k, v in params.items() if k.startswith("p.")}
        client, error, queries, things, thing = state.registry, None, [], [], None
        sparql_result = named_result = ""
        if client is None:
            error = "no registry: start the console with --registry DIR or --registry http://HOST:PORT"
        else:
            try:
                queries, things = await client.queries(), await client.things()
                if thing_id:
                    thing = await client.thing(thing_id)
            except RegistryError as exc:
                error = str(exc)
            if sparql:
                sparql_result = await _run_sparql(client, sparql)
            if named:
                try:
                    columns, rows = await client.named(named, values)
                    named_result = f"<h3>{e(named)}</h3>" + results(columns, rows, table_id="named-rows")
                except RegistryError as exc:
                    named_result = notice(str(exc))
        return _page(registry_page(label=registry_label(), queries=queries, things=things, sparql=sparql,
                                   sparql_result=sparql_result, named=named, named_values=values, named_result=named_result,
                                   thing=thing, thing_id=thing_id, write_result="", error=error, writable=state.writable))

    @app.post("/registry/update")
    async def registry_update(request: Request) -> HTMLResponse:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _page(layout("Registry", "registry", notice(f"the form is over {MAX_FORM_BYTES} bytes")), 413)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        update, token = form.get("update", ""), form.get("token", "").strip()
        if state.registry is None:
            message, status = notice("no registry to write to"), 409
        elif not update.strip():
            message, status = notice("the update is empty"), 400
        else:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                answer = await state.registry.request("POST", "/sparql", data={"update": update}, headers=headers)
            except RegistryError as exc:
                message, status = notice(str(exc)), 502
            else:
                status = 200 if answer.status_code < 300 else answer.status_code
                message = (notice("the registry applied the update", "ok") if answer.status_code < 300
                           else notice(f"refused by the registry: {problem_text(answer)}"))
        return _page(layout("Registry", "registry", f'<div id="write-result">{message}</div>'
                            '<p><a href="/registry">back to the registry</a></p>', writable=state.writable), status)

    async def _run_sparql(client: RegistryClient, sparql: str) -> str:
        try:
            answer = await client.request("POST", "/sparql", data={"query": sparql},
                                          headers={"Accept": f"{SPARQL_JSON}, text/turtle;q=0.9"})
        except RegistryError as exc:
            return notice(str(exc))
        if answer.status_code >= 400:
            return notice(problem_text(answer))
        if answer.headers.get("content-type", "").startswith(SPARQL_JSON):
            body = answer.json()
            if "boolean" in body:
                return f'<p class="summary" id="sparql-boolean">{e(str(body["boolean"]).lower())}</p>'
            return results(*bindings(body), table_id="sparql-rows")
        return f'<pre class="turtle">{e(answer.text)}</pre>'

    # -- the registry's own API, for the browser -------------------------------------

    if state.registry_app is not None:
        app.mount("/api/registry", state.registry_app)
    elif state.registry_url is not None:
        @app.api_route("/api/registry/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def registry_proxy(path: str, request: Request) -> Response:
            client = state.registry
            assert client is not None
            headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
            outgoing = client.client.build_request(request.method, f"/{path}", params=list(request.query_params.multi_items()),
                                                   headers=headers, content=await request.body())
            try:
                answer = await client.client.send(outgoing, stream=True)
            except Exception as exc:  # httpx.HTTPError and friends: the registry is down
                return JSONResponse({"title": "registry unreachable", "detail": str(exc), "status": 502}, status_code=502,
                                    media_type="application/problem+json")
            kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "cache-control", "location", "link")}
            return StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, headers=kept,
                                     background=BackgroundTask(answer.aclose))

    # -- the stream ----------------------------------------------------------------

    @app.get("/api/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            yield f"retry: 2000\n\nevent: hello\ndata: {json.dumps({'runs': [r.name for r in state.runs]})}\n\n"
            rounds = {run.name: run.feed.version for run in state.runs}
            presence = state.presence.version if state.presence is not None else 0
            quiet_since = time.monotonic()
            while not state.closing:
                await state.wakeup.wait(KEEPALIVE_S / 3)
                await asyncio.sleep(STREAM_TICK_S)  # what else happens meanwhile comes in the same event
                sent = False
                for run in state.runs:
                    run.feed.refresh()
                    if run.feed.version != rounds[run.name]:
                        rounds[run.name] = run.feed.version
                        last = run.feed.rounds()[-1:] or [{}]
                        yield f"event: round\ndata: {json.dumps({'run': run.name, 'round': last[0].get('round')})}\n\n"
                        sent = True
                if state.presence is not None and state.presence.version != presence:
                    presence = state.presence.version
                    yield f"event: presence\ndata: {json.dumps({'version': presence})}\n\n"
                    sent = True
                if sent:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": True, "broker": broker_label(), "registry": registry_label()})

    @app.exception_handler(_BadRequest)
    async def _bad(request: Request, exc: _BadRequest) -> Response:
        return _page(layout("Bad request", "", notice(str(exc))), 400)

    return app


class _BadRequest(ValueError):
    """A page's parameter is wrong; the page says which."""


def _fresh(run: RunSource) -> list[dict[str, Any]]:
    run.feed.refresh()
    return run.feed.rounds()


_VERSIONS = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT (COUNT(DISTINCT ?version) AS ?n) WHERE {{ ?round tf:partOfFederation {federation} .
  ?version <http://www.w3.org/ns/prov#wasGeneratedBy> ?round }}"""
_LATEST = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?version ?number WHERE {{ ?round tf:partOfFederation {federation} .
  ?version <http://www.w3.org/ns/prov#wasGeneratedBy> ?round ; tf:versionNumber ?number }}
ORDER BY DESC(?number) LIMIT 1"""
