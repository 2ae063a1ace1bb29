"""Smoke test of bench/fuzz.py: a short bounded run of every target writes its JSON with zero crashes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "bench" / "fuzz.py"


def _module():
    spec = importlib.util.spec_from_file_location("tinyfleet_bench_fuzz", FUZZ)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_a_short_run_of_every_target_finds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    done = subprocess.run([sys.executable, str(FUZZ), "--engine", "mutation", "--runs", "300", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["targets"]) == {"wire", "td", "sparql-params", "c-wire"}
    for name in ("wire", "td", "sparql-params"):
        assert report["targets"][name]["inputs"] == 300 and report["targets"][name]["crashes"] == 0, report["targets"][name]
    c_part = report["targets"]["c-wire"]
    assert c_part["crashes"] == 0 and ("skipped" in c_part or c_part["inputs"] >= 300), c_part  # clang may be absent
    assert report["crashes"] == 0 and report["inputs"] >= 900


def test_the_mutation_engine_reports_an_undocumented_exception(monkeypatch) -> None:
    fuzz = _module()

    def fragile() -> object:
        def run(data: bytes) -> None:
            if b"\xff" in data:
                raise KeyError("found it")
        return run

    monkeypatch.setitem(fuzz.SETUP, "fragile", (lambda: [b"abc" * 10], fragile))
    result = fuzz.run_mutation("fragile", runs=2000, seconds=None, seed=1)
    assert result["crashes"] >= 1 and "KeyError" in result["crash_examples"][0]["error"]
    assert all(len(fuzz.mutate(b"seed", fuzz.random.Random(i), [b"x"])) <= 1 << 20 for i in range(100))


def test_inputs_the_fuzzer_found_are_answered_not_crashed() -> None:
    """Regressions from bench/fuzz.py runs: each was an undocumented exception (a 500 over HTTP)."""
    import httpx
    from registry_server import ThreadServer
    from test_registry_service import TOKEN

    from ontology.service import create_app
    from ontology.store import open_store

    with open_store("memory:") as store, ThreadServer(create_app(store, TOKEN)) as url:
        # rdflib's default-graph IRI, which oxrdflib turned into a DefaultGraph substitution (TypeError)
        assert httpx.get(f"{url}/queries/models-for-device", params={"device": "urn:x-rdflib:default"}).status_code == 200
        # IRIs Oxigraph refuses (U+FFFD, bad %-escapes): now refused as parameters, 400 not 500
        for bad in ("https://w3id.org/tinyfleet\ufffd/id", "urn:%x", "https://%w3id.org/"):
            response = httpx.get(f"{url}/queries/models-for-device", params={"device": bad})
            assert response.status_code == 400 and response.json()["type"].endswith("/invalid-parameter"), (bad, response.text)
