"""The registry's WoT Discovery ``/events`` stream, read over real HTTP (uvicorn on loopback) while Things change."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator

import httpx
import pytest

from edge.profiles import PROFILES
from ontology.directory import Directory, merge_patch
from ontology import events
from ontology.events import merge_diff
from ontology.service import create_app
from ontology.store import open_store
from ontology.thing_description import device_iri, thing_description
from registry_server import ThreadServer

TOKEN = "events-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/td+json"}


class EventReader:
    """Reads an SSE stream on a thread; ``next()`` gives (event, id, data) or fails after a deadline.

    The service sends a keep-alive comment every ``KEEPALIVE_S`` (shortened by the fixture), at which the thread
    sees ``close()`` and hangs up, so no stream outlives its test.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, headers or {}
        self.events: queue.Queue[tuple[str, str, dict]] = queue.Queue()
        self.status: queue.Queue[int] = queue.Queue()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.status.get(timeout=10) == 200

    def _read(self) -> None:
        timeout = httpx.Timeout(5.0, read=30.0)
        with httpx.Client(timeout=timeout) as client, client.stream("GET", self.url, headers=self.headers) as response:
            fields: dict[str, str] = {}
            lines = response.iter_lines()
            if response.status_code == 200:
                next(lines)  # the first line comes once the stream's baseline is taken: later changes are events
            self.status.put(response.status_code)
            for line in lines:
                if self._stop.is_set():
                    return
                if not line:
                    if "event" in fields:
                        self.events.put((fields["event"], fields.get("id", ""), json.loads(fields["data"])))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.strip()

    def next(self, timeout_s: float = 10.0) -> tuple[str, str, dict]:
        return self.events.get(timeout=timeout_s)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


@pytest.fixture
def served(monkeypatch) -> Iterator[tuple[str, Directory]]:
    monkeypatch.setattr(events, "KEEPALIVE_S", 0.2)
    with open_store("memory:") as store:
        app = create_app(store, TOKEN, purge_interval_s=3600)
        with ThreadServer(app) as url:
            yield url, app.state.directory


def _td(device: str) -> dict:
    return thing_description(PROFILES["esp32s3"], device)


def test_create_update_delete_arrive_in_order_with_their_diffs(served) -> None:
    url, _directory = served
    reader = EventReader(f"{url}/events?diff=true")
    plain = EventReader(f"{url}/events/thing_deleted")
    try:
        td = _td("esp-ev-1")
        assert httpx.put(f"{url}/things/esp-ev-1", content=json.dumps(td), headers=AUTH).status_code == 201
        kind, first_id, data = reader.next()
        assert kind == "thing_created" and data["id"] == device_iri("esp-ev-1") and data["title"] == td["title"]
        patch = {"title": "renamed", "description": None}
        response = httpx.patch(f"{url}/things/esp-ev-1", content=json.dumps(patch),
                               headers={**AUTH, "Content-Type": "application/merge-patch+json"})
        assert response.status_code == 204
        kind, second_id, data = reader.next()
        assert kind == "thing_updated" and int(second_id) > int(first_id)
        assert data["title"] == "renamed" and data["description"] is None and "properties" not in data  # only what changed
        assert httpx.delete(f"{url}/things/esp-ev-1", headers=AUTH).status_code == 204
        kind, _, data = reader.next()
        assert kind == "thing_deleted" and data == {"id": device_iri("esp-ev-1")}
        assert plain.next() == ("thing_deleted", _, {"id": device_iri("esp-ev-1")})  # a one-type stream: only that
        assert plain.events.empty()
    finally:
        reader.close()
        plain.close()


def test_a_write_that_bypasses_http_is_an_event_too(served) -> None:
    """The federation server registers announced TDs through the Directory itself, not over HTTP."""
    url, directory = served
    reader = EventReader(f"{url}/events")
    try:
        directory.put(device_iri("esp-ev-2"), _td("esp-ev-2"))
        assert reader.next() [0::2] == ("thing_created", {"id": device_iri("esp-ev-2")})  # without diff: the id only
    finally:
        reader.close()


def test_a_reconnecting_client_gets_what_it_missed(served) -> None:
    url, _directory = served
    reader = EventReader(f"{url}/events")
    try:
        httpx.put(f"{url}/things/esp-ev-3", content=json.dumps(_td("esp-ev-3")), headers=AUTH)
        _, seen, _ = reader.next()
    finally:
        reader.close()
    again = EventReader(f"{url}/events", headers={"Last-Event-ID": str(int(seen) - 1)})
    try:
        assert again.next()[0::2] == ("thing_created", {"id": device_iri("esp-ev-3")})
    finally:
        again.close()


def test_bad_requests_get_a_problem_not_a_stream(served) -> None:
    url, _directory = served
    wrong = httpx.get(f"{url}/events/thing_exploded")
    assert wrong.status_code == 404 and wrong.headers["content-type"].startswith("application/problem+json")
    bad = httpx.get(f"{url}/events?diff=maybe")
    assert bad.status_code == 400 and "diff" in bad.json()["detail"]


@pytest.mark.parametrize("old,new", [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}}),
    ({"a": [1, 2]}, {"a": [2], "z": "new"}),
    ({"a": {"b": 1}}, {"a": 7}),
])
def test_merge_diff_is_the_patch_that_makes_new_from_old(old, new) -> None:
    assert merge_patch(old, merge_diff(old, new)) == new


def test_the_service_stops_on_sigterm_with_a_stream_open(tmp_path) -> None:
    """uvicorn waits for open responses before it exits; an event stream must not keep it waiting."""
    import time

    from registry_server import ServiceProcess

    service = ServiceProcess(tmp_path / "store", TOKEN)
    url = service.start()
    reader = EventReader(f"{url}/events")
    try:
        started = time.monotonic()
        assert service.stop() == 0  # SIGTERM, then wait (30 s at most)
        assert time.monotonic() - started < 10
    finally:
        reader.close()
        if service.proc is not None and service.proc.poll() is None:
            service.kill()
