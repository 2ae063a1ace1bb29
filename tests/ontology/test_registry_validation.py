"""SHACL accepts good descriptions and refuses bad ones with messages a person can act on."""

from __future__ import annotations

import json

import pytest
from conftest import FEDERATION_TTL, FIXTURE_TTL, device_graph
from rdflib import Graph, Literal, URIRef

from ontology.rdf_input import InvalidRDF, parse_rdf
from ontology.validation import DescriptionRejected, check_description, load_and_check, validate_graph
from ontology.vocab import TF

XSD_INTEGER = URIRef("http://www.w3.org/2001/XMLSchema#integer")

GOOD_DEVICE = """
@prefix tf: <https://w3id.org/tinyfleet#> .
@prefix td: <https://www.w3.org/2019/wot/td#> .
<urn:dev:1> a tf:Device ; td:title "bench board" ; tf:supportsRuntime tf:TFLiteMicro ;
    tf:hasSensor [ a tf:Microphone ] ;
    tf:hasTransport [ a tf:MQTTTransport ; tf:mqttTopic "tinyfleet/devices/1" ] ;
    tf:hasMicrocontroller <urn:dev:1/mcu> .
<urn:dev:1/mcu> a tf:Microcontroller ; tf:ramBytes 1000 ; tf:flashBytes 2000 ; tf:totalRamBytes 4000 ;
    tf:totalFlashBytes 4000 ; tf:clockHz 64000000 ; tf:hasFPU true ; tf:architecture "ARM Cortex-M4F" .
"""


def test_good_descriptions_conform() -> None:
    assert validate_graph(Graph().parse(data=GOOD_DEVICE, format="turtle")) == []
    assert validate_graph(Graph().parse(data=FIXTURE_TTL, format="turtle")) == []
    assert validate_graph(Graph().parse(data=FEDERATION_TTL, format="turtle")) == []
    for profile in ("nano33ble", "esp32s3", "rp2040", "stm32f746", "rpi4"):
        assert validate_graph(device_graph("d-1", profile)) == []


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        ("tf:ramBytes 1000 ;", "", "tf:ramBytes", "exactly one tf:ramBytes"),
        ("tf:ramBytes 1000", 'tf:ramBytes "lots"', "tf:ramBytes", "xsd:integer"),
        ("tf:ramBytes 1000", "tf:ramBytes 9000", "tf:ramBytes", "cannot exceed total RAM"),
        ('tf:mqttTopic "tinyfleet/devices/1"', 'tf:mqttTopic "tinyfleet/#"', "tf:mqttTopic", "without wildcards"),
        ("tf:supportsRuntime tf:TFLiteMicro ;", "tf:supportsRuntime tf:Pytorch ;", "tf:supportsRuntime", "one of tf:TFLiteMicro"),
        ("tf:hasMicrocontroller <urn:dev:1/mcu> .", "tf:hasMicrocontroller <urn:nothing> .", "tf:hasMicrocontroller", "exactly one"),
    ],
)
def test_bad_device_is_refused_with_focus_path_and_reason(old: str, new: str, path: str, words: str) -> None:
    assert old in GOOD_DEVICE
    graph = Graph().parse(data=GOOD_DEVICE.replace(old, new), format="turtle")
    with pytest.raises(DescriptionRejected) as info:
        check_description(graph)
    hits = [v for v in info.value.violations if v.path == path and words in v.message]
    assert hits, [str(v) for v in info.value.violations]
    assert "<urn:dev:1" in hits[0].focus  # a blank node is named by who points to it
    assert path in str(info.value) and words in str(info.value)


def test_bad_model_lists_every_problem() -> None:
    graph = Graph().parse(data=FIXTURE_TTL, format="turtle")
    model = next(graph.subjects(TF.macs, None))
    graph.remove((model, TF.macs, None))
    graph.set((model, TF.tensorArenaBytes, Literal("-5", datatype=XSD_INTEGER)))
    messages = {(v.path, v.message.split(" (")[0]) for v in validate_graph(graph)}
    assert ("tf:macs", "a model needs exactly one tf:macs") in messages
    assert any(p == "tf:tensorArenaBytes" for p, _ in messages)


def test_malformed_turtle_is_refused_with_position() -> None:
    with pytest.raises(InvalidRDF, match="malformed Turtle.*line 2"):
        load_and_check("@prefix tf: <https://w3id.org/tinyfleet#> .\n<urn:x> tf:ramBytes .", "d.ttl")


def test_malformed_json_is_refused_with_position() -> None:
    with pytest.raises(InvalidRDF, match="malformed JSON at line 1 column"):
        parse_rdf('{"@context": ', "json-ld")


def test_unknown_remote_context_is_refused_not_fetched() -> None:
    doc = {"@context": "http://127.0.0.1:9/evil-context", "@id": "urn:x", "http://e.org/p": 1}
    with pytest.raises(InvalidRDF, match="not available offline"):
        parse_rdf(json.dumps(doc), "json-ld")


def test_unknown_suffix_and_empty_input_are_refused() -> None:
    with pytest.raises(InvalidRDF, match="cannot tell the RDF format"):
        load_and_check("x", "device.xml")
    with pytest.raises(InvalidRDF, match="no RDF statements"):
        parse_rdf("@prefix tf: <https://w3id.org/tinyfleet#> .", "turtle")
