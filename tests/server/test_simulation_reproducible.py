"""The same settings train on the same devices and give the same θ, whatever node ids the engine assigns.

Flower's simulation engine draws a random id for every node on every run, so
sampling must go by device (``DeviceOrderedGrid``), not by node id. The first
tests run the real ServerApp and ClientApp in-process with different node ids;
the last runs Flower's simulation engine (Ray) twice and checks
it against the in-process grid the sine-meta benchmark trains with.
"""

import tempfile
from dataclasses import replace

import numpy as np
import pytest
from flwr.simulation import run_simulation

from firmware_sim.client_app import app as client_app
from server.core.checkpoint import Checkpointer
from server.core.federation import PARTICIPANTS, DeviceRoundConfig, FederationSettings, make_server_app, run_federation
from server.transports.inprocess_grid import InProcessGrid
from server.strategies.tiny_reptile import TinyReptileConfig

REPTILE = FederationSettings(
    strategy="tinyreptile",
    num_rounds=3,
    reptile=TinyReptileConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant", outer_momentum=0.9,
                              nesterov=True, seed=3),
    device=DeviceRoundConfig(stream_samples=6, probe_samples=2, device_seeds=(40, 41, 42, 43, 44, 45)),
)  # fmt: skip
FEDAVG = FederationSettings(
    strategy="fedavg",
    num_rounds=3,
    init_seed=3,
    fedavg_clients_per_round=2,
    device=DeviceRoundConfig(stream_samples=5, probe_samples=2, local_epochs=2, device_seeds=(40, 41, 42, 43, 44, 45)),
)


def in_process(settings: FederationSettings, node_id_seed: int) -> tuple[dict, list[list[int]]]:
    """θ after the run and each round's participating devices, over a grid with the given node ids."""
    with tempfile.TemporaryDirectory() as directory:
        rounds: list[list[int]] = []
        run_settings = replace(settings, checkpoint_dir=directory)
        run_federation(InProcessGrid(client_app, 6, node_id_seed=node_id_seed), run_settings, lambda _r, _w, m: rounds.append(m[PARTICIPANTS]))
        return Checkpointer(directory).load_latest().weights, rounds


def simulated(settings: FederationSettings) -> tuple[dict, list[list[int]]]:
    """The same through Flower's simulation engine (random node ids, Ray workers)."""
    with tempfile.TemporaryDirectory() as directory:
        rounds: list[list[int]] = []
        app = make_server_app(replace(settings, checkpoint_dir=directory), lambda _r, _w, m: rounds.append(m[PARTICIPANTS]))
        run_simulation(server_app=app, client_app=client_app, num_supernodes=6,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})  # fmt: skip
        return Checkpointer(directory).load_latest().weights, rounds


def assert_same_theta(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("settings", [REPTILE, FEDAVG], ids=["tinyreptile", "fedavg"])
def test_other_node_ids_same_devices_same_theta(settings):
    theta_a, rounds_a = in_process(settings, node_id_seed=1)
    theta_b, rounds_b = in_process(settings, node_id_seed=2)
    assert len(rounds_a) == 3 and all(len(devices) == 2 for devices in rounds_a)
    assert rounds_a == rounds_b
    assert len({tuple(devices) for devices in rounds_a}) > 1  # the sample does change from round to round
    assert_same_theta(theta_a, theta_b)


def test_another_seed_samples_other_devices():
    _, rounds = in_process(REPTILE, node_id_seed=1)
    _, other = in_process(replace(REPTILE, reptile=replace(REPTILE.reptile, seed=4)), node_id_seed=1)
    assert rounds != other


def test_a_resumed_run_samples_what_an_uninterrupted_one_does():
    whole_theta, whole_rounds = in_process(REPTILE, node_id_seed=1)
    with tempfile.TemporaryDirectory() as directory:
        rounds: list[list[int]] = []
        first = replace(REPTILE, checkpoint_dir=directory, num_rounds=2)
        run_federation(InProcessGrid(client_app, 6, node_id_seed=5), first, lambda _r, _w, m: rounds.append(m[PARTICIPANTS]))
        run_federation(InProcessGrid(client_app, 6, node_id_seed=6), replace(first, num_rounds=3),
                       lambda _r, _w, m: rounds.append(m[PARTICIPANTS]))  # fmt: skip
        resumed_theta = Checkpointer(directory).load_latest().weights
    assert rounds == whole_rounds
    assert_same_theta(resumed_theta, whole_theta)


@pytest.mark.slow
def test_two_simulation_runs_give_identical_theta_and_match_the_in_process_grid():
    """Ray replies arrive in any order and node ids differ per run; θ must not notice.

    TinyReptile only (each engine start costs tens of seconds); FedAvg's
    sampling and reply order go through the same grid wrapper, tested above.
    """
    theta_a, rounds_a = simulated(REPTILE)
    theta_b, rounds_b = simulated(REPTILE)
    assert rounds_a == rounds_b
    assert_same_theta(theta_a, theta_b)
    theta_local, rounds_local = in_process(REPTILE, node_id_seed=7)
    assert rounds_local == rounds_a
    assert_same_theta(theta_local, theta_a)
