"""The federation's registry questions and records, on a real persistent Oxigraph store."""

import time

import numpy as np
import pytest

from edge.mlp import NumpyMLP, init_mlp_weights
from firmware_sim.profiles import NANO_33_BLE_SENSE, RP2040_PICO_W
from ontology.store import open_store
from ontology.thing_description import device_iri
from ontology.validation import check_description
from server.registry_link import FederationRegistry, wait_until_expired


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
