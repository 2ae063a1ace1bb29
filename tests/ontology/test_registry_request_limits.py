"""Request limits that hold: the body cap while streaming, JSON depth, IRI-safe member names, duplicate keys, write time."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from registry_server import ThreadServer
from test_registry_cli import run
from test_registry_service import AUTH, TD_JSON, TOKEN, problem, td

from ontology.directory import Directory, ThingRejected, check_td, parse_json_body
from ontology.service import MAX_BODY_BYTES, create_app
from ontology.store import RegistryStore, open_store

MERGE = {"Content-Type": "application/merge-patch+json", **AUTH}


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, RegistryStore]]:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, purge_interval_s=3600)) as url:
        yield url, store


def _nested(depth: int) -> dict[str, Any]:
    doc: Any = 1
    for _ in range(depth):
        doc = {"a": doc}
    return doc


# -- the body cap ----------------------------------------------------------------------------


def test_a_chunked_body_over_the_cap_gets_413_before_it_ends(service: tuple[str, RegistryStore]) -> None:
    """5 MB announced by nothing (chunked, no Content-Length): the 413 arrives while the body is still unfinished."""
    url, _store = service
    port = int(url.rsplit(":", 1)[1])
    chunk = b"#" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /sparql HTTP/1.1\r\nHost: x\r\nContent-Type: application/sparql-query\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent = 0
        try:
            while sent <= MAX_BODY_BYTES + 4 * len(chunk):  # past the cap, but well short of 5 MB and never terminated
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: fine, the answer is still in our receive buffer
        assert sent < 5 * 1024 * 1024
        sock.settimeout(30)  # the body never ends: a server reading it all would never answer
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"application/problem+json" in head


def test_a_declared_body_over_the_cap_gets_413(service: tuple[str, RegistryStore]) -> None:
    url, _store = service
    response = httpx.put(f"{url}/things/big", content=b" " * (MAX_BODY_BYTES + 1), headers=TD_JSON, timeout=30)
    problem(response, 413, "body-too-large")


# -- JSON ---------------------------------------------------------------------------------------


def test_json_nested_1000_deep_gets_400(service: tuple[str, RegistryStore]) -> None:
    url, _store = service
    deep = "[" * 1000 + "]" * 1000
    body = problem(httpx.put(f"{url}/things/deep-1", content=deep, headers=TD_JSON), 400, "invalid-thing-description")
    assert "nested too deep" in body["detail"]
    doc = td("deep-2")
    doc["properties"] = {"x": _nested(70)}  # parses in Python, too deep for the registry
    body = problem(httpx.put(f"{url}/things/deep-2", json=doc, headers=TD_JSON), 400, "invalid-thing-description")
    assert "the limit is 64" in body["detail"]
    assert httpx.put(f"{url}/things/deep-3", json=td("deep-3"), headers=TD_JSON).status_code == 201
    problem(httpx.patch(f"{url}/things/deep-3", content="{" + '"a":{' * 1000 + "}" * 1001, headers=MERGE), 400,
            "invalid-thing-description")


def test_duplicate_member_names_are_refused_not_merged(service: tuple[str, RegistryStore]) -> None:
    url, _store = service
    text = json.dumps(td("dup-1"))[:-1] + ', "title": "second title"}'
    body = problem(httpx.put(f"{url}/things/dup-1", content=text, headers=TD_JSON), 400, "invalid-thing-description")
    assert '"title"' in body["detail"] and "duplicate" in body["detail"]
    with pytest.raises(ThingRejected, match="duplicate"):
        parse_json_body(b'{"a": {"b": 1, "b": 2}}')


# -- member names that are not IRI-safe -------------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "affordance"])
def test_a_member_name_that_is_not_iri_safe_gets_400_naming_it(service: tuple[str, RegistryStore], where: str) -> None:
    url, _store = service
    doc = td(f"key-{where}")
    if where == "top":
        doc["bad key"] = 1
    else:
        doc["properties"] = {"temp": {"type": "number", "un safe": 2, "forms": [{"href": "/temp"}]}}
    body = problem(httpx.put(f"{url}/things/key-{where}", json=doc, headers=TD_JSON), 400, "invalid-thing-description")
    named = '"bad key"' if where == "top" else '"un safe"'
    assert any(named in e and "not IRI-safe" in e for e in body["errors"]), body
    assert httpx.get(f"{url}/things/key-{where}").status_code == 404  # nothing was written


def test_a_merge_patch_with_an_unsafe_member_name_gets_400_and_changes_nothing(service: tuple[str, RegistryStore]) -> None:
    url, _store = service
    assert httpx.put(f"{url}/things/patch-1", json=td("patch-1"), headers=TD_JSON).status_code == 201
    before = httpx.get(f"{url}/things/patch-1").json()
    body = problem(httpx.patch(f"{url}/things/patch-1", json={"bad key": "x"}, headers=MERGE), 400, "invalid-thing-description")
    assert any('"bad key"' in e for e in body["errors"])
    assert httpx.get(f"{url}/things/patch-1").json() == before


def test_the_directory_refuses_an_unsafe_name_whatever_the_door() -> None:
    """The MQTT announce path registers through Directory.put too (server.registry.registry_link)."""
    doc = td("door-1")
    doc["bad key"] = True
    with pytest.raises(ThingRejected) as caught:
        check_td(doc)
    assert any('"bad key"' in p for p in caught.value.problems)
    with open_store("memory:") as store, pytest.raises(ThingRejected):
        Directory(store).put("door-1", doc)


def test_registry_validate_and_add_name_the_unsafe_key(tmp_path: Path) -> None:
    doc = td("cli-1")
    doc["bad key"] = 1
    path = tmp_path / "cli-1.json"
    path.write_text(json.dumps(doc))
    code, output = run("validate", str(path))
    assert code == 1 and '"bad key"' in output and "Traceback" not in output
    code, output = run("add", str(path), store=tmp_path / "reg")
    assert code == 1 and '"bad key"' in output and "Traceback" not in output
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 1000 + "]" * 1000)
    code, output = run("validate", str(deep))
    assert code == 1 and "nested too deep" in output


# -- writes with a time limit ---------------------------------------------------------------------


def test_a_write_past_its_time_limit_gets_503_and_the_service_answers_meanwhile() -> None:
    slow_update = ("INSERT { GRAPH <urn:g:slow> { ?a <urn:p> ?d } } WHERE { GRAPH ?g { ?a ?b ?c } GRAPH ?h { ?d ?e ?f } }")
    # without the sandbox, so the WHERE is not refused first (tests/ontology/test_registry_update_guard.py): the
    # write time limit is what answers, as it does for a write whose cost is not its WHERE
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, write_timeout_s=0.3, isolate_queries=False)) as url:
        started = time.monotonic()
        response = httpx.post(f"{url}/sparql", content=slow_update, timeout=60,
                              headers={"Content-Type": "application/sparql-update", **AUTH})
        body = problem(response, 503, "write-timeout")
        assert "may still complete" in body["detail"]
        assert time.monotonic() - started < 10  # 0.3 s limit; the update itself takes seconds
        ask = httpx.get(f"{url}/sparql", params={"query": "ASK { ?s ?p ?o }"}, timeout=30)
        assert ask.json()["boolean"] is True
        deadline = time.monotonic() + 120  # the abandoned write is atomic and lands later
        while time.monotonic() < deadline and not store.has_graph("urn:g:slow"):
            time.sleep(0.2)
        assert store.has_graph("urn:g:slow")
