"""Every firmware_sim profile emits a valid WoT TD 1.1 whose RDF carries the TinyFleet facts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from rdflib import Literal, URIRef
from rdflib.namespace import RDF

from edge.profiles import PROFILES
from ontology.rdf_input import InvalidRDF
from ontology.thing_description import TD_CONTEXT_URL, device_iri, td_to_graph, thing_description
from ontology.vocab import TD, TF

XSD_INTEGER = URIRef("http://www.w3.org/2001/XMLSchema#integer")

# The official TD 1.1 JSON Schema (w3c/wot-thing-description, publication/ver11/7-resources/validation).
TD_SCHEMA = json.loads((Path(__file__).parent / "data" / "td-json-schema-validation.json").read_text())


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_td_is_valid_td_1_1(name: str) -> None:
    td = thing_description(PROFILES[name], f"{name}-7", flower_node_id=123)
    jsonschema.validate(td, TD_SCHEMA)
    assert td["@context"][0] == TD_CONTEXT_URL and "tf" in td["@context"][1]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_td_rdf_carries_memory_sensors_runtime_transport(name: str) -> None:
    profile = PROFILES[name]
    g = td_to_graph(thing_description(profile, "d-1", flower_node_id=99))
    dev = URIRef(device_iri("d-1"))
    assert (dev, RDF.type, TD.Thing) in g and (dev, RDF.type, TF.Device) in g
    mcu = g.value(dev, TF.hasMicrocontroller)
    assert g.value(mcu, TF.ramBytes) == Literal(profile.usable_ram_bytes, datatype=XSD_INTEGER)
    assert g.value(mcu, TF.flashBytes) == Literal(profile.usable_flash_bytes, datatype=XSD_INTEGER)
    assert g.value(mcu, TF.hasFPU).toPython() is profile.has_fpu
    kinds = {g.value(s, RDF.type) for s in g.objects(dev, TF.hasSensor)}
    assert len(kinds) == len(profile.sensors)
    transports = {g.value(t, RDF.type) for t in g.objects(dev, TF.hasTransport)}
    assert transports == {TF.MQTTTransport, TF.FlowerNode}


def test_bad_device_id_and_bad_td_json_are_refused() -> None:
    with pytest.raises(ValueError, match="device id"):
        thing_description(PROFILES["rp2040"], "bad id> {")
    with pytest.raises(InvalidRDF, match="malformed JSON"):
        td_to_graph("{not json")
    with pytest.raises(InvalidRDF, match="JSON object"):
        td_to_graph("[1, 2]")
