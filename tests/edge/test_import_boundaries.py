"""`edge` runs on devices: no TensorFlow, Flower or rdflib at import, and no imports of the packages that depend on it."""

import ast
import subprocess
import sys
from pathlib import Path

EDGE = Path(__file__).resolve().parents[2] / "edge"


def test_every_edge_module_imports_with_tensorflow_blocked():
    script = """
import importlib, pkgutil, sys
for blocked in ("tensorflow", "keras", "flwr", "rdflib", "pyoxigraph", "typer", "rich"):
    sys.modules[blocked] = None  # importing any of these now raises ImportError
import edge
names = [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
for name in names:
    importlib.import_module(name)
assert "tensorflow" not in [m for m in sys.modules if sys.modules[m] is not None]
print(len(names))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10


def _imported(nodes) -> list[str]:
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append((node.module or "").split(".")[0])
    return names


def test_edge_imports_neither_server_nor_firmware_sim_nor_ontology():
    offenders = []
    for path in EDGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        anywhere = _imported(ast.walk(tree))
        top_level = _imported(tree.body)  # TensorFlow (last-resort interpreter) and flwr (its records) only lazily
        offenders += [f"{path.name}: {n}" for n in anywhere if n in {"server", "firmware_sim", "ontology"}]
        heavy = {"tensorflow", "keras", "flwr", "rdflib", "pyoxigraph", "typer", "rich"}
        offenders += [f"{path.name}: {n} at module level" for n in top_level if n in heavy]
    assert offenders == []
