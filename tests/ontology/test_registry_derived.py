"""The fast named queries (derived leases, offers, sensor sets, requirement nodes) answer exactly what the
plain path queries over the raw descriptions answer, after every kind of write; expiry still excludes
lapsed devices, including those whose lease ran out minutes ago in the current hour."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import FEDERATION_TTL, FIXTURE_TTL, ID, fill

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import XSD

from edge.profiles import PROFILES
from ontology.derived import CHECK_ALWAYS, LEASE_BUCKET, NEVER, lease_bucket
from ontology.named_queries import run_named_query
from ontology.store import QueryTimeout, RegistryStore, from_oxigraph, open_store
from ontology.thing_description import device_iri, td_to_graph, thing_description
from ontology.vocab import TF

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "PREFIX tf: <https://w3id.org/tinyfleet#>\n"

# The meaning of the three matchmaking queries, written the obvious (slow) way over the descriptions
# themselves: device -> microcontroller -> RAM/flash, device -> sensor -> rdf:type, the expiry per device.
REFERENCE = {
    "eligible-devices": PREFIX + """SELECT DISTINCT ?device WHERE {
  ?model tf:runtime ?runtime ; tf:modelSizeBytes ?flash_need ; tf:hasOnDeviceTraining/tf:trainingRamBytes ?training_ram .
  ?task a tf:Task .
  ?device a tf:Device ; tf:supportsRuntime ?runtime ; tf:hasMicrocontroller ?mcu .
  ?mcu tf:ramBytes ?ram ; tf:flashBytes ?flash .
  FILTER(?training_ram <= ?ram && ?flash_need <= ?flash)
  FILTER NOT EXISTS { ?task tf:requiresSensorType ?kind . FILTER NOT EXISTS { ?device tf:hasSensor/a ?kind } }
  FILTER NOT EXISTS { ?device tf:runsFirmware ?i . ?i tf:firmwareModel ?model ; tf:firmwareFlashBytes ?mf ; tf:firmwareRamBytes ?mr .
                      FILTER(?mr > ?ram || ?mf > ?flash) }
  FILTER NOT EXISTS { ?device tf:registrationExpires ?e . FILTER NOT EXISTS { ?device tf:registrationExpires ?e2 FILTER(?e2 > NOW()) } }
}""",
    "devices-for-model": PREFIX + """SELECT DISTINCT ?device WHERE {
  ?model tf:runtime ?runtime ; tf:modelSizeBytes ?flash_need ; tf:tensorArenaBytes ?arena .
  ?device a tf:Device ; tf:supportsRuntime ?runtime ; tf:hasMicrocontroller ?mcu .
  ?mcu tf:ramBytes ?ram ; tf:flashBytes ?flash .
  FILTER(?flash_need <= ?flash && ?arena <= ?ram)
  FILTER NOT EXISTS { ?device tf:runsFirmware ?i . ?i tf:firmwareModel ?model ; tf:firmwareFlashBytes ?mf ; tf:firmwareRamBytes ?mr .
                      FILTER(?mr > ?ram || ?mf > ?flash) }
  FILTER NOT EXISTS { ?model tf:forTask/tf:requiresSensorType ?kind . FILTER NOT EXISTS { ?device tf:hasSensor/a ?kind } }
  FILTER NOT EXISTS { ?device tf:registrationExpires ?e . FILTER NOT EXISTS { ?device tf:registrationExpires ?e2 FILTER(?e2 > NOW()) } }
}""",
    "models-for-device": PREFIX + """SELECT DISTINCT ?model WHERE {
  ?device tf:supportsRuntime ?runtime ; tf:hasMicrocontroller ?mcu .
  ?mcu tf:ramBytes ?ram ; tf:flashBytes ?flash .
  ?model tf:runtime ?runtime ; tf:modelSizeBytes ?size ; tf:tensorArenaBytes ?arena .
  OPTIONAL { ?device tf:runsFirmware ?i . ?i tf:firmwareModel ?model ; tf:firmwareFlashBytes ?mf ; tf:firmwareRamBytes ?mr }
  FILTER(COALESCE(?mf, ?size) <= ?flash && COALESCE(?mr, ?arena) <= ?ram)
  FILTER NOT EXISTS { ?model tf:forTask/tf:requiresSensorType ?kind . FILTER NOT EXISTS { ?device tf:hasSensor/a ?kind } }
}""",
}
COLUMN = {"eligible-devices": "device", "devices-for-model": "device", "models-for-device": "model"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _device(device_id: str, profile: str, *expiries: str) -> Graph:
    """A device description as the directory stores it (no SHACL run: these are the project's own TDs)."""
    graph = td_to_graph(thing_description(PROFILES[profile], device_id))
    for lexical in expiries:
        graph.add((URIRef(device_iri(device_id)), TF.registrationExpires, Literal(lexical, datatype=XSD.dateTime)))
    return graph


def _expiry_fleet(store: RegistryStore) -> dict[str, bool]:
    """esp32s3 devices (all fit kws-small) with every kind of lease; returns device id -> should be listed."""
    now = datetime.now(UTC).replace(microsecond=0)
    cases = {
        "live-days": ([_iso(now + timedelta(days=2))], True),
        "lapsed-days": ([_iso(now - timedelta(days=2))], False),
        "live-minutes": ([_iso(now + timedelta(minutes=5))], True),  # the current (or next) hour's bucket
        "lapsed-seconds": ([_iso(now - timedelta(seconds=5))], False),  # current bucket: checked per device
        "no-lease": ([], True),
        "two-values-one-live": ([_iso(now - timedelta(days=1)), _iso(now + timedelta(days=1))], True),
        "offset-form": ([(now + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+02:00")], True),  # +02:00 = 1 h from now
        "naive-past": (["2001-01-01T00:00:00"], None),  # no timezone: the per-device check decides
    }
    for name, (expiries, _) in cases.items():
        store.put_graph(device_iri(name), _device(name, "esp32s3", *expiries))
    return {name: listed for name, (_, listed) in cases.items()}


def _fast(store: RegistryStore, name: str, params: dict[str, str]) -> list[str]:
    result = run_named_query(store, name, params)
    column = result.variables.index(COLUMN[name])
    return [str(row[column]) for row in result.rows]


def _reference(store: RegistryStore, name: str, params: dict[str, str]) -> list[str]:
    rows = store.query(REFERENCE[name].replace("SELECT DISTINCT ?", f"SELECT DISTINCT {' '.join('?' + k for k in params)} ?"),
                       {k: URIRef(v) for k, v in params.items()}, max_results=None).rows
    return sorted(str(row[-1]) for row in rows)


def _assert_all_agree(store: RegistryStore, devices: list[str], trainable: list[tuple[str, str]], models: list[str]) -> int:
    checked = 0
    for device in devices:
        assert _fast(store, "models-for-device", {"device": device}) == _reference(store, "models-for-device", {"device": device}), device
        checked += 1
    for model in models:
        assert _fast(store, "devices-for-model", {"model": model}) == _reference(store, "devices-for-model", {"model": model}), model
        checked += 1
    for model, task in trainable:
        params = {"model": model, "task": task}
        assert _fast(store, "eligible-devices", params) == _reference(store, "eligible-devices", params), params
        checked += 1
    return checked


def test_expiry_excludes_lapsed_devices_bucket_by_bucket_and_inside_the_current_hour() -> None:
    with open_store("memory:") as store:
        fill(store)
        expected = _expiry_fleet(store)
        eligible = set(_fast(store, "eligible-devices", {"model": f"{ID}model/kws-small", "task": f"{ID}task/kws"}))
        for name, listed in expected.items():
            if listed is not None:
                assert (device_iri(name) in eligible) is listed, name
        assert eligible == set(_reference(store, "eligible-devices", {"model": f"{ID}model/kws-small", "task": f"{ID}task/kws"}))
        # a lease that runs out while the registry is up drops out without any write
        store.put_graph(device_iri("short"), _device("short", "esp32s3", _iso(datetime.now(UTC) + timedelta(seconds=2))))
        assert device_iri("short") in _fast(store, "devices-for-model", {"model": f"{ID}model/kws-small"})
        time.sleep(3.1)
        assert device_iri("short") not in _fast(store, "devices-for-model", {"model": f"{ID}model/kws-small"})
        assert device_iri("short") not in _fast(store, "eligible-devices", {"model": f"{ID}model/kws-small", "task": f"{ID}task/kws"})


def test_lease_buckets() -> None:
    moment = datetime(2026, 11, 28, 14, 37, 5, tzinfo=UTC)
    assert lease_bucket([]) is None
    assert lease_bucket([Literal("2026-11-28T14:37:05Z", datatype=XSD.dateTime)]) == (moment.replace(minute=0, second=0), moment.replace(minute=0, second=0) + LEASE_BUCKET)
    assert lease_bucket([Literal("2026-11-28T16:37:05+02:00", datatype=XSD.dateTime)])[0] == moment.replace(minute=0, second=0)
    assert lease_bucket([Literal("2026-11-28T14:37:05", datatype=XSD.dateTime)]) == CHECK_ALWAYS  # no timezone
    assert lease_bucket([Literal("soon")]) == CHECK_ALWAYS
    assert NEVER[0] > datetime(9000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("load", ["put_graph", "bulk"])
def test_fast_queries_agree_with_the_plain_ones_on_a_generated_fleet(load: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from registry import generate  # bench/registry.py: the benchmark's own fleet generator
    finally:
        sys.path.remove(str(ROOT / "bench"))
    fleet = generate(80, 24, seed=3)
    with open_store("memory:") as store:
        if load == "bulk":
            store.bulk_load_nquads(fleet.nquads)
        else:  # one description per put_graph, as the directory writes them
            from rdflib import Dataset

            dataset = Dataset()
            dataset.parse(data=fleet.nquads, format="nquads")
            for graph in dataset.graphs():
                if len(graph) and isinstance(graph.identifier, URIRef):
                    store.put_graph(str(graph.identifier), Graph() + graph)
        fill(store)
        _expiry_fleet(store)
        devices = fleet.devices[:30] + [device_iri(d) for d in ("nano-1", "esp-1", "pi-1", "naive-past")]
        trainable = fleet.trainable[:16] + [(f"{ID}model/kws-small", f"{ID}task/kws"), (f"{ID}model/kws-small", f"{ID}task/person")]
        models = [m for m, _ in fleet.trainable[:16]] + [f"{ID}model/{m}" for m in ("kws-small", "person-big", "anomaly-litert")]
        _firmware_images(store, fleet.devices[:12], models)
        assert _assert_all_agree(store, devices, trainable, models) == len(devices) + len(trainable) + len(models)
        listed = sum(len(_fast(store, "eligible-devices", {"model": m, "task": t})) for m, t in trainable)
        assert listed > 0  # the comparison is not between empty answers only


def _firmware_images(store: RegistryStore, devices: list[str], models: list[str]) -> None:
    """Measured images of models on some devices: tiny ones (a model may fit on measurement alone) and huge ones."""
    from ontology.firmware_facts import FirmwareFacts

    for i, device in enumerate(devices):
        size = 1 if i % 2 else 10**9  # fits anything / fits nothing
        facts = FirmwareFacts(device, f"{ID}task/kws", "nano33ble", size, size, size, 0, size, model=models[i % len(models)])
        store.put_graph(facts.image, facts.graph())


def test_changing_or_removing_a_task_refreshes_the_models_that_need_it() -> None:
    tasks_graph, models_graph = f"{ID}graph/tasks", f"{ID}graph/models"
    tasks = Graph().parse(data=FIXTURE_TTL, format="turtle")
    models = Graph()
    for triple in list(tasks):
        if not str(triple[0]).startswith(f"{ID}task/"):
            models.add(triple)
            tasks.remove(triple)
    with open_store("memory:") as store:
        for device_id, profile in (("nano-1", "nano33ble"), ("esp-1", "esp32s3"), ("pico-1", "rp2040")):
            store.put_graph(device_iri(device_id), _device(device_id, profile))
        store.put_graph(models_graph, models)  # models first: their tasks are not described yet
        nano = {"device": device_iri("nano-1")}
        assert _fast(store, "models-for-device", nano) == _reference(store, "models-for-device", nano)
        store.put_graph(tasks_graph, tasks)  # kws needs a microphone: the nano has one
        assert f"{ID}model/kws-small" in _fast(store, "models-for-device", nano)
        assert _fast(store, "models-for-device", nano) == _reference(store, "models-for-device", nano)
        tasks.remove((URIRef(f"{ID}task/kws"), TF.requiresSensorType, TF.Microphone))
        tasks.add((URIRef(f"{ID}task/kws"), TF.requiresSensorType, TF.Camera))  # now it needs a camera: the nano has none
        store.put_graph(tasks_graph, tasks)
        assert f"{ID}model/kws-small" not in _fast(store, "models-for-device", nano)
        kws = {"model": f"{ID}model/kws-small"}
        assert _fast(store, "devices-for-model", kws) == _reference(store, "devices-for-model", kws) == [device_iri("esp-1")]
        store.delete_graph(tasks_graph)  # an undescribed task needs no sensor
        assert _fast(store, "models-for-device", nano) == _reference(store, "models-for-device", nano)
        assert f"{ID}model/kws-small" in _fast(store, "models-for-device", nano)
        store.update(  # a raw update re-derives everything, requirement sets included
            PREFIX + f"INSERT DATA {{ GRAPH <{tasks_graph}> {{ <{ID}task/kws> a tf:Task ; tf:requiresSensorType tf:Gyroscope }} }}"
        )
        assert f"{ID}model/kws-small" not in _fast(store, "models-for-device", {"device": device_iri("esp-1")})
        assert _fast(store, "models-for-device", nano) == _reference(store, "models-for-device", nano)
        store.delete_graph(device_iri("pico-1"))
        store.delete_graph(models_graph)
        store.prune_capabilities()
        left = store.query(PREFIX + "SELECT ?r WHERE { ?r a tf:Requirement }").rows
        assert left == []  # no model links to a requirement node any more
        assert store.query(PREFIX + "SELECT ?o WHERE { ?o a tf:Offer }").rows  # nano and esp still make offers


def test_rdflib_engine_gives_the_same_answers() -> None:
    """The named queries are plain SPARQL 1.1: rdflib's engine (the benchmark's baseline) agrees with Oxigraph."""
    with open_store("memory:") as ox_store, open_store("rdflib-memory:") as rd_store:
        for store in (ox_store, rd_store):
            fill(store)
        for store in (ox_store, rd_store):  # after the slow fills, so both see the same leases
            _expiry_fleet(store)
        cases = [("models-for-device", {"device": device_iri(d)}) for d in ("nano-1", "esp-1", "stm-1", "pi-1")]
        cases += [("devices-for-model", {"model": f"{ID}model/{m}"}) for m in ("kws-small", "person-big", "anomaly-litert")]
        cases += [("eligible-devices", {"model": f"{ID}model/kws-small", "task": f"{ID}task/{t}"}) for t in ("kws", "person")]
        for name, params in cases:
            assert _fast(rd_store, name, params) == _fast(ox_store, name, params), (name, params)
        assert FEDERATION_TTL  # the fixture's federation is loaded too (lineage is covered elsewhere)


def test_fast_literal_conversion_matches_rdflibs_constructor() -> None:
    import pyoxigraph as ox
    from oxrdflib._converter import from_ox

    xsd = "http://www.w3.org/2001/XMLSchema#"
    terms = [ox.Literal(v, datatype=ox.NamedNode(xsd + "integer")) for v in ("0", "42", "-7", "123456789012")]
    terms += [ox.Literal(v) for v in ("", "kws-small", "ünïcode ✓", '"quoted"')]
    terms += [ox.Literal("0.5", datatype=ox.NamedNode(xsd + "double")), ox.Literal("hallo", language="de"),
              ox.Literal("2026-11-28T14:00:00Z", datatype=ox.NamedNode(xsd + "dateTime")), ox.NamedNode("https://w3id.org/x")]
    for term in terms:
        fast, slow = from_oxigraph(term), from_ox(term)
        assert type(fast) is type(slow) and fast == slow and hash(fast) == hash(slow) and fast.n3() == slow.n3(), term
        if isinstance(slow, Literal):
            assert (fast.value, fast.datatype, fast.language, fast.ill_typed) == (slow.value, slow.datatype, slow.language, slow.ill_typed)


def test_named_queries_run_on_the_callers_thread_with_their_deadline() -> None:
    with open_store("memory:") as store:
        slow = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"  # the ontology crossed with itself three times
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match="0.2 s limit"):
            store.query(slow, timeout_s=0.2, max_results=None, isolate=False)
        assert time.monotonic() - started < 2.0


def test_remote_endpoint_gives_the_same_answers() -> None:
    """Through a SPARQL 1.1 endpoint (parameters as a VALUES block, derived facts written over HTTP)."""
    from sparql_endpoint import SparqlEndpoint

    with SparqlEndpoint() as url, open_store(f"sparql+{url}") as remote, open_store("memory:") as local:
        for store in (remote, local):
            fill(store)
        for store in (remote, local):
            _expiry_fleet(store)
        cases = [("models-for-device", {"device": device_iri(d)}) for d in ("nano-1", "esp-1", "pi-1")]
        cases += [("devices-for-model", {"model": f"{ID}model/kws-small"})]
        cases += [("eligible-devices", {"model": f"{ID}model/kws-small", "task": f"{ID}task/{t}"}) for t in ("kws", "person")]
        for name, params in cases:
            assert _fast(remote, name, params) == _fast(local, name, params), (name, params)
        assert _fast(remote, "eligible-devices", {"model": f"{ID}model/kws-small", "task": f"{ID}task/kws"})  # not all empty


def test_a_task_needing_more_sensor_kinds_than_the_registry_matches_is_refused() -> None:
    from ontology.validation import DescriptionRejected, check_description

    kinds = ", ".join(f"tf:{k}" for k in ("Microphone", "Camera", "Accelerometer", "Gyroscope", "Magnetometer"))
    task = Graph().parse(data=f"@prefix tf: <https://w3id.org/tinyfleet#> . <{ID}task/many> a tf:Task ; tf:requiresSensorType {kinds} .",
                         format="turtle")
    with pytest.raises(DescriptionRejected, match="at most 4 sensor kinds"):
        check_description(task)
    four = Graph().parse(data=f"@prefix tf: <https://w3id.org/tinyfleet#> . <{ID}task/four> a tf:Task ; tf:requiresSensorType {kinds.rsplit(',', 1)[0]} .",
                         format="turtle")
    assert check_description(four) is four


def test_every_shipped_query_declares_its_prefixes() -> None:
    """run_named_query does not hand the store's prefix table to Oxigraph, so each .rq must parse on its own."""
    import pyoxigraph as ox

    from ontology.named_queries import named_queries

    store = ox.Store()
    for query in named_queries().values():
        store.query(query.text)  # raises SyntaxError on an undeclared prefix


def test_a_registry_written_before_the_current_derived_facts_is_re_derived_on_open(tmp_path: Path) -> None:
    location = f"oxigraph:{tmp_path / 'old'}"
    params = {"model": f"{ID}model/kws-small", "task": f"{ID}task/kws"}
    with open_store(location) as store:
        fill(store)
        expected = _fast(store, "eligible-devices", params)
        assert expected
        # what an older registry held: no leases, offers, sets, requirement nodes, version marker
        store.native.update(
            PREFIX + " ;\n".join(f"DELETE WHERE {{ GRAPH ?g {{ ?s tf:{p} ?o }} }}" for p in ("hasLease", "matchRequirement", "requiresSensorSet"))
            + " ;\nDROP GRAPH <https://w3id.org/tinyfleet/graph/capabilities>"
        )
        assert _fast(store, "eligible-devices", params) == []
    with open_store(location) as store:
        assert _fast(store, "eligible-devices", params) == expected
        assert store.ensure_derived() is False  # once is enough
