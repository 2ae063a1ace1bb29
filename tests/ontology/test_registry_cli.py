"""``tinyfleet registry`` commands through typer's CliRunner, on a real Oxigraph directory."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import FIXTURE_TTL, ID
from rdflib import Graph, Literal
from rdflib.namespace import XSD
from test_registry_service import td
from tiny_tflite import MACS, PARAMETERS, write_tiny_tflite
from typer.testing import CliRunner

from ontology.cli import app
from ontology.store import open_store
from ontology.thing_description import device_iri
from ontology.vocab import TF

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "esp-1.json"
    good.write_text(json.dumps(td("esp-1", "esp32s3")))
    bad_td = td("bad-1")
    bad_td["tf:hasMicrocontroller"]["tf:flashBytes"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_td))
    broken = tmp_path / "broken.ttl"
    broken.write_text("@prefix tf: <https://w3id.org/tinyfleet#> .\n<urn:x> tf:ramBytes ")
    models = tmp_path / "models.ttl"
    models.write_text(FIXTURE_TTL)
    return {"good": good, "bad": bad, "broken": broken, "models": models, "tflite": write_tiny_tflite(tmp_path / "tiny.tflite")}


def run(*args: str, store: Path | None = None) -> tuple[int, str]:
    env = {"TINYFLEET_REGISTRY": str(store)} if store else {}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_describe_model_prints_turtle_or_json_ld(files: dict[str, Path]) -> None:
    code, output = run("describe-model", str(files["tflite"]))
    assert code == 0
    graph = Graph().parse(data=output, format="turtle")
    model = next(graph.subjects(TF.macs, Literal(MACS, datatype=XSD.integer)))
    assert graph.value(model, TF.parameterCount).toPython() == PARAMETERS
    code, output = run("describe-model", str(files["tflite"]), "--format", "json-ld")
    assert code == 0 and len(Graph().parse(data=output, format="json-ld")) == len(graph)
    code, output = run("describe-model", str(files["good"]))
    assert code == 1 and "error" in output
    assert run("describe-model", str(files["tflite"]), "--format", "xml")[0] == 1


def test_validate_accepts_good_and_lists_every_problem(files: dict[str, Path]) -> None:
    code, output = run("validate", str(files["good"]))
    assert code == 0 and "conform" in output
    code, output = run("validate", str(files["bad"]))
    assert code == 1 and "tf:flashBytes" in output and "[tf:Microcontroller at" in output  # not eaten as markup
    code, output = run("validate", str(files["broken"]))
    assert code == 1 and "malformed Turtle" in output
    assert run("validate", str(files["models"]))[0] == 0


def test_add_then_query_named_and_raw(files: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "reg"
    assert run("add", str(files["good"]), store=store)[0] == 0
    code, output = run("add", str(files["models"]), store=store)
    assert code == 1 and "--graph" in output  # three models in one file: the graph must be named
    assert run("add", str(files["models"]), "--graph", f"{ID}graph/models", store=store)[0] == 0
    code, output = run("add", str(files["tflite"]), "--train-last-dense", store=store)
    assert code == 0 and "registered" in output
    code, output = run("query", "--named", "models-for-device", "--param", f"device={device_iri('esp-1')}", store=store)
    assert code == 0 and "kws-small" in output and "person-big" in output and "tiny" in output
    code, output = run("query", "--named", "models-for-device", "--param", f"device={device_iri('esp-1')}",
                       "--format", "json", store=store)
    names = {b["name"]["value"] for b in json.loads(output)["results"]["bindings"]}
    assert code == 0 and names == {"kws-small", "person-big", "tiny"}
    code, output = run("query", "SELECT ?g WHERE { GRAPH ?g { ?g a <https://w3id.org/tinyfleet#Device> } }",
                       "--format", "csv", store=store)
    assert code == 0 and list(csv.reader(io.StringIO(output))) == [["g"], [device_iri("esp-1")]]
    code, output = run("query", "ASK { ?s a <https://w3id.org/tinyfleet#Model> }", store=store)
    assert code == 0 and output.strip() == "true"
    code, output = run("query", "CONSTRUCT { ?m a ?t } WHERE { ?m a <https://w3id.org/tinyfleet#Model> ; a ?t }", store=store)
    assert code == 0 and len(Graph().parse(data=output, format="turtle")) == 3 + 1


def test_refusals_are_clear_and_write_nothing(files: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "reg"
    assert run("add", str(files["good"]), store=store)[0] == 0
    with open_store(str(store)) as opened:
        before = opened.graph_names()
    code, output = run("add", str(files["bad"]), store=store)
    assert code == 1 and "tf:flashBytes" in output
    assert run("add", str(files["broken"]), store=store)[0] == 1
    code, output = run("query", "--named", "models-for-device", "--param", "device=urn:x> } UNION { ?s ?p ?o", store=store)
    assert code == 1 and "expected iri" in output
    code, output = run("query", "--named", "models-for-device", store=store)
    assert code == 1 and "needs parameter" in output
    code, output = run("query", "SELEC ?x", store=store)
    assert code == 1 and "invalid SPARQL query" in output
    assert run("query", store=store)[0] == 1  # neither SPARQL nor --named
    with open_store(str(store)) as opened:
        assert opened.graph_names() == before


def test_list_queries_shows_names_and_parameters() -> None:
    code, output = run("list-queries")
    assert code == 0
    for name in ("models-for-device", "devices-for-model", "eligible-devices", "model-lineage"):
        assert name in output
