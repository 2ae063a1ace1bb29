"""Named queries on the fixture fleet give the expected devices/models; parameters cannot inject."""

from __future__ import annotations

import pytest
from conftest import ID

from rdflib import URIRef

from ontology.named_queries import QueryParamError, named_queries, parse_param_args, run_named_query
from ontology.store import RegistryStore
from ontology.vocab import TF

DEV = f"{ID}device/"


def _column(result, name: str) -> list[str]:  # noqa: ANN001
    i = result.variables.index(name)
    return [str(row[i]) for row in result.rows]


def test_every_shipped_query_declares_summary_and_params() -> None:
    queries = named_queries()
    assert {"models-for-device", "devices-for-model", "eligible-devices", "model-lineage", "models-by-name"} <= set(queries)
    assert all(q.summary and q.params for q in queries.values())


def test_models_that_fit_a_device(fleet_store: RegistryStore) -> None:
    # nano: 172 KB RAM, 628 KB flash, microphone, no camera -> kws-small only.
    nano = run_named_query(fleet_store, "models-for-device", {"device": f"{DEV}nano-1"})
    assert _column(nano, "model") == [f"{ID}model/kws-small"]
    # esp32s3: 352 KB RAM, 7 MB flash, mic + camera -> both TFLM models; not the LiteRT one.
    esp = run_named_query(fleet_store, "models-for-device", {"device": f"{DEV}esp-1"})
    assert _column(esp, "model") == [f"{ID}model/kws-small", f"{ID}model/person-big"]
    # stm32f746: camera but 768 KB flash < 700000 B? 768 KB = 786432 B >= 700000, RAM 256 KB < 300000 -> kws only.
    stm = run_named_query(fleet_store, "models-for-device", {"device": f"{DEV}stm-1"})
    assert _column(stm, "model") == [f"{ID}model/kws-small"]
    pi = run_named_query(fleet_store, "models-for-device", {"device": f"{DEV}pi-1"})
    assert _column(pi, "model") == [f"{ID}model/anomaly-litert"]


def test_devices_that_can_run_a_model(fleet_store: RegistryStore) -> None:
    kws = run_named_query(fleet_store, "devices-for-model", {"model": f"{ID}model/kws-small"})
    # microphone + tflite-micro + enough memory; nano-old is expired, pico has no microphone.
    assert _column(kws, "device") == [f"{DEV}esp-1", f"{DEV}nano-1", f"{DEV}stm-1"]


def test_devices_eligible_for_a_federation_task(fleet_store: RegistryStore) -> None:
    # training needs 190000 B: nano (176128 B usable) is out, esp32s3 and stm32f746 are in.
    result = run_named_query(fleet_store, "eligible-devices", {"model": f"{ID}model/kws-small", "task": f"{ID}task/kws"})
    assert _column(result, "device") == [f"{DEV}esp-1", f"{DEV}stm-1"]


def test_lineage_of_a_model_version(fleet_store: RegistryStore) -> None:
    result = run_named_query(fleet_store, "model-lineage", {"version": f"{ID}federation/f1/version/2"})
    assert [int(n) for n in _column(result, "number")] == [2, 1, 0]
    devices = _column(result, "devices")
    assert devices[0] == f"{DEV}esp-1" and set(devices[1].split()) == {f"{DEV}esp-1", f"{DEV}nano-1"}
    assert _column(result, "metrics")[:2] == ["eval-loss=0.25", "eval-loss=0.5"]


@pytest.mark.parametrize(
    "evil",
    [
        DEV + "nano-1> . ?model a ?x } UNION { ?model ?p ?o",
        DEV + "nano-1>} ; DROP ALL ; #",
        "nano-1",  # not absolute
    ],
)
def test_iri_injection_is_refused_and_changes_nothing(fleet_store: RegistryStore, evil: str) -> None:
    before = fleet_store.graph_names()
    with pytest.raises(QueryParamError, match="expected iri"):
        run_named_query(fleet_store, "models-for-device", {"device": evil})
    assert fleet_store.graph_names() == before


def test_string_injection_is_bound_as_a_literal(fleet_store: RegistryStore) -> None:
    honest = run_named_query(fleet_store, "models-by-name", {"name": "kws-small"})
    assert _column(honest, "model") == [f"{ID}model/kws-small"]
    evil = 'kws-small" || true || "'
    attack = run_named_query(fleet_store, "models-by-name", {"name": evil})
    assert attack.rows == []  # the quote stayed inside the literal
    attack2 = run_named_query(fleet_store, "models-by-name", {"name": '"} ?model ?p ?o . { "'})
    assert attack2.rows == []


def test_parameter_errors_are_clear(fleet_store: RegistryStore) -> None:
    with pytest.raises(QueryParamError, match="needs parameter"):
        run_named_query(fleet_store, "eligible-devices", {"model": f"{ID}model/kws-small"})
    with pytest.raises(QueryParamError, match="has no parameter"):
        run_named_query(fleet_store, "models-for-device", {"device": f"{DEV}nano-1", "limit": "3"})
    with pytest.raises(QueryParamError, match="no named query"):
        run_named_query(fleet_store, "nope", {})
    assert parse_param_args(["a=b=c"]) == {"a": "b=c"}
    with pytest.raises(QueryParamError, match="NAME=VALUE"):
        parse_param_args(["novalue"])


def test_derived_capability_facts_are_kept_in_step_with_writes() -> None:
    """put_graph derives tf:hasSensorKind / tf:hasCapability; devices that agree share one capability node;
    a raw update re-derives; purging unused capability nodes keeps the used ones."""
    from conftest import device_graph

    from ontology.store import open_store
    from ontology.thing_description import device_iri

    def capability(store: RegistryStore, device: str) -> str:
        rows = store.query("PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?d ?c WHERE { ?d tf:hasCapability ?c }", {"d": device}).rows
        assert len(rows) == 1
        return str(rows[0][1])

    with open_store("memory:") as store:
        for name in ("a", "b"):
            store.put_graph(device_iri(name), device_graph(name, "esp32s3"))
        a, b = URIRef(device_iri("a")), URIRef(device_iri("b"))
        kinds = store.query("PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?k ?d WHERE { ?d tf:hasSensorKind ?k }", {"d": a}).rows
        assert {str(k) for (k, _d) in kinds} == {str(TF.Microphone), str(TF.Camera)}
        assert capability(store, a) == capability(store, b)
        # a raw update that changes b's RAM gives b its own capability node
        store.update(
            "PREFIX tf: <https://w3id.org/tinyfleet#> DELETE { GRAPH ?g { ?m tf:ramBytes ?r } } INSERT { GRAPH ?g { ?m tf:ramBytes 1000 } }"
            f" WHERE {{ GRAPH ?g {{ <{b}> tf:hasMicrocontroller ?m . ?m tf:ramBytes ?r }} }}"
        )
        assert capability(store, a) != capability(store, b)
        ram = store.query("PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?r ?d WHERE { ?d tf:hasCapability/tf:capabilityRamBytes ?r }", {"d": b}).rows
        assert int(ram[0][0]) == 1000
        store.delete_graph(device_iri("b"))
        store.prune_capabilities()
        caps = store.query("PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?c WHERE { ?c a tf:Capability }").rows
        assert [str(c) for (c,) in caps] == [capability(store, a)]
