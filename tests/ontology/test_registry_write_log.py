"""What a registration writes: only its own graph once its board's shared nodes are stored, and a write log
bounded by flushes, so an acknowledged write survives kill -9 and a restart has little log to replay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURE_TTL, ID, device_graph
from rdflib import Graph

import ontology.store
from ontology.store import open_store
from ontology.thing_description import device_iri
from ontology.validation import check_description
from ontology.vocab import CAPABILITY_GRAPH


def test_a_second_board_of_a_kind_writes_only_its_own_graph(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "reg")) as store:
        before = store.written_bytes
        store.put_graph(device_iri("nano-1"), device_graph("nano-1", "nano33ble", "2999-01-01T00:00:00Z"))
        first = store.written_bytes - before
        before = store.written_bytes
        store.put_graph(device_iri("nano-2"), device_graph("nano-2", "nano33ble", "2999-01-01T00:30:00Z"))
        second = store.written_bytes - before
        capability = store.get_graph(CAPABILITY_GRAPH)
    # the first nano33ble writes its ~3,600-triple capability closure; the second (same capability, same lease
    # hour) only its own ~75 triples
    assert len(capability) > 3000
    assert second * 10 < first, (first, second)


def test_incremental_derived_facts_equal_a_full_re_derivation(tmp_path: Path) -> None:
    """The writes that skip stored shared nodes leave exactly the facts derive_all computes from scratch."""
    with open_store(str(tmp_path / "reg")) as store:
        devices = {"nano-1": "nano33ble", "nano-2": "nano33ble", "esp-1": "esp32s3", "pico-1": "rp2040", "pi-1": "rpi4"}
        for i, (device_id, profile) in enumerate(devices.items()):
            store.put_graph(device_iri(device_id), device_graph(device_id, profile, f"2999-01-01T0{i}:00:00Z"))
        store.put_graph(f"{ID}graph/models", check_description(Graph().parse(data=FIXTURE_TTL, format="turtle")))
        store.put_graph(device_iri("nano-2"), device_graph("nano-2", "nano33ble", "2999-01-01T00:10:00Z"))  # again
        store.delete_graph(device_iri("esp-1"))
        store.prune_capabilities()
        incremental = {name: set(store.get_graph(name)) for name in store.graph_names()}
        store.derive_all()
        store.prune_capabilities()
        scratch = {name: set(store.get_graph(name)) for name in store.graph_names()}
    assert incremental.keys() == scratch.keys()
    for name in scratch:
        assert incremental[name] == scratch[name], name


def test_the_store_flushes_its_write_log_every_flush_after_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ontology.store, "FLUSH_AFTER_BYTES", 20_000)
    with open_store(str(tmp_path / "reg")) as store:
        flushes = store.flushes
        peak = 0
        for i in range(12):
            store.put_graph(device_iri(f"esp-{i}"), device_graph(f"esp-{i}", "esp32s3"))
            peak = max(peak, store.unflushed_bytes)
        assert store.flushes > flushes
        assert peak < 20_000
        assert store.unflushed_bytes < 20_000
    with open_store(str(tmp_path / "reg")) as store:  # close flushed the rest: nothing left to replay
        assert len(store.get_graph(device_iri("esp-11"))) > 0


def test_registrations_acknowledged_between_flushes_survive_kill_9(tmp_path: Path) -> None:
    location = str(tmp_path / "reg")
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "writer_flush_process.py"), location, "30000"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    acked, flushes, unflushed = -1, 0, 0
    deadline = time.monotonic() + 120
    assert writer.stdout is not None
    # killed mid-way between two flushes, so the newest registrations live only in the write log
    while (acked < 15 or flushes < 2 or unflushed == 0) and time.monotonic() < deadline:
        acked, flushes, unflushed = map(int, writer.stdout.readline().split())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL and acked >= 15 and flushes >= 2 and unflushed > 0
    with open_store(location) as store:
        for i in range(acked + 1):
            assert store.get_graph(device_iri(f"dev-{i}")), i
