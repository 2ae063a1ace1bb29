"""The remote backend against our own service and a real ``oxigraph serve``: CLI add/query, one-line errors.

Oxigraph's server is PyPI ``oxigraph`` (pinned in the dev extras); it is started with
``--union-default-graph`` because the registry reads the union of its named graphs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_server import ThreadServer, free_port, wait_until_up
from test_registry_service import TOKEN, td
from typer.testing import CliRunner

from ontology.cli import app
from ontology.named_queries import run_named_query
from ontology.remote_store import RemoteRefused, update_endpoint_for
from ontology.service import create_app
from ontology.store import StoreError, open_store
from ontology.thing_description import device_iri

runner = CliRunner()
OXIGRAPH = shutil.which("oxigraph") or str(Path(sys.executable).with_name("oxigraph"))


@pytest.fixture(scope="module")
def ours() -> Iterator[str]:
    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN, purge_interval_s=3600)) as url:
        yield f"sparql+{url}/sparql"


@pytest.fixture(scope="module")
def oxigraph() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([OXIGRAPH, "serve", "--bind", f"127.0.0.1:{port}", "--union-default-graph"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", proc=proc)
        yield f"sparql+http://127.0.0.1:{port}/query"
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(params=["ours", "oxigraph"])
def remote(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(request.param)


def cli(*args: str, token: str | None = TOKEN) -> tuple[int, str]:
    env = {"TINYFLEET_REGISTRY_TOKEN": token} if token else {"TINYFLEET_REGISTRY_TOKEN": ""}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_cli_add_and_query_through_a_remote_store(remote: str, tmp_path: Path) -> None:
    device = f"remote-{'o' if 'query' in remote else 'u'}"
    path = tmp_path / f"{device}.json"
    path.write_text(json.dumps(td(device, "esp32s3")))
    code, output = cli("add", str(path), "--store", remote)
    assert code == 0, output
    assert "registered" in output
    code, output = cli("query", "--store", remote, "--format", "csv", "--named", "models-for-device",
                       "--param", f"device={device_iri(device)}")
    assert code == 0, output
    assert output.splitlines()[0].startswith("device,model")  # the header; no models are registered here
    code, output = cli("query", "--store", remote, "--format", "json",
                       f"SELECT ?t WHERE {{ <{device_iri(device)}> <https://www.w3.org/2019/wot/td#title> ?t }}")
    assert code == 0, output
    assert json.loads(output)["results"]["bindings"][0]["t"]["value"]
    code, output = cli("query", "--store", remote, "--format", "tsv", f"SELECT ?g WHERE {{ GRAPH ?g {{ <{device_iri(device)}> ?p ?o }} }} LIMIT 1")
    assert code == 0 and output.splitlines() == ["?g", f"<{device_iri(device)}>"], output


def test_the_registry_store_api_matches_through_both_remotes(remote: str) -> None:
    with open_store(remote, token=TOKEN) as store:
        store.put_graph("urn:test:remote-graph", __import__("rdflib").Graph().parse(
            data="<urn:a> <https://w3id.org/tinyfleet#ramBytes> 5 .", format="turtle"))
        assert store.has_graph("urn:test:remote-graph")
        assert "urn:test:remote-graph" in store.graph_names()
        assert len(store.get_graph("urn:test:remote-graph")) == 1  # CONSTRUCT through the remote
        assert store.query("ASK { <urn:a> ?p 5 }").boolean is True
        rows = run_named_query(store, "devices-for-model", {"model": "urn:none"}).rows
        assert rows == []
        assert store.delete_graph("urn:test:remote-graph") and not store.has_graph("urn:test:remote-graph")
        with pytest.raises(RemoteRefused, match="HTTP 400"):
            store.query("SELEC nothing")


def test_remote_errors_are_one_line_not_a_traceback(ours: str, tmp_path: Path) -> None:
    dead = f"sparql+http://127.0.0.1:{free_port()}/sparql"
    code, output = cli("query", "--store", dead, "ASK {}")
    assert code == 1 and "cannot reach" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    path = tmp_path / "no-token.json"
    path.write_text(json.dumps(td("no-token")))
    code, output = cli("add", str(path), "--store", ours, token=None)
    assert code == 1 and "401" in output and "Traceback" not in output, output
    code, output = cli("query", "--store", ours, "SELEC x")
    assert code == 1 and "400" in output and "invalid SPARQL" in output and "Traceback" not in output, output


def test_a_read_only_client_needs_no_token(ours: str) -> None:
    code, output = cli("query", "--store", ours, "ASK { ?s ?p ?o }", token=None)
    assert code == 0 and output.strip() == "true", output


def test_update_endpoint_for_oxigraph_and_fuseki_style_urls() -> None:
    assert update_endpoint_for("http://h:7878/query") == "http://h:7878/update"
    assert update_endpoint_for("http://h/ds/query/") == "http://h/ds/update"
    assert update_endpoint_for("http://h/sparql") == "http://h/sparql"
    with pytest.raises(StoreError):
        open_store(f"sparql+http://127.0.0.1:{free_port()}/sparql")
