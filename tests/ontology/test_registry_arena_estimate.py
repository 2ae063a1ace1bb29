"""The describer's arena estimate against TFLite Micro's measured used arena (issue 14), and its matmul MACs.

TFLM is the PyPI ``tflite-micro`` interpreter (a 64-bit host build), probed in
a subprocess by :func:`edge.compiler.tflm_probe.tflm_arena` (its
``print_allocations()`` total). The models: every small model the compiler
tests build (``tests/edge/compiler_models.py``, which includes the project's
keywords/characters/presence int8 backbones from ``server.models.backbone_export``),
the project's sine backbones (int8 and float), this directory's tiny
flatbuffer fixture and TFLM's own example model shipped in the package
(``sine_float.tflite``, Hello World). Measured when written: estimate/TFLM
from 0.953 (Hello World) to 1.088 (a lone RESHAPE); the bound is +-25 %.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ontology.describe_model import describe_model_file
from ontology.tflite_facts import read_facts_file
from ontology.validation import validate_graph
from ontology.vocab import TF
from tiny_tflite import write_tiny_tflite

EDGE_TESTS = Path(__file__).resolve().parents[1] / "edge"
TOLERANCE = 0.25


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """name -> (model file, TFLM's used arena), every model probed in parallel subprocesses."""
    pytest.importorskip("tflite_micro")
    if str(EDGE_TESTS) not in sys.path:
        sys.path.insert(0, str(EDGE_TESTS))
    import tflite_micro
    from compiler_models import ALL_MODELS, build_model_bytes
    from tflite_models import export_backbones

    from edge.compiler.tflm_probe import tflm_arena

    folder = tmp_path_factory.mktemp("arena_models")
    backbones = export_backbones(folder)
    paths = {"sine_backbone_int8": backbones.int8_path, "sine_backbone_float": backbones.float_path,
             "tiny_fixture": write_tiny_tflite(folder / "tiny.tflite")}
    shipped = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    if shipped.exists():
        paths["tflm_hello_world"] = shipped
    for name in ALL_MODELS:
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(build_model_bytes(name))
    with ThreadPoolExecutor(max_workers=8) as pool:
        totals = dict(zip(paths, pool.map(lambda p: tflm_arena(p).total, paths.values())))
    return {name: (paths[name], totals[name]) for name in paths}


def test_arena_estimate_within_25_percent_of_tflm_on_every_model(measured: dict[str, tuple[Path, int]]) -> None:
    ratios = {}
    for name, (path, total) in measured.items():
        facts = read_facts_file(path)
        assert facts.tflm_unsupported is None, name
        ratios[name] = facts.tflm_arena_bytes / total
        assert facts.tflm_arena_bytes_32bit < facts.tflm_arena_bytes
    off = {n: round(r, 3) for n, r in ratios.items() if abs(r - 1) > TOLERANCE}
    assert not off, f"estimate/TFLM outside +-25 %: {off}"
    assert len(ratios) >= 45


def test_rdf_carries_the_estimate_head_and_compiled_ram(measured: dict[str, tuple[Path, int]]) -> None:
    path, total = measured["backbone_keywords"]
    iri, g = describe_model_file(path)
    assert validate_graph(g) == []
    facts = read_facts_file(path)
    arena = g.value(iri, TF.tensorArenaBytes).toPython()
    assert arena == facts.tflm_arena_bytes and abs(arena / total - 1) <= TOLERANCE
    assert g.value(iri, TF.plannerHeadBytes).toPython() == facts.arena_bytes < arena
    assert g.value(iri, TF.tensorArenaBytes32Bit).toPython() < arena
    from edge.compiler import compile_model

    compiled = compile_model(path.read_bytes())
    assert g.value(iri, TF.compiledRamBytes).toPython() == compiled.arena_bytes + compiled.input_bytes + compiled.output_bytes
    assert g.value(iri, TF.compiledRamBytes).toPython() <= total  # fits where TFLM fits
    assert (iri, TF.runtime, TF.TFLiteMicro) in g and g.value(iri, TF.tflmUnsupported) is None


def test_batch_matmul_macs_of_the_sine_training_graph(tmp_path: Path) -> None:
    """The training graph's hidden layer is a BATCH_MATMUL (weights read from a variable): 40 + 1600 + 40 MACs."""
    from server.models.sine_mlp import export_training_model

    sizes = (1, 40, 40, 1)
    facts = read_facts_file(export_training_model(tmp_path / "sine.tflite", sizes))
    assert "BATCH_MATMUL" in facts.op_counts
    assert facts.macs == sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) == 1680
    matmul = [layer for layer in facts.layers if layer.op == "BATCH_MATMUL"]
    assert [layer.macs for layer in matmul] == [1600]
