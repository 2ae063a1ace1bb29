"""The demo's registry report reads a version's newest ancestors without walking the whole lineage."""

import numpy as np
import pytest

from ontology.named_queries import run_named_query
from ontology.store import open_store
from server.registry.registry_link import FederationRegistry


@pytest.fixture
def registry(tmp_path):
    store = open_store(f"oxigraph:{tmp_path / 'registry'}")
    registry = FederationRegistry(store, "sine-test")
    model = "https://w3id.org/tinyfleet/id/model/test"
    rng = np.random.default_rng(0)
    for number in range(8):
        weights = {"w0": rng.normal(size=3).astype(np.float32)}
        devices = [f"https://w3id.org/tinyfleet/id/device/sine-{(number + k) % 5}" for k in range(3)] if number else []
        registry.register_version(number, model, weights, devices, {"loss-after": float(number) / 7, "samples-used": 50.0})
    yield registry
    store.close()


def full_lineage(registry: FederationRegistry, version: str) -> list[dict[str, str]]:
    result = run_named_query(registry.store, "model-lineage", {"version": version})
    return [{k: ("" if v is None else str(v)) for k, v in zip(result.variables, row)} for row in result.rows]


@pytest.mark.parametrize("newest", [1, 2, 3, 8, 20])
def test_the_newest_rows_are_the_named_querys_first_rows(registry, newest):
    version = registry.version_iri(7)
    full = full_lineage(registry, version)
    bounded = registry.lineage(version, newest=newest)
    assert len(full) == 8 and len(bounded) == min(newest, 8)
    assert [row["number"] for row in bounded] == [str(7 - k) for k in range(len(bounded))]
    # metrics and devices are GROUP_CONCATs of unordered values: compare them as sets, the rest exactly
    as_sets = [{k: (set(v.split()) if k in ("devices", "metrics") else v) for k, v in row.items()} for row in bounded]
    assert as_sets == [{k: (set(v.split()) if k in ("devices", "metrics") else v) for k, v in row.items()} for row in full[:newest]]
    assert registry.lineage(version) == full


def test_the_initial_version_has_a_lineage_of_one(registry):
    assert [row["number"] for row in registry.lineage(registry.version_iri(0), newest=3)] == ["0"]
    with pytest.raises(ValueError, match="at least"):
        registry.lineage(registry.version_iri(0), newest=0)


class Recorder:
    def __init__(self, fail_at: int | None = None) -> None:
        self.seen: list[tuple[int, float]] = []
        self.fail_at = fail_at

    def on_round(self, server_round, weights, metrics) -> None:  # noqa: ANN001
        if server_round == self.fail_at:
            raise ValueError(f"store refused round {server_round}")
        self.seen.append((server_round, float(weights["w"][0]), metrics["loss"]))


def test_background_versions_register_every_round_in_order_with_the_values_of_that_round():
    from server.experiments.demo import BackgroundVersions

    recorder, theta = Recorder(), {"w": np.zeros(1, np.float32)}
    with BackgroundVersions(recorder) as versions:  # type: ignore[arg-type]
        for r in range(1, 51):
            theta["w"][0] = r  # the caller may reuse its arrays: the thread got a copy
            versions.on_round(r, theta, {"loss": 1.0 / r})
    assert recorder.seen == [(r, float(r), 1.0 / r) for r in range(1, 51)]


def test_a_failed_registration_is_raised_to_the_training_thread():
    from server.experiments.demo import BackgroundVersions

    with pytest.raises(RuntimeError, match="registering a model version failed") as caught:
        with BackgroundVersions(Recorder(fail_at=2)) as versions:  # type: ignore[arg-type]
            for r in range(1, 4):
                versions.on_round(r, {"w": np.zeros(1, np.float32)}, {"loss": 0.0})
    assert isinstance(caught.value.__cause__, ValueError)
