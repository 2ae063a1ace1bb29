"""An untrusted update's WHERE runs first in a killable worker: a costly one is refused (503) with nothing written
and stops using CPU at its deadline, and the writes acknowledged before it are all still there."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from registry_server import ServiceProcess
from test_registry_query_sandbox import _children, _cpu_s, problem
from test_registry_service import TOKEN

from ontology.store import QueryTimeout, open_store
from ontology.update_guard import check_update_cost, where_queries

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/sparql-update"}
#: ~640^3 solutions over the ontology graph alone: minutes of one core.
CROSS_UPDATE = ("INSERT { GRAPH <urn:tinyfleet:test> { <urn:x> <urn:count> ?n } } WHERE "
                "{ { SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } } }")


@pytest.mark.parametrize(("update", "expected"), [
    ("DELETE WHERE { ?s <urn:p> ?o }", ["SELECT (COUNT(*) AS ?n) WHERE { ?s <urn:p> ?o }"]),
    ("DELETE { ?s <urn:p> ?o } USING <urn:a> USING NAMED <urn:b> WHERE { ?s <urn:p> ?o }",
     ["SELECT (COUNT(*) AS ?n) FROM <urn:a> FROM NAMED <urn:b> WHERE { ?s <urn:p> ?o }"]),
    ("PREFIX tf: <https://w3id.org/tinyfleet#>\nINSERT { ?s a tf:X } WHERE { ?s ?p ?o } ;"
     " DELETE DATA { <urn:a> <urn:b> \"WHERE { ?x }\" } ; WITH tf:g DELETE { ?s ?p ?o } WHERE { { SELECT * WHERE { ?s ?p ?o } } }",
     ["PREFIX tf: <https://w3id.org/tinyfleet#> SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }",
      "PREFIX tf: <https://w3id.org/tinyfleet#> SELECT (COUNT(*) AS ?n) FROM tf:g WHERE { { SELECT * WHERE { ?s ?p ?o } } }"]),
    ("INSERT DATA { <urn:a> <urn:b> <urn:c> } ; CLEAR ALL ; DROP SILENT GRAPH <urn:g>", []),
])
def test_each_where_becomes_a_count_query_with_its_dataset(update: str, expected: list[str]) -> None:
    assert where_queries(update) == expected


def test_the_count_reads_the_operations_dataset() -> None:
    with open_store("memory:", load_ontology=False) as store:
        store.update("INSERT DATA { GRAPH <urn:g> { <urn:a> <urn:p> 1, 2 } GRAPH <urn:h> { <urn:a> <urn:p> 3 } }", derive=False)
        count = lambda text: check_update_cost(store, text, budget_s=30, memory_bytes=256 << 20)  # noqa: E731
        assert count("DELETE { ?s ?p ?o } USING <urn:g> WHERE { ?s ?p ?o }") == 2
        assert count("WITH <urn:h> DELETE { ?s ?p ?o } WHERE { ?s ?p ?o }") == 1
        assert count("DELETE { ?s ?p ?o } USING <urn:g> USING <urn:h> WHERE { ?s ?p ?o } ;"
                     " DELETE { ?s ?p ?o } USING <urn:none> WHERE { ?s ?p ?o }") == 3


def test_a_costly_where_times_out_in_its_worker() -> None:
    with open_store("memory:") as store:
        with pytest.raises(QueryTimeout, match="worker was killed"):
            check_update_cost(store, CROSS_UPDATE, budget_s=0.5, memory_bytes=256 << 20)
        assert store.query("ASK { <urn:x> <urn:count> ?n }").boolean is False


def test_a_costly_update_gets_503_stops_at_its_deadline_and_loses_no_acknowledged_write(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path / "registry", TOKEN, ("--write-timeout", "2")) as service:
        url = service.start()
        assert service.proc is not None
        pid = service.proc.pid
        acked = [f"INSERT DATA {{ GRAPH <urn:tinyfleet:acked> {{ <urn:a> <urn:n> {i} }} }}" for i in range(5)]
        for update in acked:
            assert httpx.post(f"{url}/sparql", content=update, headers=AUTH, timeout=30).status_code == 204
        response = httpx.post(f"{url}/sparql", content=CROSS_UPDATE, headers=AUTH, timeout=60)
        body = problem(response, 503, "update-timeout")
        assert "nothing was written" in body["detail"]
        gone_after = float(re.search(r"reaped ([0-9.]+) s after", body["detail"]).group(1))
        assert 1.0 <= gone_after < 1.0 + 1.0  # half the 2 s write limit, then killed and reaped within 1 s
        assert _children(pid) == set()  # the worker is gone before the 503 is sent
        cpu_before = _cpu_s(pid)
        time.sleep(1.0)
        assert _cpu_s(pid) - cpu_before < 0.5  # nothing still evaluates the abandoned WHERE
        ask = lambda q: httpx.get(f"{url}/sparql", params={"query": q}, timeout=30).json()["boolean"]  # noqa: E731
        assert ask("ASK { <urn:x> <urn:count> ?n }") is False
        # a cheap DELETE/INSERT ... WHERE still goes through, and every acknowledged write is there
        cheap = ("DELETE { GRAPH <urn:tinyfleet:acked> { ?s <urn:n> 0 } } INSERT { GRAPH <urn:tinyfleet:acked> { ?s <urn:n> 100 } }"
                 " WHERE { ?s <urn:n> 0 }")
        assert httpx.post(f"{url}/sparql", content=cheap, headers=AUTH, timeout=30).status_code == 204
        stored = "SELECT ?v WHERE { GRAPH <urn:tinyfleet:acked> { <urn:a> <urn:n> ?v } } ORDER BY ?v"
        values = lambda: [int(b["v"]["value"]) for b in httpx.get(f"{url}/sparql", params={"query": stored},  # noqa: E731
                                                                   timeout=30).json()["results"]["bindings"]]
        assert values() == [1, 2, 3, 4, 100]
        assert service.kill() == -9
        service.start()  # and after a kill -9
        assert values() == [1, 2, 3, 4, 100]
