"""Fixture fleet for the registry tests: real TDs of the firmware_sim profiles, models and a federation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rdflib import Graph

from edge.profiles import PROFILES
from ontology.store import RegistryStore, open_store
from ontology.thing_description import device_iri, td_to_graph, thing_description
from ontology.validation import check_description

ID = "https://w3id.org/tinyfleet/id/"

# Two tasks, three models, one federation with three versions. Sizes are chosen
# against the profiles' usable memory (KB = 1024):
#   nano33ble 172 KB RAM / 628 KB flash, mic+accel+...; esp32s3 352/7168, mic+camera;
#   rp2040 200/1536, temperature; stm32f746 256/768, mic+camera; rpi4 (litert), no sensors.
FIXTURE_TTL = f"""
@prefix tf: <https://w3id.org/tinyfleet#> .
@prefix schema: <https://schema.org/> .
@prefix prov: <http://www.w3.org/ns/prov#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

<{ID}task/kws> a tf:Task ; tf:requiresSensorType tf:Microphone .
<{ID}task/person> a tf:Task ; tf:requiresSensorType tf:Camera .

<{ID}model/kws-small> a tf:Model ; schema:name "kws-small" ; tf:forTask <{ID}task/kws> ;
    tf:runtime tf:TFLiteMicro ; tf:modelSizeBytes 100000 ; tf:tensorArenaBytes 50000 ;
    tf:parameterCount 20000 ; tf:macs 300000 ;
    tf:hasInput <{ID}model/kws-small/in> ; tf:hasOutput <{ID}model/kws-small/out> ; tf:hasLayer <{ID}model/kws-small/l0> ;
    tf:hasOnDeviceTraining [ a tf:OnDeviceTraining ; tf:trainingRamBytes 190000 ; tf:trainsLayer <{ID}model/kws-small/l0> ] .
<{ID}model/kws-small/in> a tf:TensorSpec ; tf:shape "[1, 49, 40, 1]" ; tf:elementType "INT8" .
<{ID}model/kws-small/out> a tf:TensorSpec ; tf:shape "[1, 4]" ; tf:elementType "INT8" .
<{ID}model/kws-small/l0> a tf:Layer ; tf:layerIndex 0 ; tf:operatorType "FULLY_CONNECTED" ; tf:outputShape "[1, 4]" ; tf:quantization "int8 per-channel" .

<{ID}model/person-big> a tf:Model ; schema:name "person-big" ; tf:forTask <{ID}task/person> ;
    tf:runtime tf:TFLiteMicro ; tf:modelSizeBytes 700000 ; tf:tensorArenaBytes 300000 ;
    tf:parameterCount 250000 ; tf:macs 7000000 ;
    tf:hasInput <{ID}model/person-big/in> ; tf:hasOutput <{ID}model/person-big/out> ; tf:hasLayer <{ID}model/person-big/l0> .
<{ID}model/person-big/in> a tf:TensorSpec ; tf:shape "[1, 96, 96, 1]" ; tf:elementType "INT8" .
<{ID}model/person-big/out> a tf:TensorSpec ; tf:shape "[1, 2]" ; tf:elementType "INT8" .
<{ID}model/person-big/l0> a tf:Layer ; tf:layerIndex 0 ; tf:operatorType "CONV_2D" ; tf:outputShape "[1, 48, 48, 8]" ; tf:quantization "int8 per-channel" .

<{ID}model/anomaly-litert> a tf:Model ; schema:name "anomaly-litert" ;
    tf:runtime tf:LiteRT ; tf:modelSizeBytes 5000 ; tf:tensorArenaBytes 2000 ;
    tf:parameterCount 500 ; tf:macs 500 ;
    tf:hasInput <{ID}model/anomaly-litert/in> ; tf:hasOutput <{ID}model/anomaly-litert/out> ; tf:hasLayer <{ID}model/anomaly-litert/l0> .
<{ID}model/anomaly-litert/in> a tf:TensorSpec ; tf:shape "[1, 3]" ; tf:elementType "FLOAT32" .
<{ID}model/anomaly-litert/out> a tf:TensorSpec ; tf:shape "[1, 1]" ; tf:elementType "FLOAT32" .
<{ID}model/anomaly-litert/l0> a tf:Layer ; tf:layerIndex 0 ; tf:operatorType "FULLY_CONNECTED" ; tf:outputShape "[1, 1]" ; tf:quantization "float32" .
"""

FEDERATION_TTL = f"""
@prefix tf: <https://w3id.org/tinyfleet#> .
@prefix prov: <http://www.w3.org/ns/prov#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

<{ID}federation/f1> a tf:Federation ; tf:trainsModel <{ID}model/kws-small> ; tf:forTask <{ID}task/kws> .
<{ID}federation/f1/round/1> a tf:FederationRound ; tf:partOfFederation <{ID}federation/f1> ; tf:roundNumber 1 ;
    tf:participant <{ID}device/nano-1>, <{ID}device/esp-1> ; prov:used <{ID}federation/f1/version/0> .
<{ID}federation/f1/round/2> a tf:FederationRound ; tf:partOfFederation <{ID}federation/f1> ; tf:roundNumber 2 ;
    tf:participant <{ID}device/esp-1> ; prov:used <{ID}federation/f1/version/1> .
<{ID}federation/f1/version/0> a tf:ModelVersion ; tf:versionOf <{ID}model/kws-small> ; tf:versionNumber 0 .
<{ID}federation/f1/version/1> a tf:ModelVersion ; tf:versionOf <{ID}model/kws-small> ; tf:versionNumber 1 ;
    prov:wasGeneratedBy <{ID}federation/f1/round/1> ; prov:wasDerivedFrom <{ID}federation/f1/version/0> ;
    tf:hasMetric [ a tf:Metric ; tf:metricName "eval-loss" ; tf:metricValue "0.5"^^xsd:double ] .
<{ID}federation/f1/version/2> a tf:ModelVersion ; tf:versionOf <{ID}model/kws-small> ; tf:versionNumber 2 ;
    prov:wasGeneratedBy <{ID}federation/f1/round/2> ; prov:wasDerivedFrom <{ID}federation/f1/version/1> ;
    tf:hasMetric [ a tf:Metric ; tf:metricName "eval-loss" ; tf:metricValue "0.25"^^xsd:double ] .
"""

#: device id -> profile; nano-old's registration has expired.
FLEET = {"nano-1": "nano33ble", "esp-1": "esp32s3", "pico-1": "rp2040", "stm-1": "stm32f746", "pi-1": "rpi4", "nano-old": "nano33ble"}


def device_graph(device_id: str, profile: str, expires: str | None = None) -> Graph:
    graph = td_to_graph(thing_description(PROFILES[profile], device_id))
    if expires is not None:
        graph.parse(data=f'<{device_iri(device_id)}> <https://w3id.org/tinyfleet#registrationExpires> "{expires}"^^<http://www.w3.org/2001/XMLSchema#dateTime> .', format="turtle")
    return check_description(graph)


def fill(store: RegistryStore) -> RegistryStore:
    for device_id, profile in FLEET.items():
        expires = "2000-01-01T00:00:00Z" if device_id == "nano-old" else "2999-01-01T00:00:00Z"
        store.put_graph(device_iri(device_id), device_graph(device_id, profile, expires))
    store.put_graph(f"{ID}graph/models", check_description(Graph().parse(data=FIXTURE_TTL, format="turtle")))
    store.put_graph(f"{ID}federation/f1", check_description(Graph().parse(data=FEDERATION_TTL, format="turtle")))
    return store


@pytest.fixture(scope="module")
def fleet_store() -> Iterator[RegistryStore]:
    """Read-only for the tests that use it: built once per module (SHACL checks take ~1.5 s)."""
    with open_store("memory:") as store:
        yield fill(store)
