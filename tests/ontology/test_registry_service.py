"""The registry service over real HTTP (uvicorn on loopback, httpx): SPARQL Protocol, Things API, errors, limits."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from rdflib import Graph
from registry_server import ThreadServer

from edge.profiles import PROFILES
from ontology.service import create_app
from ontology.store import RegistryStore, open_store
from ontology.thing_description import device_iri, thing_description

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TD_JSON = {"Content-Type": "application/td+json", **AUTH}
PROBLEM = "application/problem+json"
SLOW = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"  # ontology^3, ~10^8 rows


def td(device_id: str, profile: str = "nano33ble", **extra: Any) -> dict[str, Any]:
    doc = thing_description(PROFILES[profile], device_id)
    doc.update(extra)
    return doc


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """Assert ``response`` is an RFC 7807 problem of this status and type; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"].endswith("/" + kind) and body["title"]
    return body


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[httpx.Client, RegistryStore]]:
    """One service for the module: result cap 50, query limit 0.5 s, purge every 0.2 s."""
    with open_store("memory:") as store:
        app = create_app(store, TOKEN, query_timeout_s=0.5, max_results=50, purge_interval_s=0.2)
        with ThreadServer(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield client, store


@pytest.fixture
def client(service: tuple[httpx.Client, RegistryStore]) -> httpx.Client:
    return service[0]


# -- SPARQL 1.1 Protocol -------------------------------------------------------------------


def test_select_and_ask_by_get_form_and_direct_post(client: httpx.Client) -> None:
    select = "PREFIX owl: <http://www.w3.org/2002/07/owl#> SELECT ?c WHERE { ?c a owl:Class } ORDER BY ?c LIMIT 3"
    answers = [
        client.get("/sparql", params={"query": select}),
        client.post("/sparql", data={"query": select}),
        client.post("/sparql", content=select, headers={"Content-Type": "application/sparql-query"}),
        client.get("/search/sparql", params={"query": select}),
    ]
    for r in answers:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/sparql-results+json")
        assert r.json()["head"]["vars"] == ["c"] and len(r.json()["results"]["bindings"]) == 3
    assert len({r.content for r in answers}) == 1
    ask = client.get("/sparql", params={"query": "ASK { ?s a <https://w3id.org/tinyfleet#NoSuchClass> }"})
    assert ask.json() == {"head": {}, "boolean": False}
    csv = client.get("/sparql", params={"query": select}, headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.splitlines()[0] == "c"


def test_construct_is_negotiated_turtle_json_ld_or_refused(client: httpx.Client) -> None:
    construct = "CONSTRUCT { ?c a <urn:C> } WHERE { ?c a <http://www.w3.org/2002/07/owl#Class> } LIMIT 5"
    turtle = client.get("/sparql", params={"query": construct})
    assert turtle.headers["content-type"].startswith("text/turtle")
    assert len(Graph().parse(data=turtle.text, format="turtle")) == 5
    jsonld = client.get("/sparql", params={"query": construct}, headers={"Accept": "text/html;q=0.9, application/ld+json"})
    assert jsonld.headers["content-type"].startswith("application/ld+json")
    assert len(Graph().parse(data=jsonld.text, format="json-ld")) == 5
    describe = client.get("/sparql", params={"query": "DESCRIBE <https://w3id.org/tinyfleet#Device>"},
                          headers={"Accept": "application/n-triples"})
    assert describe.headers["content-type"].startswith("application/n-triples") and "Device" in describe.text
    body = problem(client.get("/sparql", params={"query": construct}, headers={"Accept": "image/png"}), 406, "not-acceptable")
    assert "text/turtle" in body["detail"]


def test_updates_need_the_bearer_token(client: httpx.Client) -> None:
    update = 'INSERT DATA { GRAPH <urn:g:auth> { <urn:s> <urn:p> "written" } }'
    ask = {"query": "ASK { GRAPH <urn:g:auth> { <urn:s> <urn:p> ?o } }"}
    missing = problem(client.post("/sparql", data={"update": update}), 401, "unauthorized")
    assert "Bearer" in missing["detail"]
    wrong = client.post("/sparql", content=update, headers={"Content-Type": "application/sparql-update", "Authorization": "Bearer nope"})
    problem(wrong, 401, "unauthorized")
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    problem(client.get("/sparql", params={"update": update}), 400, "invalid-request")
    problem(client.post("/search/sparql", data={"update": update}, headers=AUTH), 400, "invalid-request")
    assert client.get("/sparql", params=ask).json()["boolean"] is False  # nothing was written
    ok = client.post("/sparql", content=update, headers={"Content-Type": "application/sparql-update", **AUTH})
    assert ok.status_code == 204
    assert client.get("/sparql", params=ask).json()["boolean"] is True
    assert client.post("/sparql", data={"update": "DROP GRAPH <urn:g:auth>"}, headers=AUTH).status_code == 204


def test_bad_requests_are_problem_json(client: httpx.Client) -> None:
    body = problem(client.get("/sparql", params={"query": "SELEC ?x WHERE {}"}), 400, "invalid-query")
    assert "invalid SPARQL query" in body["detail"]
    problem(client.post("/sparql", data={"update": "INSERT DATA { <urn:a> }"}, headers=AUTH), 400, "invalid-update")
    problem(client.get("/sparql"), 400, "invalid-request")
    problem(client.post("/sparql", content="x", headers={"Content-Type": "text/plain"}), 415, "unsupported-media-type")
    problem(client.get("/nowhere"), 404, "not-found")
    problem(client.delete("/sparql"), 405, "method-not-allowed")


def test_an_expensive_query_times_out_and_the_service_keeps_answering() -> None:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, query_timeout_s=3, max_results=None)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:  # fmt: skip
        started = time.monotonic()
        slow = ThreadPoolExecutor(1).submit(client.get, "/sparql", params={"query": SLOW})
        time.sleep(0.1)
        quick = client.get("/sparql", params={"query": "ASK {}"})
        assert quick.status_code == 200 and not slow.done()  # answered while the slow query runs
        body = problem(slow.result(), 503, "query-timeout")
        assert "3 s limit" in body["detail"] and time.monotonic() - started < 30  # a bound for a loaded machine


def test_result_cap(client: httpx.Client) -> None:
    capped = client.get("/sparql", params={"query": "SELECT ?s WHERE { ?s ?p ?o }"})
    assert len(capped.json()["results"]["bindings"]) == 50 and capped.headers["tinyfleet-truncated"] == "true"
    small = client.get("/sparql", params={"query": "SELECT ?s WHERE { ?s ?p ?o } LIMIT 3"})
    assert "tinyfleet-truncated" not in small.headers


# -- Things API ----------------------------------------------------------------------------


def test_put_get_replace_delete_a_thing(client: httpx.Client) -> None:
    iri = device_iri("crud-1")
    path = "/things/" + quote(iri, safe="")
    created = client.put(path, json=td("crud-1"), headers=TD_JSON)
    assert created.status_code == 201 and created.headers["location"].endswith(quote(iri, safe=":"))
    got = client.get(path)
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/td+json")
    assert got.json()["id"] == iri and got.json()["title"] == td("crud-1")["title"]
    assert set(got.json()["registration"]) >= {"created", "modified"}
    assert client.get("/things/crud-1").json() == got.json()  # a bare device id is shorthand for the device IRI
    replaced = client.put(path, json=td("crud-1", title="renamed"), headers=TD_JSON)
    assert replaced.status_code == 204
    after = client.get(path).json()
    assert after["title"] == "renamed" and after["registration"]["created"] == got.json()["registration"]["created"]
    assert client.delete(path, headers=AUTH).status_code == 204
    problem(client.get(path), 404, "not-found")
    problem(client.delete(path, headers=AUTH), 404, "not-found")


def test_bad_things_are_refused_and_change_nothing(client: httpx.Client, service: tuple[httpx.Client, RegistryStore]) -> None:
    store = service[1]
    path = "/things/refuse-1"
    assert client.put(path, json=td("refuse-1"), headers=TD_JSON).status_code == 201
    before = client.get(path).json()
    graphs = store.graph_names()
    bad = td("refuse-1")
    bad["tf:hasMicrocontroller"]["tf:ramBytes"] = "lots"
    del bad["securityDefinitions"]
    body = problem(client.put(path, json=bad, headers=TD_JSON), 400, "invalid-thing-description")
    assert any("securityDefinitions" in e for e in body["errors"]) and any("tf:ramBytes" in e for e in body["errors"])
    problem(client.put(path, content="{not json", headers=TD_JSON), 400, "invalid-thing-description")
    problem(client.put(path, json=td("other-id"), headers=TD_JSON), 400, "invalid-thing-description")  # id mismatch
    problem(client.put(path, json=td("refuse-1"), headers={**AUTH, "Content-Type": "text/plain"}), 415, "unsupported-media-type")
    problem(client.put(path, json=td("refuse-1", title="no token"), headers={"Content-Type": "application/td+json"}), 401, "unauthorized")
    problem(client.put("/things/bad id>", json=td("refuse-1"), headers=TD_JSON), 400, "invalid-id")
    remote_ctx = td("refuse-1", **{"@context": ["https://www.w3.org/2022/wot/td/v1.1", "https://evil.example/ctx"]})
    body = problem(client.put(path, json=remote_ctx, headers=TD_JSON), 400, "invalid-thing-description")
    assert "never fetches" in " ".join(body["errors"])
    assert client.get(path).json() == before and store.graph_names() == graphs


def test_anonymous_thing_gets_an_id_and_a_location(client: httpx.Client) -> None:
    anonymous = td("anon")
    del anonymous["id"]
    created = client.post("/things", json=anonymous, headers=TD_JSON)
    assert created.status_code == 201 and created.headers["location"].startswith("/things/urn:uuid:")
    got = client.get(created.headers["location"])
    assert got.status_code == 200 and got.json()["id"].startswith("urn:uuid:")
    problem(client.post("/things", json=td("has-id"), headers=TD_JSON), 400, "invalid-thing-description")
    problem(client.post("/things", json=anonymous), 401, "unauthorized")
    assert client.delete(created.headers["location"], headers=AUTH).status_code == 204


def test_merge_patch_is_revalidated(client: httpx.Client) -> None:
    path = "/things/patch-1"
    merge = {"Content-Type": "application/merge-patch+json", **AUTH}
    assert client.put(path, json=td("patch-1"), headers=TD_JSON).status_code == 201
    ok = client.patch(path, content=json.dumps({"title": "patched", "description": None}), headers=merge)
    assert ok.status_code == 204
    patched = client.get(path).json()
    assert patched["title"] == "patched" and "description" not in patched
    assert patched["tf:hasMicrocontroller"]["tf:ramBytes"] == PROFILES["nano33ble"].usable_ram_bytes
    body = problem(client.patch(path, content=json.dumps({"tf:hasMicrocontroller": {"tf:ramBytes": -1}}), headers=merge),
                   400, "invalid-thing-description")
    assert any("tf:ramBytes" in e for e in body["errors"])
    problem(client.patch(path, content=json.dumps({"id": "urn:other"}), headers=merge), 400, "invalid-thing-description")
    problem(client.patch(path, json={"title": "x"}, headers=TD_JSON), 415, "unsupported-media-type")
    problem(client.patch(path, content=json.dumps({"title": "x"}), headers={"Content-Type": "application/merge-patch+json"}), 401, "unauthorized")
    problem(client.patch("/things/nobody", content="{}", headers=merge), 404, "not-found")
    assert client.get(path).json() == patched  # every refused patch left it unchanged
    assert client.delete(path, headers=AUTH).status_code == 204


def test_pagination_follows_link_next() -> None:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN)) as url, httpx.Client(base_url=url) as client:
        ids = [f"page-{i}" for i in range(5)]
        for device_id in ids:
            assert client.put(f"/things/{device_id}", json=td(device_id), headers=TD_JSON).status_code == 201
        seen, link, pages = [], "/things?limit=2", 0
        while link:
            page = client.get(link)
            assert page.status_code == 200 and page.headers["content-type"].startswith("application/ld+json")
            assert len(page.json()) <= 2
            seen += [thing["id"] for thing in page.json()]
            pages += 1
            header = page.headers.get("link")
            link = header.split(">")[0].lstrip("<") if header else None
        assert seen == sorted(device_iri(i) for i in ids) and pages == 3
        assert [t["id"] for t in client.get("/things", params={"offset": 4, "limit": 10}).json()] == [device_iri("page-4")]
        problem(client.get("/things", params={"limit": 0}), 400, "invalid-request")
        problem(client.get("/things", params={"offset": "x"}), 400, "invalid-request")


def _in_store(client: httpx.Client, iri: str) -> bool:
    return client.get("/sparql", params={"query": f"ASK {{ GRAPH <{iri}> {{ ?s ?p ?o }} }}"}).json()["boolean"]


def test_ttl_sets_expires_and_the_periodic_task_purges(client: httpx.Client) -> None:
    path = "/things/lease-1"
    assert client.put(path, json=td("lease-1", registration={"ttl": 1}), headers=TD_JSON).status_code == 201
    registration = client.get(path).json()["registration"]
    assert registration["ttl"] == 1 and registration["expires"] > registration["created"]
    eligible = client.get("/queries/devices-for-model", params={"model": "urn:none"})
    assert eligible.status_code == 200
    deadline = time.monotonic() + 5
    while _in_store(client, device_iri("lease-1")):  # only SPARQL reads here: the purge task must do it
        assert time.monotonic() < deadline, "expired registration not purged"
        time.sleep(0.1)
    problem(client.get(path), 404, "not-found")
    bad = problem(client.put(path, json=td("lease-1", registration={"ttl": -3}), headers=TD_JSON), 400, "invalid-thing-description")
    assert "registration.ttl" in bad["detail"]


def test_expired_things_are_purged_on_read() -> None:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, purge_interval_s=3600)) as url, \
            httpx.Client(base_url=url) as client:  # fmt: skip
        assert client.put("/things/short", json=td("short", registration={"ttl": 3}), headers=TD_JSON).status_code == 201
        assert client.put("/things/long", json=td("long", registration={"ttl": 3600}), headers=TD_JSON).status_code == 201
        expires = datetime.fromisoformat(client.get("/things/short").json()["registration"]["expires"])
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
        assert _in_store(client, device_iri("short"))  # nothing purged it yet
        problem(client.get("/things/short"), 404, "not-found")
        assert not _in_store(client, device_iri("short"))
        assert [t["id"] for t in client.get("/things").json()] == [device_iri("long")]


def test_named_queries_over_http_bind_parameters_safely(client: httpx.Client) -> None:
    listing = client.get("/queries").json()
    assert {"models-for-device", "eligible-devices"} <= {q["name"] for q in listing}
    assert client.put("/things/nq-1", json=td("nq-1"), headers=TD_JSON).status_code == 201
    ok = client.get("/queries/models-for-device", params={"device": device_iri("nq-1")})
    assert ok.status_code == 200 and ok.json()["head"]["vars"][0] == "device"
    evil = problem(client.get("/queries/models-for-device", params={"device": device_iri("nq-1") + "> } UNION { ?s ?p ?o"}),
                   400, "invalid-parameter")
    assert "expected iri" in evil["detail"]
    problem(client.get("/queries/models-for-device"), 400, "invalid-parameter")
    problem(client.get("/queries/nope"), 404, "not-found")


def test_a_service_without_token_is_read_only() -> None:
    with open_store("memory:") as store, ThreadServer(create_app(store, None)) as url, httpx.Client(base_url=url) as client:
        problem(client.put("/things/ro", json=td("ro"), headers=TD_JSON), 403, "read-only")
        problem(client.post("/sparql", data={"update": "DROP ALL"}, headers=AUTH), 403, "read-only")
        assert client.get("/things").json() == []
