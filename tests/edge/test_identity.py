"""One device identity: seed, device id, Flower node id and registry IRI convert in one place."""

import pytest

from edge.identity import DeviceIdentity, device_id_of, device_iri, node_id_of


def test_a_generated_device_is_named_by_its_family_and_seed_and_back():
    ident = DeviceIdentity.of_seed(42, "characters")
    assert ident.device_id == "characters-42" and DeviceIdentity.parse("characters-42") == ident
    assert device_id_of(7) == "sine-7"
    assert DeviceIdentity.parse("nano-kitchen").seed is None  # a real board's id names no seed


def test_the_iri_and_node_id_follow_from_the_device_id_alone():
    ident = DeviceIdentity.parse("sine-3")
    assert ident.iri == device_iri("sine-3") == "https://w3id.org/tinyfleet/id/device/sine-3"
    assert ident.node_id == node_id_of("sine-3")
    ids = {node_id_of(f"sine-{i}") for i in range(1000)}
    assert len(ids) == 1000 and min(ids) > 1 and max(ids) < 2**63  # never 0 or the SuperLink's 1


@pytest.mark.parametrize("bad", ["", "bad id", "a/b", "x" * 129, "-lead", "sine-7#frag"])
def test_an_id_that_could_break_a_topic_or_an_iri_is_refused(bad):
    with pytest.raises(ValueError, match="device id"):
        DeviceIdentity(bad)


def test_a_negative_seed_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        DeviceIdentity.of_seed(-1)
