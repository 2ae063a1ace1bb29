"""The layers hold: `edge` runs on devices (no TensorFlow, Flower or rdflib at import, none of our other packages);
`firmware_sim` and `ontology` build on `edge` alone; `server` may import anything; no module exceeds 600 lines.

Parsed with `ast`, so an import inside a function counts as much as one at the top: a lazy import still makes
the layer depend on the other package, it only defers the failure to the day the function runs on a device."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "edge"

OUR_PACKAGES = frozenset({"edge", "firmware_sim", "ontology", "server", "bench", "tests"})
MAY_IMPORT = {  # a layer -> the packages of ours it may import (itself included); server and bench: anything
    "edge": frozenset({"edge"}),
    "firmware_sim": frozenset({"edge", "firmware_sim"}),
    "ontology": frozenset({"edge", "ontology"}),
}
MAX_LINES = 600
SIZED = ("edge", "firmware_sim", "ontology", "server", "bench")

# Known violations in files this test's owner may not change, each with the file and why it is tolerated.
# Empty: keep it that way. Add an entry only with the lead's agreement, and remove it when the file is fixed.
LAYER_ALLOW_LIST: frozenset[tuple[str, str]] = frozenset()  # {(relative path, imported module)}
LENGTH_ALLOW_LIST: frozenset[str] = frozenset()  # {relative path}: none; every module is within the limit


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


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _absolute_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Every absolute import anywhere in the module (top level, functions, classes, ``if TYPE_CHECKING``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def layer_violations() -> list[str]:
    """``path:line imports module`` for each import of ours a layer may not make (relative imports stay inside)."""
    offenders = []
    for layer, allowed in MAY_IMPORT.items():
        for path in _modules(layer):
            relative = str(path.relative_to(ROOT))
            for line, module in _absolute_imports(ast.parse(path.read_text(), str(path))):
                top = module.partition(".")[0]
                if top in OUR_PACKAGES and top not in allowed and (relative, module) not in LAYER_ALLOW_LIST:
                    offenders.append(f"{relative}:{line} imports {module} ({layer} may import only {sorted(allowed)})")
    return offenders


def test_each_layer_imports_only_the_layers_below_it():
    assert layer_violations() == []


def test_the_layer_check_sees_function_level_and_from_imports():
    source = "import edge.mlp\nfrom firmware_sim import fleet\ndef f():\n    from server.cli import app\n    import ontology\n"
    found = [module for _, module in _absolute_imports(ast.parse(source))]
    assert found == ["edge.mlp", "firmware_sim", "server.cli", "ontology"]


def test_no_module_is_longer_than_600_lines():
    too_long = []
    for package in SIZED:
        for path in _modules(package):
            relative = str(path.relative_to(ROOT))
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES and relative not in LENGTH_ALLOW_LIST:
                too_long.append(f"{relative}: {lines} lines")
    assert too_long == [], f"split these by job (limit {MAX_LINES} lines): {too_long}"


def test_the_allow_lists_name_only_what_still_needs_them():
    """An entry whose violation is gone must go too, or the list would hide the next one."""
    for relative, module in LAYER_ALLOW_LIST:
        assert (ROOT / relative).exists(), relative
        imported = {m for _, m in _absolute_imports(ast.parse((ROOT / relative).read_text()))}
        assert module in imported, f"{relative} no longer imports {module}: drop it from LAYER_ALLOW_LIST"
    for relative in LENGTH_ALLOW_LIST:
        assert len((ROOT / relative).read_text().splitlines()) > MAX_LINES, f"drop {relative} from LENGTH_ALLOW_LIST"
