"""The federation's registry questions and records, on a real persistent Oxigraph store."""

import time

import numpy as np
import pytest

from edge.mlp import NumpyMLP, init_mlp_weights
from edge.profiles import NANO_33_BLE_SENSE, RP2040_PICO_W
from ontology.store import open_store
from ontology.thing_description import device_iri
from ontology.validation import check_description
from server.registry.registry_link import FederationRegistry, wait_until_expired


@pytest.fixture(scope="module")
def training_model(tmp_path_factory):
    from server.models.sine_mlp import export_training_model

    return export_training_model(tmp_path_factory.mktemp("model") / "sine_mlp_train.tflite")


def test_selection_excludes_lapsed_and_too_small_devices_and_versions_have_lineage(tmp_path, training_model):
    store = open_store(f"oxigraph:{tmp_path / 'registry'}")
    try:
        registry = FederationRegistry(store, "sine-test")
        registry.register_devices([("sine-0", NANO_33_BLE_SENSE), ("sine-1", RP2040_PICO_W)], ttl_s=3600)
        registered = time.monotonic()
        registry.register_devices([("sine-2", NANO_33_BLE_SENSE)], ttl_s=1)  # stops renewing its lease
        task = registry.register_task("sine", "sine-wave regression")
        ram = NumpyMLP((1, 40, 40, 1)).memory_footprint().total
        model = registry.register_trainable_model(training_model, task, ram, "whole-model SGD")
        registry.link_federation(model, task)
        wait_until_expired(registered, 1)
        assert registry.eligible_devices(model, task) == [device_iri("sine-0"), device_iri("sine-1")]

        too_hungry = registry.register_trainable_model(training_model, task, 190 * 1024, "whole-model SGD")
        assert registry.eligible_devices(too_hungry, task) == [device_iri("sine-1")]  # Pico W: 200 KB usable

        weights = init_mlp_weights((1, 40, 40, 1), 0)
        registry.register_version(0, model, weights)
        for number in (1, 2):
            weights = {k: v + 0.1 for k, v in weights.items()}
            registry.register_version(number, model, weights, [device_iri("sine-0")], {"loss-after": 0.5 / number})
        check_description(store.get_graph(registry.federation) + store.get_graph(registry.version_iri(2)))
        lineage = registry.lineage(registry.version_iri(2))
        assert [row["number"] for row in lineage] == ["2", "1", "0"]
        assert device_iri("sine-0") in lineage[0]["devices"] and "loss-after=0.25" in lineage[0]["metrics"]
    finally:
        store.close()

    reopened = open_store(f"oxigraph:{tmp_path / 'registry'}")
    try:  # everything acknowledged is still there after a restart
        assert len(FederationRegistry(reopened, "sine-test").lineage(registry.version_iri(2))) == 3
    finally:
        reopened.close()


def test_run_versions_register_what_run_federation_reports_and_refuse_clashes(tmp_path, caplog):
    """`tinyfleet server --registry`: versions from on_round, version 0 only once a round trained, no overwrites."""
    from server.registry.registry_link import PARTICIPANT_DEVICES, open_run_versions

    theta0 = init_mlp_weights((1, 40, 40, 1), 0)
    theta1 = {k: v + 0.1 for k, v in theta0.items()}
    with open_store(f"oxigraph:{tmp_path / 'registry'}") as store:
        for bad in ("", "a b", "x/../y", "é"):
            with pytest.raises(ValueError, match="federation id"):
                open_run_versions(store, bad, "sine-mlp", 0, theta0)
        versions = open_run_versions(store, "srv", "sine-mlp", 0, theta0)
        versions.on_round(1, theta0, {"clients": 0.0})  # aggregated nothing: no version, not even θ0
        assert versions.versions == []
        versions.on_round(1, theta1, {"clients": 2.0, "participants": [3, 4],
                                      PARTICIPANT_DEVICES: [device_iri("sine-3"), device_iri("sine-4")]})
        registry = versions.registry
        assert versions.versions == [registry.version_iri(0), registry.version_iri(1)]
        lineage = registry.lineage(registry.version_iri(1))
        assert [row["number"] for row in lineage] == ["1", "0"]
        assert sorted(lineage[0]["devices"].split()) == [device_iri("sine-3"), device_iri("sine-4")]
        assert "clients=" in lineage[0]["metrics"] and "participants" not in lineage[0]["metrics"]
        assert lineage[1]["devices"] == "" and lineage[1]["metrics"] == ""

        with pytest.raises(ValueError, match="already holds version 0 of federation 'srv'"):
            open_run_versions(store, "srv", "sine-mlp", 0, theta0)  # a fresh run would overwrite it
        resumed = open_run_versions(store, "srv", "sine-mlp", 1, theta1)  # resuming continues the versions
        resumed.on_round(2, theta1, {PARTICIPANT_DEVICES: [device_iri("sine-5")]})
        assert [row["number"] for row in registry.lineage(registry.version_iri(2))] == ["2", "1", "0"]
        open_run_versions(store, "srv", "sine-mlp", 7, theta1)  # resumed from a round the registry never saw
        assert "no version 7 of federation 'srv'" in caplog.text


def test_a_server_registry_on_a_new_path_says_it_created_a_store(tmp_path):
    from server.serve import open_registry

    said: list[str] = []
    open_registry(str(tmp_path / "new"), said.append).close()
    open_registry(str(tmp_path / "new"), said.append).close()  # the second time it is an existing store
    assert said == [f"registry {tmp_path / 'new'}: no store there yet, a new one was created"]
