"""The ontology parses, documents itself, and declares every tf: term the code, shapes and queries use."""

from __future__ import annotations

import re
from rdflib import Graph
from rdflib.namespace import OWL, RDF, RDFS

from ontology.vocab import ONTOLOGY_FILE, PACKAGE_DIR, SENSOR_CLASSES, SHAPES_FILE, TF, load_ontology

TF_TERM = re.compile(r"(?:\btf:|TF\.|https://w3id\.org/tinyfleet#)([A-Za-z][A-Za-z0-9_]*)")


def _declared(g: Graph) -> set[str]:
    kinds = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty)
    terms = {str(s) for k in kinds for s in g.subjects(RDF.type, k)}
    terms |= {str(s) for s in g.subjects(RDF.type, TF.Runtime)}  # runtime individuals
    return {t[len(str(TF)) :] for t in terms if t.startswith(str(TF))}


def test_ontology_parses_and_declares_core_terms() -> None:
    g = load_ontology()
    assert len(g) > 300
    declared = _declared(g)
    for term in ("Device", "Microcontroller", "Sensor", "Model", "Layer", "Federation", "FederationRound", "ModelVersion",
                 "ramBytes", "flashBytes", "clockHz", "hasFPU", "architecture", "mqttTopic", "flowerNodeId",
                 "tensorArenaBytes", "modelSizeBytes", "macs", "parameterCount", "trainingRamBytes", "quantization"):
        assert term in declared, term


def test_every_tf_term_used_in_shapes_queries_and_code_is_declared() -> None:
    declared = _declared(load_ontology())
    sources = [SHAPES_FILE, *sorted((PACKAGE_DIR / "queries").glob("*.rq")), *sorted(PACKAGE_DIR.glob("*.py"))]  # not the tests: they use bad terms on purpose
    used: dict[str, set[str]] = {}
    for path in sources:
        for term in TF_TERM.findall(path.read_text(encoding="utf-8")):
            used.setdefault(term, set()).add(path.name)
    used.pop("anything", None)  # the example in vocab.py's docstring
    undeclared = {t: sorted(files) for t, files in used.items() if t not in declared}
    assert undeclared == {}
    assert {"ramBytes", "hasSensor", "trainingRamBytes"} <= set(used)


def test_domains_and_ranges_are_declared_classes_or_datatypes() -> None:
    g = load_ontology()
    classes = set(g.subjects(RDF.type, OWL.Class))
    for prop in set(g.subjects(RDF.type, OWL.ObjectProperty)) | set(g.subjects(RDF.type, OWL.DatatypeProperty)):
        if not str(prop).startswith(str(TF)):
            continue
        for domain in g.objects(prop, RDFS.domain):
            assert domain in classes, (prop, domain)
        for rng in g.objects(prop, RDFS.range):
            if (prop, RDF.type, OWL.DatatypeProperty) in g:
                assert str(rng).startswith("http://www.w3.org/2001/XMLSchema#"), (prop, rng)
            else:
                assert rng in classes or rng == OWL.Class, (prop, rng)
    for cls in classes:
        for parent in g.objects(cls, RDFS.subClassOf):
            assert parent in classes, (cls, parent)


def test_every_tf_term_has_label_and_comment() -> None:
    g = load_ontology()
    tf_subjects = {s for s in g.subjects() if str(s).startswith(str(TF))}
    missing = [str(s) for s in tf_subjects if g.value(s, RDFS.label) is None or g.value(s, RDFS.comment) is None]
    assert missing == []


def test_every_firmware_sim_sensor_kind_has_a_class() -> None:
    from edge.profiles import PROFILES

    declared = _declared(Graph().parse(ONTOLOGY_FILE))
    kinds = {k for p in PROFILES.values() for k in p.sensors}
    assert kinds <= set(SENSOR_CLASSES)
    assert {SENSOR_CLASSES[k] for k in SENSOR_CLASSES} <= declared
