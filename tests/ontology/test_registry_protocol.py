"""SPARQL 1.1 Protocol details: XML and TSV results, Allow on 405, a repeated query parameter refused."""

from __future__ import annotations

import io
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.query import Result
from registry_server import ThreadServer
from test_registry_service import TOKEN, problem

from ontology.service import create_app
from ontology.sparql_results import SPARQL_TSV, SPARQL_XML, to_tsv, to_xml
from ontology.store import QueryResult, open_store

SELECT = "SELECT ?c ?label WHERE { ?c a <http://www.w3.org/2002/07/owl#Class> ; <http://www.w3.org/2000/01/rdf-schema#label> ?label } ORDER BY ?c LIMIT 5"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, purge_interval_s=3600)) as base:
        yield base


def test_select_as_xml_and_tsv_reads_back_as_the_json_rows(url: str) -> None:
    as_json = Result.parse(io.BytesIO(httpx.get(f"{url}/sparql", params={"query": SELECT}).content), format="json")
    rows = [tuple(r) for r in as_json]
    assert len(rows) == 5
    for media, fmt in ((SPARQL_XML, "xml"), (SPARQL_TSV, "tsv")):
        response = httpx.get(f"{url}/sparql", params={"query": SELECT}, headers={"Accept": media})
        assert response.status_code == 200 and response.headers["content-type"].startswith(media)
        assert [tuple(r) for r in Result.parse(io.BytesIO(response.content), format=fmt)] == rows
    tsv = httpx.get(f"{url}/sparql", params={"query": SELECT}, headers={"Accept": SPARQL_TSV}).text
    assert tsv.splitlines()[0] == "?c\t?label"


def test_ask_as_xml_and_construct_as_rdf_xml(url: str) -> None:
    ask = httpx.get(f"{url}/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers={"Accept": SPARQL_XML})
    assert ask.status_code == 200 and "<boolean>true</boolean>" in ask.text
    assert Result.parse(io.BytesIO(ask.content), format="xml").askAnswer is True
    construct = "CONSTRUCT { ?c a ?t } WHERE { ?c a ?t } LIMIT 3"
    rdfxml = httpx.get(f"{url}/sparql", params={"query": construct}, headers={"Accept": "application/rdf+xml"})
    assert rdfxml.status_code == 200 and rdfxml.headers["content-type"].startswith("application/rdf+xml")
    assert len(Graph().parse(data=rdfxml.text, format="xml")) == 3


def test_what_rdflibs_sparqlstore_asks_for_is_served(url: str) -> None:
    """rdflib 7.6's SPARQLStore sends exactly this Accept (the remote store used to get 406)."""
    accept = "application/rdf+xml, application/sparql-results+xml"
    for query in ("SELECT * WHERE { ?s ?p ?o } LIMIT 1", "ASK {}", "CONSTRUCT WHERE { ?s ?p ?o } LIMIT 1"):
        assert httpx.get(f"{url}/sparql", params={"query": query}, headers={"Accept": accept}).status_code == 200


def test_tsv_and_xml_escape_what_would_break_them() -> None:
    tricky = Literal('tab\there "quoted"\nnew <line> & more', lang="en")
    result = QueryResult(kind="SELECT", variables=["x", "y"], rows=[(tricky, None), (URIRef("urn:a&b"), Literal(7))])
    tsv = to_tsv(result)
    assert tsv.count("\n") == 3 and tsv.splitlines()[1].count("\t") == 1
    for text, fmt in ((tsv, "tsv"), (to_xml(result), "xml")):
        assert [tuple(r) for r in Result.parse(io.BytesIO(text.encode()), format=fmt)] == result.rows


def test_405_carries_allow(url: str) -> None:
    for path, method in (("/sparql", "DELETE"), ("/queries", "POST"), ("/things", "DELETE")):
        response = httpx.request(method, f"{url}{path}")
        problem(response, 405, "method-not-allowed")
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert method not in allowed and allowed, (path, allowed)
    assert {m.strip() for m in httpx.delete(f"{url}/sparql").headers["allow"].split(",")} >= {"GET", "POST"}
    # a path served by several routes lists them all (Starlette alone named only the first)
    assert {m.strip() for m in httpx.request("OPTIONS", f"{url}/things").headers["allow"].split(",")} >= {"GET", "POST"}
    assert {m.strip() for m in httpx.request("OPTIONS", f"{url}/things/x").headers["allow"].split(",")} >= {"GET", "PUT", "PATCH", "DELETE"}


def test_a_repeated_query_parameter_is_refused(url: str) -> None:
    both = [("query", "ASK {}"), ("query", "ASK { ?s ?p ?o }")]
    body = problem(httpx.get(f"{url}/sparql", params=both), 400, "invalid-request")
    assert "more than one 'query'" in body["detail"]
    form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {TOKEN}"}
    problem(httpx.post(f"{url}/sparql", content=urlencode(both), headers=form), 400, "invalid-request")
    problem(httpx.post(f"{url}/sparql", content=urlencode([("update", "CLEAR ALL")] * 2), headers=form), 400, "invalid-request")
    problem(httpx.post(f"{url}/sparql?query=ASK%20%7B%7D", content=urlencode(both[:1]), headers=form), 400, "invalid-request")
    assert httpx.get(f"{url}/sparql", params={"query": "ASK {}"}).json()["boolean"] is True
