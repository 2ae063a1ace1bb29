"""TinyMetaFed through Flower's real simulation engine (Ray): 2 devices, 2 rounds, sparse updates."""

import numpy as np
import pytest
from flwr.simulation import run_simulation

from edge import weights as W
from firmware_sim.client_app import app as client_app
from server.core.checkpoint import Checkpointer
from server.core.federation import DeviceRoundConfig, FederationSettings, initial_weights, make_server_app
from server.strategies.tiny_metafed import UPLINK_DENSITY, TinyMetaFedConfig

pytestmark = pytest.mark.slow
BACKEND = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}


def test_tinymetafed_two_devices_two_rounds_send_top_p_and_keep_the_head_private(tmp_path):
    settings = FederationSettings(
        strategy="tinymetafed",
        num_rounds=2,
        checkpoint_dir=str(tmp_path),
        metafed=TinyMetaFedConfig(clients_per_round=2, meta_step_size=1.0, top_p=0.1, reconstruction_samples=4),
        device=DeviceRoundConfig(stream_samples=8, probe_samples=4, inner_learning_rate=0.02),
    )
    rounds: list[tuple[int, dict]] = []
    app = make_server_app(settings, on_round=lambda r, _w, m: rounds.append((r, m)))
    run_simulation(server_app=app, client_app=client_app, num_supernodes=2, backend_config=BACKEND)

    assert [r for r, _ in rounds] == [1, 2]
    metrics = rounds[-1][1]
    assert metrics["clients"] == 2 and metrics["samples-used"] == 2 * (4 + 8)
    assert 0.09 <= metrics[UPLINK_DENSITY] <= 0.11  # Top-10% of the shared entries per device
    init = initial_weights(settings)
    shared_bytes = sum(v.nbytes for k, v in init.items() if k not in ("w2", "b2"))
    assert metrics["bytes-received"] > 2 * shared_bytes  # θ without the head, as encoded on the wire
    assert metrics["bytes-sent"] < 2 * shared_bytes / 4  # a sparse delta: indices + values of 10 %
    assert np.isfinite(metrics["reconstruction-loss"]) and metrics["device-energy-j"] > 0
    final = Checkpointer(tmp_path).load_latest()
    assert final.server_round == 2 and final.meta["strategy"] == "tinymetafed"
    assert W.l2_distance({k: final.weights[k] for k in ("w0", "w1")}, {k: init[k] for k in ("w0", "w1")}) > 0
    for head in ("w2", "b2"):
        np.testing.assert_array_equal(final.weights[head], init[head])  # never sent, never changed
