"""W3C WoT Discovery notifications: the ``/events`` Server-Sent Events stream of registrations.

WoT Discovery 1.0 (§ Notification) has a directory announce every change of its
registrations as SSE events of three types, ``thing_created``, ``thing_updated``
and ``thing_deleted``, on ``/events`` (all three) and ``/events/{type}`` (one).
An event's data is ``{"id": "<TD id>"}``; with ``?diff=true`` a created event
carries the whole TD, an updated one the changed members as a JSON Merge Patch
(RFC 7396) from the old TD to the new, a deleted one still only the id. Every
event has an SSE ``id``, so a client that reconnects with ``Last-Event-ID`` gets
what it missed (from the last :data:`HISTORY` events this process has seen).

Why the stream watches the store instead of the HTTP routes: Things reach the
registry by several doors, ``PUT /things``, ``tinyfleet registry add``, the
federation server registering what its devices announce (which calls
:class:`ontology.directory.Directory` directly) and lease expiry, and one
process may share its store with a console. A poll of the live Things
(``poll_s``, only while someone listens) sees them all, in one place: it
compares each TD's stored document with the last poll's. It reads, never
writes (no purge), and treats a lapsed lease as a deletion.

Limits: a change undone within one poll is not seen, and two changes of one TD
within one poll are one ``thing_updated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse

from ontology.problems import Problem
from ontology.store import RegistryStore

log = logging.getLogger("tinyfleet.registry.events")

CREATED, UPDATED, DELETED = "thing_created", "thing_updated", "thing_deleted"
EVENT_TYPES = (CREATED, UPDATED, DELETED)
#: Events kept for clients that reconnect with ``Last-Event-ID``.
HISTORY = 1000
#: Seconds between SSE comments that keep an idle stream (and any proxy on the way) open.
KEEPALIVE_S = 15.0

#: Every live Thing Description's id and stored document, read-only (expired leases are left out, not purged).
LIVE_THINGS = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?g ?doc WHERE {
  GRAPH ?g { ?g tf:thingDescriptionDocument ?doc OPTIONAL { ?g tf:registrationExpires ?expires } }
  FILTER(!BOUND(?expires) || ?expires > NOW())
}"""

#: One row that changes whenever a live TD does (the count and a hash of every document's hash), so a quiet poll
#: costs one small answer instead of every document. GROUP_CONCAT's order is not fixed: a spurious change only
#: makes that poll read the documents.
FINGERPRINT = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT (COUNT(?g) AS ?n) (SHA1(GROUP_CONCAT(SHA1(?doc); separator=" ")) AS ?hash) WHERE {
  GRAPH ?g { ?g tf:thingDescriptionDocument ?doc OPTIONAL { ?g tf:registrationExpires ?expires } }
  FILTER(!BOUND(?expires) || ?expires > NOW())
}"""


def merge_diff(old: Any, new: Any) -> Any:
    """The RFC 7396 merge patch that turns ``old`` into ``new`` (``ontology.directory.merge_patch(old, p) == new``).

    Members that vanished become ``null``; a changed non-object value is sent whole. A ``null`` inside
    ``new`` cannot be expressed by a merge patch (the RFC's own limit); TDs have none.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


@dataclass(frozen=True)
class ThingEvent:
    """One change of one registration, as the stream sends it."""

    id: int  # the SSE id: increasing within this process
    type: str  # one of EVENT_TYPES
    thing: str  # the TD's id
    full: dict[str, Any] | None  # the diff=true payload: the TD (created), the merge patch (updated), None (deleted)

    def data(self, diff: bool) -> dict[str, Any]:
        """The event's JSON data: the id, plus with ``diff`` what changed."""
        if diff and self.full is not None:
            return {**self.full, "id": self.thing}
        return {"id": self.thing}

    def sse(self, diff: bool) -> str:
        """The event in the ``text/event-stream`` format."""
        return f"event: {self.type}\nid: {self.id}\ndata: {json.dumps(self.data(diff), ensure_ascii=False)}\n\n"


class ThingEvents:
    """The registrations' change feed: polls the store while someone listens, fans events out to each listener."""

    def __init__(self, store: RegistryStore, *, poll_s: float = 1.0, query_timeout_s: float = 10.0) -> None:
        self.store = store
        self.poll_s = poll_s
        self.query_timeout_s = query_timeout_s
        self._documents: dict[str, str] | None = None  # thing id -> stored document text, at the last poll
        self._fingerprint: tuple[str, str] | None = None  # FINGERPRINT's answer at the last poll
        self._history: deque[ThingEvent] = deque(maxlen=HISTORY)
        self._next_id = 1
        self._listeners: set[asyncio.Queue[ThingEvent]] = set()
        self._poller: asyncio.Task[None] | None = None
        self.closed = False  # set by close(): every stream ends within a second
        self._polling = asyncio.Lock()  # one poll at a time: the baseline poll and the poller's share the snapshot

    # -- the poll (a worker thread: pyoxigraph answers are read on the thread that asked) --

    def _live(self) -> dict[str, str]:
        result = self.store.query(LIVE_THINGS, timeout_s=self.query_timeout_s, max_results=None)
        return {str(g): str(doc) for g, doc in result.rows}

    def _changed(self) -> bool:
        rows = self.store.query(FINGERPRINT, timeout_s=self.query_timeout_s).rows
        fingerprint = (str(rows[0][0]), str(rows[0][1])) if rows else ("0", "")
        changed, self._fingerprint = fingerprint != self._fingerprint, fingerprint
        return changed

    def poll(self) -> list[ThingEvent]:
        """Compare the live Things with the last poll; the events that tells (none at the first poll)."""
        if not self._changed() and self._documents is not None:
            return []
        now = self._live()
        before, self._documents = self._documents, now
        if before is None:
            return []
        events = []
        for thing in sorted(now.keys() - before.keys()):
            events.append(self._event(CREATED, thing, _json(now[thing])))
        for thing in sorted(before.keys() & now.keys()):
            if before[thing] != now[thing]:
                events.append(self._event(UPDATED, thing, merge_diff(_json(before[thing]), _json(now[thing]))))
        for thing in sorted(before.keys() - now.keys()):
            events.append(self._event(DELETED, thing, None))
        return events

    def _event(self, kind: str, thing: str, full: Any) -> ThingEvent:
        event = ThingEvent(self._next_id, kind, thing, full if isinstance(full, dict) else None)
        self._next_id += 1
        return event

    # -- the event loop ------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self._listeners and not self.closed:
                try:
                    async with self._polling:
                        events = await anyio.to_thread.run_sync(self.poll)
                except Exception:  # a failed poll (store busy, timeout) is retried at the next; listeners stay
                    log.exception("polling the registrations failed")
                    events = []
                for event in events:
                    self._history.append(event)
                    for queue in self._listeners:
                        queue.put_nowait(event)
                await asyncio.sleep(self.poll_s)
        finally:
            self._poller = None

    def missed(self, last_event_id: str | None) -> list[ThingEvent]:
        """The kept events after ``last_event_id`` (none for a missing, foreign or unparsable id)."""
        try:
            last = int(last_event_id) if last_event_id else None
        except ValueError:
            return []
        if last is None or last >= self._next_id:  # an id from another process's stream: nothing to replay
            return []
        return [event for event in self._history if event.id > last]

    async def ready(self) -> None:
        """Take the first poll's baseline if none is taken yet: a change after this returns is an event."""
        async with self._polling:
            if self._documents is None:
                await anyio.to_thread.run_sync(self.poll)

    def close(self) -> None:
        """End every stream (any thread): a server that shuts down must not wait for its listeners to hang up."""
        self.closed = True

    async def listen(self, last_event_id: str | None = None) -> AsyncIterator[ThingEvent | None]:
        """Every event from now on (after the missed ones); ``None`` every :data:`KEEPALIVE_S` of quiet.

        Ends once :meth:`close` is called.
        """
        queue: asyncio.Queue[ThingEvent] = asyncio.Queue()
        for event in self.missed(last_event_id):
            queue.put_nowait(event)
        await self.ready()
        self._listeners.add(queue)
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._run())
        try:
            quiet = 0.0
            while not self.closed:
                try:
                    yield await asyncio.wait_for(queue.get(), 1.0)
                    quiet = 0.0
                except TimeoutError:
                    quiet += 1.0
                    if quiet >= KEEPALIVE_S:
                        quiet = 0.0
                        yield None
        finally:
            self._listeners.discard(queue)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise Problem(400, "invalid-request", f"invalid {name}", f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def events_router(events: ThingEvents) -> APIRouter:
    """``GET /events`` and ``GET /events/{type}`` (left out of the OpenAPI document: a stream never ends)."""
    router = APIRouter()

    async def stream(request: Request, kinds: tuple[str, ...]) -> StreamingResponse:
        diff = _flag(request, "diff")

        async def body() -> AsyncIterator[str]:
            await events.ready()  # so a client that has read the first line misses no later change
            yield f"retry: {int(events.poll_s * 2000)}\n\n"  # the browser's reconnect delay
            async with contextlib.aclosing(events.listen(request.headers.get("last-event-id"))) as feed:
                async for event in feed:
                    if event is None:
                        yield ": keep-alive\n\n"
                    elif event.type in kinds:
                        yield event.sse(diff)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    @router.get("/events", include_in_schema=False)
    async def all_events(request: Request) -> StreamingResponse:
        return await stream(request, EVENT_TYPES)

    @router.get("/events/{kind}", include_in_schema=False)
    async def one_kind(kind: str, request: Request) -> StreamingResponse:
        if kind not in EVENT_TYPES:
            raise Problem(404, "not-found", "no such event type", f"event types are {', '.join(EVENT_TYPES)}")
        return await stream(request, (kind,))

    return router


#: Every feed of this process, closed when uvicorn is told to exit (see :func:`_close_on_server_exit`).
_FEEDS: weakref.WeakSet[ThingEvents] = weakref.WeakSet()


def _close_on_server_exit() -> None:
    """Make uvicorn's exit signal (Ctrl-C, SIGTERM) end every event stream first.

    uvicorn shuts down gracefully: it waits for every open response to finish, and an event stream never
    finishes by itself, so ``tinyfleet registry serve`` with one browser watching would never exit. Nothing
    reaches the app when the signal comes, so, as sse-starlette does, uvicorn's ``Server.handle_exit`` is
    wrapped (once per process) to close the feeds, whose streams then end within a second.
    """
    try:
        from uvicorn.server import Server
    except ImportError:  # served by something else: its own shutdown rules apply
        return
    if getattr(Server.handle_exit, "_closes_thing_events", False):
        return
    original = Server.handle_exit

    def handle_exit(self: Any, sig: int, frame: Any) -> None:
        for feed in list(_FEEDS):
            feed.close()
        original(self, sig, frame)

    handle_exit._closes_thing_events = True  # type: ignore[attr-defined]
    Server.handle_exit = handle_exit  # type: ignore[method-assign]


def mount_events(app: FastAPI, store: RegistryStore, *, poll_s: float = 1.0) -> ThingEvents:
    """Serve ``/events`` for ``store`` on ``app``; the feed (``app.state.events``), e.g. to share with a console."""
    events = ThingEvents(store, poll_s=poll_s)
    _FEEDS.add(events)
    _close_on_server_exit()
    app.include_router(events_router(events))
    app.state.events = events
    return events
