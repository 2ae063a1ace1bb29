"""The W3C SPARQL 1.1 Protocol test suite's 34 cases, written as our own tests against the live service.

Names follow the suite's manifest (w3c/rdf-tests ``sparql/sparql11/protocol/manifest.ttl``); the
data mirror its ``data1``–``data3`` (each graph says of itself that it is a ``foaf:Document``).
One deliberate difference: our updates need the bearer token, so update requests carry it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from registry_server import ThreadServer
from test_registry_service import TOKEN

from ontology.service import create_app
from ontology.store import RegistryStore, open_store

D = "http://kasei.us/2009/09/sparql/data/"
D1, D2, D3 = f"{D}data1.rdf", f"{D}data2.rdf", f"{D}data3.rdf"
FOAF_DOC = "<http://xmlns.com/foaf/0.1/Document>"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FORM = "application/x-www-form-urlencoded"
PREFIXES = "PREFIX dc: <http://purl.org/dc/terms/>\nPREFIX foaf: <http://xmlns.com/foaf/0.1/>\n"
RESET = (f"DROP ALL ;\nINSERT DATA {{ GRAPH <{D1}> {{ <{D1}> a foaf:Document }} GRAPH <{D2}> {{ <{D2}> a foaf:Document }}"
         f" GRAPH <{D3}> {{ <{D3}> a foaf:Document }} }} ;\n")


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, RegistryStore]]:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, purge_interval_s=3600)) as url:
        yield f"{url}/sparql", store


@pytest.fixture
def sparql(service: tuple[str, RegistryStore]) -> str:
    url, store = service
    store.update(f"DROP ALL ; INSERT DATA {{ GRAPH <{D1}> {{ <{D1}> a {FOAF_DOC} }} GRAPH <{D2}> {{ <{D2}> a {FOAF_DOC} }}"
                 f" GRAPH <{D3}> {{ <{D3}> a {FOAF_DOC} }} }}", derive=False)
    return url


def ok(response: httpx.Response) -> httpx.Response:
    assert 200 <= response.status_code < 400, (response.status_code, response.text)
    return response


def boolean(response: httpx.Response) -> bool:
    ok(response)
    assert response.headers["content-type"].split(";")[0] in ("application/sparql-results+json", "application/sparql-results+xml")
    return bool(response.json()["boolean"])


def bad(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")


def post_query(url: str, text: str, params: Any = None) -> httpx.Response:
    return httpx.post(url, params=params, content=text, headers={"Content-Type": "application/sparql-query"})


def post_update(url: str, text: str, params: Any = None) -> httpx.Response:
    return httpx.post(url, params=params, content=text, headers={"Content-Type": "application/sparql-update", **AUTH})


TWO_DEFAULT = f"ASK {{ <{D1}> a ?type . <{D2}> a ?type . }}"
TWO_NAMED = f"ASK {{ GRAPH ?g1 {{ <{D1}> a ?type }} GRAPH ?g2 {{ <{D2}> a ?type }} }}"


# -- queries ---------------------------------------------------------------------------------------


def test_query_post_form(sparql: str) -> None:
    assert boolean(httpx.post(sparql, params={"default-graph-uri": f"{D}data0.rdf"}, content="query=ASK%20%7B%7D",
                              headers={"Content-Type": FORM})) is True


def test_query_dataset_default_graphs_get(sparql: str) -> None:
    assert boolean(httpx.get(sparql, params=[("query", TWO_DEFAULT), ("default-graph-uri", D1), ("default-graph-uri", D2)])) is True


def test_query_dataset_default_graphs_post(sparql: str) -> None:
    assert boolean(post_query(sparql, TWO_DEFAULT, [("default-graph-uri", D1), ("default-graph-uri", D2)])) is True


def test_query_dataset_named_graphs_post(sparql: str) -> None:
    assert boolean(post_query(sparql, TWO_NAMED, [("named-graph-uri", D1), ("named-graph-uri", D2)])) is True


def test_query_dataset_named_graphs_get(sparql: str) -> None:
    assert boolean(httpx.get(sparql, params=[("query", TWO_NAMED), ("named-graph-uri", D1), ("named-graph-uri", D2)])) is True


def test_query_dataset_full(sparql: str) -> None:
    text = f"ASK {{ <{D3}> a ?type GRAPH ?g1 {{ <{D1}> a ?type }} GRAPH ?g2 {{ <{D2}> a ?type }} }}"
    params = [("default-graph-uri", D3), ("named-graph-uri", D1), ("named-graph-uri", D2)]
    assert boolean(post_query(sparql, text, params)) is True


def test_query_multiple_dataset(sparql: str) -> None:
    """The protocol's dataset wins over the query's FROM (Protocol § 2.1.4)."""
    assert boolean(post_query(sparql, f"ASK FROM <{D2}> {{ <{D1}> a ?type . }}", [("default-graph-uri", D1)])) is True


def test_the_default_graph_without_a_dataset_is_the_union(sparql: str) -> None:
    assert boolean(httpx.get(sparql, params={"query": TWO_DEFAULT})) is True
    assert boolean(post_query(sparql, TWO_DEFAULT, [("default-graph-uri", D1)])) is False  # only what was named


def test_query_get(sparql: str) -> None:
    assert boolean(httpx.get(sparql, params={"query": "ASK {}"})) is True


@pytest.mark.parametrize("case,text,types", [
    ("select", "SELECT (1 AS ?value) {}", ("application/sparql-results+json", "application/sparql-results+xml", "text/csv",
                                            "text/tab-separated-values")),
    ("ask", "ASK {}", ("application/sparql-results+json", "application/sparql-results+xml")),
    ("describe", "DESCRIBE <http://example.org/>", ("text/turtle", "application/rdf+xml", "application/n-triples", "application/ld+json")),
    ("construct", "CONSTRUCT { <s> <p> 1 } WHERE {}", ("text/turtle", "application/rdf+xml", "application/n-triples", "application/ld+json")),
])
def test_query_content_type(sparql: str, case: str, text: str, types: tuple[str, ...]) -> None:
    response = ok(httpx.get(sparql, params={"query": text}))
    assert response.headers["content-type"].split(";")[0] in types, case


def test_query_post_direct(sparql: str) -> None:
    assert boolean(post_query(sparql, "ASK {}")) is True


# -- updates ---------------------------------------------------------------------------------------


def _holds(url: str, graph: str, yes: tuple[str, ...], no: tuple[str, ...], what: str = "a <http://purl.org/dc/terms/BibliographicResource>") -> bool:
    present = " ".join(f"<{s}> {what} ." for s in yes)
    absent = " ".join(f"FILTER NOT EXISTS {{ GRAPH <{graph}> {{ <{s}> ?p ?o }} }}" for s in no)
    return boolean(post_query(url, f"ASK {{ GRAPH <{graph}> {{ {present} }} {absent} }}"))


def test_update_dataset_default_graph(sparql: str) -> None:
    out = "http://example.org/protocol-update-dataset-test/"
    text = PREFIXES + RESET + f"INSERT {{ GRAPH <{out}> {{ ?s a dc:BibliographicResource }} }} WHERE {{ ?s a foaf:Document }}"
    ok(post_update(sparql, text, [("using-graph-uri", D1)]))
    assert _holds(sparql, out, (D1,), (D2, D3))


def test_update_dataset_default_graphs(sparql: str) -> None:
    out = "http://example.org/protocol-update-dataset-graphs-test/"
    text = PREFIXES + RESET + f"INSERT {{ GRAPH <{out}> {{ ?s a dc:BibliographicResource }} }} WHERE {{ ?s a foaf:Document }}"
    ok(post_update(sparql, text, [("using-graph-uri", D1), ("using-graph-uri", D2)]))
    assert _holds(sparql, out, (D1, D2), (D3,))


def test_update_dataset_named_graphs(sparql: str) -> None:
    out = "http://example.org/protocol-update-dataset-named-graphs-test/"
    text = PREFIXES + RESET + f"INSERT {{ GRAPH <{out}> {{ ?s a dc:BibliographicResource }} }} WHERE {{ GRAPH ?g {{ ?s a foaf:Document }} }}"
    ok(post_update(sparql, text, [("using-named-graph-uri", D1), ("using-named-graph-uri", D2)]))
    assert _holds(sparql, out, (D1, D2), (D3,))


def test_update_dataset_full(sparql: str) -> None:
    out = "http://example.org/protocol-update-dataset-full-test/"
    text = PREFIXES + RESET + (f"INSERT {{ GRAPH <{out}> {{ ?s <http://example.org/in> ?in }} }} WHERE {{"
                               " { GRAPH ?g { ?s a foaf:Document } BIND(?g AS ?in) } UNION { ?s a foaf:Document . BIND(\"default\" AS ?in) } }")
    ok(post_update(sparql, text, [("using-graph-uri", D1), ("using-named-graph-uri", D2)]))
    assert boolean(post_query(sparql, f'ASK {{ GRAPH <{out}> {{ <{D1}> <http://example.org/in> "default" . '
                                      f"<{D2}> <http://example.org/in> <{D2}> . }} "
                                      f"FILTER NOT EXISTS {{ GRAPH <{out}> {{ <{D3}> ?p ?o }} }} }}")) is True


def test_an_updates_where_reads_the_same_union_a_query_does(sparql: str) -> None:
    out = "http://example.org/union-test/"
    ok(post_update(sparql, PREFIXES + f"INSERT {{ GRAPH <{out}> {{ ?s a dc:BibliographicResource }} }} WHERE {{ ?s a foaf:Document }}"))
    assert _holds(sparql, out, (D1, D2, D3), ())
    ok(post_update(sparql, PREFIXES + f"DELETE WHERE {{ GRAPH <{out}> {{ <{D1}> ?p ?o }} }}"))  # the shorthand too
    assert _holds(sparql, out, (D2, D3), (D1,))


def test_update_post_form(sparql: str) -> None:
    ok(httpx.post(sparql, content="update=CLEAR+ALL", headers={"Content-Type": FORM, **AUTH}))


def test_update_post_direct(sparql: str) -> None:
    ok(post_update(sparql, "CLEAR ALL"))


def test_update_base_uri(sparql: str) -> None:
    graph = "http://example.org/protocol-base-test/"
    ok(post_update(sparql, f"CLEAR GRAPH <{graph}> ;\nINSERT DATA {{ GRAPH <{graph}> {{ <http://example.org/s> <http://example.org/p> <test> }} }}"))
    rows = ok(post_query(sparql, f"SELECT ?o WHERE {{ GRAPH <{graph}> {{ <http://example.org/s> <http://example.org/p> ?o }} }}")).json()
    [row] = rows["results"]["bindings"]
    assert row["o"]["type"] == "uri" and row["o"]["value"] != "test" and row["o"]["value"].endswith("/test")


# -- refusals ---------------------------------------------------------------------------------------


def test_bad_query_method(sparql: str) -> None:
    response = httpx.request("PUT", sparql, params={"query": "ASK {}"})
    bad(response)
    assert "GET" in response.headers["allow"] and "POST" in response.headers["allow"]


def test_bad_multiple_queries(sparql: str) -> None:
    bad(httpx.get(sparql, params=[("query", "ASK {}"), ("query", "SELECT * {}")]))


def test_bad_query_wrong_media_type(sparql: str) -> None:
    bad(httpx.post(sparql, content="ASK {}", headers={"Content-Type": "text/plain"}))


def test_bad_query_missing_form_type(sparql: str) -> None:
    bad(httpx.post(sparql, content="query=ASK%20%7B%7D"))


def test_bad_query_missing_direct_type(sparql: str) -> None:
    bad(httpx.post(sparql, content="ASK {}"))


def test_bad_query_non_utf8(sparql: str) -> None:
    bad(httpx.post(sparql, content="ASK {}".encode("utf-16"), headers={"Content-Type": "application/sparql-query"}))


def test_bad_query_syntax(sparql: str) -> None:
    bad(httpx.get(sparql, params={"query": "ASK {XXX}"}))


def test_bad_update_get(sparql: str) -> None:
    bad(httpx.get(sparql, params={"update": "CLEAR ALL"}, headers=AUTH))


def test_bad_multiple_updates(sparql: str) -> None:
    bad(httpx.post(sparql, content="update=CLEAR+NAMED&update=CLEAR+DEFAULT", headers={"Content-Type": FORM, **AUTH}))


def test_bad_update_wrong_media_type(sparql: str) -> None:
    bad(httpx.post(sparql, content="CLEAR NAMED", headers={"Content-Type": "text/plain", **AUTH}))


def test_bad_update_missing_form_type(sparql: str) -> None:
    bad(httpx.post(sparql, content="update=CLEAR%20NAMED", headers=AUTH))


def test_bad_update_non_utf8(sparql: str) -> None:
    bad(httpx.post(sparql, content="CLEAR NAMED".encode("utf-16"), headers={"Content-Type": "application/sparql-update", **AUTH}))


def test_bad_update_syntax(sparql: str) -> None:
    bad(post_update(sparql, "CLEAR XYZ"))


def test_bad_update_dataset_conflict(sparql: str) -> None:
    text = (PREFIXES + "INSERT { GRAPH <http://example.org/protocol-update-dataset-conflict/> { ?s a dc:BibliographicResource } }"
            f" USING NAMED <{D1}> WHERE {{ GRAPH ?g {{ ?s a foaf:Document }} }}")
    bad(post_update(sparql, text, [("using-named-graph-uri", D1)]))
