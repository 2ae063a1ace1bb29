"""The served OpenAPI document is honest: every route, its parameters, bodies, status codes and media types."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from registry_server import ThreadServer
from test_registry_service import TOKEN

from ontology.service import create_app
from ontology.store import open_store

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, dict]]:
    with open_store("memory:") as store:
        app = create_app(store, TOKEN, purge_interval_s=3600)
        with ThreadServer(app) as url:
            yield url, httpx.get(f"{url}/openapi.json").json()


def _routes(url: str) -> set[tuple[str, str]]:
    with open_store("memory:") as store:
        app = create_app(store, TOKEN)
    out = set()
    for route in app.routes:
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", getattr(route, "path", ""))
        if not getattr(route, "include_in_schema", False):
            continue
        for method in getattr(route, "methods", ()) or ():
            out.add((path, method.lower()))
    return out


def test_every_route_is_documented_and_nothing_else(served: tuple[str, dict]) -> None:
    url, doc = served
    documented = {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}
    assert documented == _routes(url)


def test_operation_ids_are_unique(served: tuple[str, dict]) -> None:
    _url, doc = served
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))


def test_sparql_declares_its_parameters_bodies_and_formats(served: tuple[str, dict]) -> None:
    _url, doc = served
    get, post = doc["paths"]["/sparql"]["get"], doc["paths"]["/sparql"]["post"]
    assert {p["name"] for p in get["parameters"]} == {"query", "default-graph-uri", "named-graph-uri"}
    assert set(post["requestBody"]["content"]) == {"application/x-www-form-urlencoded", "application/sparql-query", "application/sparql-update"}
    assert {"application/sparql-results+json", "application/sparql-results+xml", "text/csv", "text/tab-separated-values",
            "text/turtle"} <= set(get["responses"]["200"]["content"])
    assert {"204", "400", "401", "406", "413", "415", "503"} <= set(post["responses"])
    assert "update" not in doc["paths"]["/search/sparql"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]


def test_things_declare_bodies_and_the_codes_they_really_answer(served: tuple[str, dict]) -> None:
    url, doc = served
    put = doc["paths"]["/things/{thing_id}"]["put"]
    assert "application/td+json" in put["requestBody"]["content"]
    assert {"201", "204", "400", "401", "413", "415"} <= set(put["responses"])
    assert put["responses"]["400"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    # spot-check the documented codes against the live service
    assert httpx.put(f"{url}/things/x", json={}).status_code == 401
    assert httpx.put(f"{url}/things/x", content="{}", headers={"Authorization": f"Bearer {TOKEN}",
                                                                "Content-Type": "text/plain"}).status_code == 415
    assert httpx.get(f"{url}/things/nothing-here").status_code == 404
    assert "404" in doc["paths"]["/things/{thing_id}"]["get"]["responses"]
