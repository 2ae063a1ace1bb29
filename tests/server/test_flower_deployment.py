"""End to end on localhost: `tinyfleet server` starts a real SuperLink and submits the Flower App with
`flwr run`; two `tinyfleet device run --superlink` start real SuperNodes; TinyMetaFed runs 3 rounds, and the
ServerApp registers every round's version in the registry given with `--registry`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rdflib import URIRef

from ontology.named_queries import run_named_query
from ontology.store import open_store
from server.core.checkpoint import Checkpointer
from server.core.federation import FederationSettings, initial_weights
from server.transports.flower_deploy import flower_env
from server.registry.registry_link import weights_digest
from flower_run import run_with_supernodes, tinyfleet
from process_tree import spawn, terminate_tree

pytestmark = pytest.mark.slow
ROUNDS = 3


def test_two_supernodes_run_a_tinymetafed_federation_submitted_with_flwr_run(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    registry = tmp_path / "registry"
    log = run_with_supernodes(tmp_path, [
        "--workdir", str(tmp_path / "server"), "--rounds", str(ROUNDS), "--strategy", "tinymetafed",
        "--clients-per-round", "2", "--top-p", "0.1", "--checkpoint-dir", str(ckpt), "--node-timeout", "60",
        "--run-timeout", "140", "-c", "stream-samples=8", "-c", "probe-samples=4", "--registry", str(registry),
    ], timeout_s=150)  # fmt: skip
    assert "finished:completed" in log
    # the ServerApp's rounds reach the user: one progress line per round, and rounds.jsonl in the workdir
    assert all(f"round {r}/{ROUNDS}: 2 device(s)" in log.replace("\n", " ") for r in range(1, ROUNDS + 1)), log[-3000:]
    assert (tmp_path / "server" / "rounds.jsonl").read_text().count("\n") == ROUNDS

    final = Checkpointer(ckpt).load_latest()
    assert final is not None and final.server_round == ROUNDS and final.meta["strategy"] == "tinymetafed"
    init = initial_weights(FederationSettings())
    assert any(not np.array_equal(final.weights[k], init[k]) for k in ("w0", "b0", "w1", "b1"))  # θ moved
    for head in ("w2", "b2"):
        np.testing.assert_array_equal(final.weights[head], init[head])  # private: never sent, never changed
    metrics = final.meta["metrics"]
    assert metrics["clients"] == 2 and 0.09 <= metrics["uplink-density"] <= 0.11

    # every round's version is in the registry, with the two devices that trained it, back to θ0
    with open_store(str(registry)) as store:  # the ServerApp has closed it
        version = URIRef(f"https://w3id.org/tinyfleet/id/federation/flower-tinymetafed/version/{ROUNDS}")
        result = run_named_query(store, "model-lineage", {"version": version})
        rows = [dict(zip(result.variables, row)) for row in result.rows]
        digest = store.query("PREFIX schema: <https://schema.org/> SELECT ?v ?id WHERE { ?v schema:identifier ?id }",
                             {"v": version}).rows
    assert [int(r["number"]) for r in rows] == list(range(ROUNDS, -1, -1))
    devices = {int(r["number"]): set(str(r["devices"] or "").split()) for r in rows}
    assert devices[0] == set() and all(len(devices[n]) == 2 for n in range(1, ROUNDS + 1)), devices
    assert str(digest[0][1]) == f"sha256:{weights_digest(final.weights)}"


def test_stopping_the_server_ends_every_process_it_started(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) mid-run: the SuperLink and the ServerApp process it spawned in a session of its own go too."""
    import signal
    import time

    from firmware_sim.supernode import descendant_pids

    env = flower_env(tmp_path / "flwr")
    log = tmp_path / "server.log"
    server = spawn(tinyfleet("server", "--workdir", str(tmp_path / "server"), "--rounds", "50", "--node-timeout", "60"),
                   env, log)  # no device joins: the ServerApp waits for nodes
    try:
        deadline = time.monotonic() + 60
        while "submitted" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(2.0)  # the SuperLink starts its flwr-serverapp
        started = descendant_pids(server.pid)
        assert len(started) >= 2, started  # the SuperLink and its ServerApp at least
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        time.sleep(0.5)
        alive = [pid for pid in started if Path(f"/proc/{pid}").exists()
                 and b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()]
        assert alive == [], alive
        assert "stopped (SIGTERM)" in log.read_text() and "--resume" in log.read_text()
    finally:
        terminate_tree(server)
