"""The in-process grid's worker pool: the same federation, bit for bit, whether its device rounds run here or in workers.

Bit-identity is constructed here, not hoped for: each device round is the
same code on the same message in a process of the same machine, and the grid
returns replies in the order the messages were pushed, so the strategies add
the same numbers in the same order.
"""

import os
import tempfile
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import Message, MessageType, RecordDict
from flwr.clientapp import ClientApp

from firmware_sim.client_app import app as client_app
from server.core.checkpoint import Checkpointer
from server.core.federation import PARTICIPANTS, DeviceRoundConfig, FederationSettings, run_federation
from server.strategies.tiny_reptile import TinyReptileConfig
from server.transports.inprocess_grid import InProcessGrid

SEEDS = (40, 41, 42, 43, 44, 45)
REPTILE = FederationSettings(
    strategy="tinyreptile",
    num_rounds=3,
    reptile=TinyReptileConfig(clients_per_round=4, meta_step_size=0.5, anneal="cosine", outer_momentum=0.9,
                              nesterov=True, seed=3, step_size_learning_rate=0.05, step_size_shots=2,
                              step_size_query=3),
    device=DeviceRoundConfig(stream_samples=6, probe_samples=2, device_seeds=SEEDS),
)  # fmt: skip
FEDAVG = FederationSettings(
    strategy="fedavg", num_rounds=2, init_seed=3, fedavg_clients_per_round=3,
    device=DeviceRoundConfig(stream_samples=5, probe_samples=2, local_epochs=2, device_seeds=SEEDS),
)  # fmt: skip


def train(settings: FederationSettings, workers: int) -> tuple[dict, list, list]:
    """(the final checkpoint's arrays: θ and the strategy's state, each round's participants, the grid's reply log)."""
    with tempfile.TemporaryDirectory() as directory, InProcessGrid(client_app, 6, node_id_seed=1, workers=workers) as grid:
        rounds: list = []
        run_federation(grid, replace(settings, checkpoint_dir=directory), lambda _r, _w, m: rounds.append(m[PARTICIPANTS]))
        final = Checkpointer(directory).load_latest()
        return {**final.weights, **{f"state/{k}": v for k, v in final.strategy_state.items()}}, rounds, grid.reply_log


@pytest.mark.parametrize("settings", [REPTILE, FEDAVG], ids=["tinyreptile+step-sizes", "fedavg"])
def test_two_workers_learn_what_one_process_learns_bit_for_bit(settings):
    alone, rounds_alone, log_alone = train(settings, workers=1)
    pooled, rounds_pooled, log_pooled = train(settings, workers=2)
    assert rounds_pooled == rounds_alone and len(rounds_alone) == settings.num_rounds
    assert log_pooled == log_alone  # every reply's metrics, in the same order
    assert alone.keys() == pooled.keys() and any(k.startswith("state/") for k in alone) == (settings is REPTILE)
    for name in alone:
        np.testing.assert_array_equal(pooled[name], alone[name], err_msg=name)


failing = ClientApp()


@failing.train()
def _refuse(message: Message, context) -> Message:  # noqa: ANN001
    raise RuntimeError(f"device of partition {context.node_config['partition-id']} in process {os.getpid()} is broken")


def test_a_device_that_raises_in_a_worker_is_an_error_reply():
    with InProcessGrid(failing, 2, node_id_seed=0, workers=2) as grid:
        messages = [grid.create_message(RecordDict(), MessageType.TRAIN, node, "1") for node in grid.get_node_ids()]
        replies = grid.send_and_receive(messages)
    assert [reply.has_error() for reply in replies] == [True, True]
    reasons = [reply.error.reason.split(" in process ") for reply in replies]
    assert [reason[0] for reason in reasons] == ["RuntimeError: device of partition 0", "RuntimeError: device of partition 1"]
    assert str(os.getpid()) not in {reason[1].split()[0] for reason in reasons}  # they ran in the workers


def test_a_client_app_that_cannot_travel_to_a_worker_is_refused_at_once():
    local = ClientApp()

    @local.train()
    def _closure(message: Message, context) -> Message:  # noqa: ANN001 - a nested function does not pickle
        return message

    with pytest.raises(ValueError, match="pickles"):
        InProcessGrid(local, 2, workers=2)
    InProcessGrid(local, 2, workers=1)  # in this process it needs no pickling


UNGUARDED = '''
import os
os.environ.setdefault("MAIN_PID", str(os.getpid()))
import server.transports.inprocess_grid as grid_module
from firmware_sim.client_app import app
grid_module.WORKER_START_TIMEOUT_S = 10
grid = grid_module.InProcessGrid(app, 2, workers=2)
try:
    grid.send_and_receive([])  # nothing to send: no pool
    grid._worker_pool()
except RuntimeError as exc:
    if str(os.getpid()) != os.environ["MAIN_PID"]:
        raise  # a worker re-running this script: it cannot start a pool of its own
    print("refused:", exc)
'''


def test_a_script_without_the_main_guard_gets_an_error_not_a_hang(tmp_path):
    """Forkserver workers re-import __main__; an unguarded script kills each one, which the pool would replace forever."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'refused: the grid\'s worker processes did not start within 10 s; a script that trains with workers > 1 must keep its work under `if __name__ == "__main__":`' in done.stdout
