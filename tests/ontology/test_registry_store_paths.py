"""No silent stores: a --store that is not a registry is refused unless the command creates one; add --task sees the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURE_TTL, ID
from test_registry_cli import run
from test_registry_service import td
from tiny_tflite import write_tiny_tflite

from ontology.store import StoreError, open_store


def test_a_mistyped_store_is_refused_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "regsitry"
    code, output = run("query", "ASK { ?s ?p ?o }", store=typo)
    assert code == 1 and "no registry store at" in output and "--create" in output
    assert not typo.exists()
    code, output = run("query", "ASK { ?s ?p ?o }", "--create", store=typo)
    assert code == 0 and output.strip() == "true"  # created on request: the ontology graph is loaded
    code, output = run("query", "ASK { ?s ?p ?o }", store=typo)
    assert code == 0  # and now it is a registry


def test_an_unrelated_folder_is_never_written_into(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(td("dev-1")))
    for args in (("query", "ASK {}"), ("query", "ASK {}", "--create"), ("add", str(path))):
        code, output = run(*args, store=folder)
        assert code == 1 and "is not a registry store" in output and "holiday.jpg" in output, (args, output)
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    with pytest.raises(StoreError, match="not a registry store"):
        open_store(str(folder))  # even where creating is allowed


def test_add_creates_the_store_and_serve_may_too(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(td("dev-2")))
    code, output = run("add", str(path), store=tmp_path / "new-registry")
    assert code == 0 and "registered" in output
    empty = tmp_path / "empty"
    empty.mkdir()
    with open_store(str(empty)) as store:  # an empty directory counts as new
        assert store.has_graph("https://w3id.org/tinyfleet/graph/ontology")


def test_add_a_model_for_a_task_already_in_the_store(tmp_path: Path) -> None:
    store = tmp_path / "reg"
    models = tmp_path / "models.ttl"
    models.write_text(FIXTURE_TTL)
    assert run("add", str(models), "--graph", f"{ID}graph/models", store=store)[0] == 0
    tflite = write_tiny_tflite(tmp_path / "tiny.tflite")
    code, output = run("add", str(tflite), "--task", f"{ID}task/kws", store=store)
    assert code == 0, output  # it used to say "tf:forTask must point to a tf:Task"
    code, output = run("add", str(tflite), "--task", f"{ID}task/no-such-task", store=store)
    assert code == 1 and "tf:forTask" in output, output
