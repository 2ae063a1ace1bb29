"""Registry store: replace semantics, persistence across reopen and kill -9, limits, remote endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import fill
from rdflib import Graph, Literal, URIRef
from sparql_endpoint import SparqlEndpoint

from ontology.store import QueryTimeout, StoreError, open_store
from ontology.vocab import ONTOLOGY_GRAPH

G = "https://w3id.org/tinyfleet/id/device/x"


def _graph(value: int) -> Graph:
    g = Graph()
    g.add((URIRef(G), URIRef("urn:p"), Literal(value)))
    return g


def test_put_replaces_and_delete_removes() -> None:
    with open_store("memory:") as store:
        store.put_graph(G, _graph(1))
        store.put_graph(G, _graph(2))
        assert {o.toPython() for o in store.get_graph(G).objects()} == {2}
        assert store.delete_graph(G) is True
        assert store.delete_graph(G) is False
        assert store.graph_names() == [ONTOLOGY_GRAPH]


def test_persists_across_reopen(tmp_path: Path) -> None:
    location = f"oxigraph:{tmp_path / 'reg'}"
    with open_store(location) as store:
        fill(store)
        names = store.graph_names()
    with open_store(location) as store:
        assert store.graph_names() == names
        assert len(names) == 10  # ontology + capability summaries + 6 devices + models + federation


def test_second_process_cannot_open_a_locked_store(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "reg")):
        code = f"from ontology.store import open_store; open_store({str(tmp_path / 'reg')!r})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and "StoreError" in proc.stderr and "another process" in proc.stderr


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    location = str(tmp_path / "reg")
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "writer_process.py"), location],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    acked = -1
    deadline = time.monotonic() + 30
    assert writer.stdout is not None
    while acked < 40 and time.monotonic() < deadline:
        acked = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL and acked >= 40
    with open_store(location, load_ontology=False) as store:
        for i in range(acked + 1):
            g = store.get_graph(f"urn:graph:{i}")
            assert len(g) == 50, i  # whole graphs: put_graph is one transaction


def test_invalid_graph_name_and_query_are_refused() -> None:
    with open_store("memory:") as store:
        with pytest.raises(ValueError, match="absolute IRI"):
            store.put_graph("urn:x> } ; DROP ALL ; #", _graph(1))
        with pytest.raises(ValueError, match="invalid SPARQL query"):
            store.query("SELEC ?x")
        assert store.graph_names() == [ONTOLOGY_GRAPH]
    with pytest.raises(StoreError, match="unknown registry URL"):
        open_store("ftp://example.org/x")


def test_result_cap_and_timeout() -> None:
    with open_store("memory:") as store:
        capped = store.query("SELECT ?s WHERE { ?s ?p ?o }", max_results=5)
        assert len(capped.rows) == 5 and capped.truncated
        # The ontology crossed with itself three times (~10^8 rows): far beyond 0.2 s.
        slow = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match="0.2 s limit"):
            store.query(slow, timeout_s=0.2, max_results=None)
        assert time.monotonic() - started < 2.0
        while any(t.name == "registry-query" for t in threading.enumerate()):  # the worker stops at its next row
            assert time.monotonic() - started < 5.0
            time.sleep(0.05)


def test_remote_sparql_endpoint_backend_behaves_like_embedded() -> None:
    with SparqlEndpoint() as url, open_store(f"sparql+{url}") as store:
        store.put_graph(G, _graph(1))
        store.put_graph(G, _graph(2))
        assert {o.toPython() for o in store.get_graph(G).objects()} == {2}
        assert G in store.graph_names()
        assert store.delete_graph(G) is True
        assert G not in store.graph_names()
