"""The MQTT server's device selection by the registry (server/registry/registry_selection.py), without a broker: announced
Thing Descriptions are only queued on the announcing (network) thread and registered, through the registry's own
validation, when the round thread asks which devices may train; the `eligible-devices` query decides, and each
device left out is said once, with why."""

from __future__ import annotations

import threading

import pytest

from edge.mlp import init_mlp_weights
from edge.profiles import PROFILES
from ontology.store import open_store
from ontology.thing_description import device_iri, thing_description
from server.registry.registry_link import FederationRegistry
from server.registry.registry_selection import open_selection

LAYERS = (1, 64, 64, 1)  # training needs ~273 kB of RAM: an ESP32-S3 has it free, a Nano 33 BLE does not


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    store = open_store("memory:")
    said: list[str] = []
    chosen = open_selection(FederationRegistry(store, "t"), LAYERS, init_mlp_weights(LAYERS, 0),
                            tmp_path_factory.mktemp("models"), said.append)
    chosen.said = said  # type: ignore[attr-defined]
    yield chosen
    store.close()


def announce_from_another_thread(selection, device_id: str, td: dict | None) -> None:
    worker = threading.Thread(target=selection.announced, args=(device_id, td))  # as paho's network thread would
    worker.start()
    worker.join()


def test_announced_tds_are_registered_on_the_asking_thread_and_the_query_decides(selection):
    announce_from_another_thread(selection, "esp-a", thing_description(PROFILES["esp32s3"], "esp-a"))
    announce_from_another_thread(selection, "nano-a", thing_description(PROFILES["nano33ble"], "nano-a"))
    assert selection.registered == set()  # nothing touched the store on the announcing thread
    assert selection(["esp-a", "nano-a", "silent"]) == ["esp-a"]
    assert selection.registered == {"esp-a", "nano-a"}
    assert selection.excluded["nano-a"].startswith("usable RAM 176,128 B < ")
    assert selection.excluded["silent"] == "no Thing Description registered"
    assert selection.registry.eligible_devices(selection.model, selection.task) == [device_iri("esp-a")]
    said = list(selection.said)
    assert selection(["esp-a", "nano-a", "silent"]) == ["esp-a"]
    assert selection.said == said  # a reason is said once, not at every poll


def test_a_refused_td_leaves_its_device_out_until_it_announces_a_valid_one(selection):
    td = thing_description(PROFILES["esp32s3"], "esp-b")
    announce_from_another_thread(selection, "esp-b", {**td, "id": device_iri("esp-other")})  # claims another device
    assert selection(["esp-b"]) == []
    assert selection.excluded["esp-b"].startswith("Thing Description refused (id mismatch: ")
    announce_from_another_thread(selection, "esp-b", td)
    assert selection(["esp-b"]) == ["esp-b"]
    # a valid TD, then a broken one: the device's earlier registration no longer makes it eligible
    announce_from_another_thread(selection, "esp-b", {**td, "@context": "https://example.org/not-a-td"})
    assert selection(["esp-b"]) == []
    assert "@context" in selection.excluded["esp-b"]
    announce_from_another_thread(selection, "esp-b", None)  # the device cleared its retained TD
    assert selection(["esp-b"]) == [] and selection.excluded["esp-b"] == "no Thing Description registered"


def test_an_unchanged_td_announced_again_is_not_written_again(selection):
    """After a broker restart every retained TD arrives again; registering 1,000 unchanged TDs took minutes."""
    writes: list[str] = []
    put = selection.registry.directory.put

    def counting_put(iri, td, *args, **kwargs):  # a spy around the real registry's write
        writes.append(iri)
        return put(iri, td, *args, **kwargs)

    selection.registry.directory.put = counting_put
    try:
        td = thing_description(PROFILES["esp32s3"], "esp-c")
        announce_from_another_thread(selection, "esp-c", td)
        assert selection(["esp-c"]) == ["esp-c"] and writes == [device_iri("esp-c")]
        announce_from_another_thread(selection, "esp-c", dict(td))  # the same TD, re-delivered
        assert selection(["esp-c"]) == ["esp-c"] and writes == [device_iri("esp-c")]
        changed = {**td, "title": "esp32s3 (esp-c, moved)"}
        announce_from_another_thread(selection, "esp-c", changed)  # a changed TD is registered again
        assert selection(["esp-c"]) == ["esp-c"] and writes == [device_iri("esp-c")] * 2
    finally:
        selection.registry.directory.put = put
