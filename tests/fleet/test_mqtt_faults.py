"""Faults: 30% of devices die mid-round, the broker restarts, the server is killed and resumes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mqtt_helpers import FLEET_SEEDS, LAYERS, assert_meta_model_improved, federate, grid_config, wait_for_devices

from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from server.core.checkpoint import Checkpointer
from server.transports.mqtt_grid import MqttGrid
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig

METAFED = TinyMetaFedConfig(clients_per_round=12, total_rounds=12, meta_step_size=1.0, top_p=0.1, node_timeout_s=20)


def test_killing_30_percent_of_devices_mid_round_still_gives_a_good_meta_model(broker):
    fleet_config = FleetConfig(port=broker.port, layer_sizes=LAYERS, reply_delay_s=0.4)
    with MqttFleet(FLEET_SEEDS, broker.accounts.devices, fleet_config) as fleet:
        with MqttGrid(grid_config(broker, quorum=0.5)) as grid:
            wait_for_devices(grid, len(FLEET_SEEDS))
            victims: list[str] = []

            def kill_during_round_3() -> None:
                while len(grid.round_log) < 2:  # rounds 1-2 closed: round 3 is in flight
                    time.sleep(0.01)
                time.sleep(0.1)  # devices are computing / waiting to reply
                victims.extend(fleet.crash(0.3, random.Random(0)))

            killer = threading.Thread(target=kill_during_round_3)
            killer.start()
            theta = federate(TinyMetaFed(METAFED), grid, rounds=12)
            killer.join(5)
    assert len(victims) == round(0.3 * len(FLEET_SEEDS))
    third = grid.round_log[2]
    assert third["replied"] < third["asked"] and third["closed"] != "deadline"  # the dead were not waited for
    assert not set(victims) & set(grid.device_ids())  # their Last Will took them off the grid
    assert all(r["replied"] >= 1 for r in grid.round_log)
    later_nodes = grid.round_log[3:]
    assert all(r["asked"] == 12 and r["replied"] == 12 for r in later_nodes)  # the dead are no longer sampled
    assert_meta_model_improved(theta)


def test_broker_restart_mid_federation(broker):
    with MqttFleet(FLEET_SEEDS, broker.accounts.devices, FleetConfig(port=broker.port, layer_sizes=LAYERS)) as fleet:
        with MqttGrid(grid_config(broker, round_timeout_s=3.0)) as grid:
            wait_for_devices(grid, len(FLEET_SEEDS))

            def restart_after_round_4() -> None:
                while len(grid.round_log) < 4:
                    time.sleep(0.01)
                broker.restart(down_s=0.5)

            restarter = threading.Thread(target=restart_after_round_4)
            restarter.start()
            theta = federate(TinyMetaFed(METAFED), grid, rounds=12)
            restarter.join(10)
            reconnected = [d.client.is_connected() for d in fleet.devices.values()]
    assert not restarter.is_alive() and all(reconnected)
    assert sum(r["replied"] for r in grid.round_log) >= 12 * 9  # at most a few rounds lost to the outage
    assert grid.round_log[-1]["replied"] == 12  # everyone reconnected
    assert_meta_model_improved(theta)


def test_killed_server_resumes_from_its_checkpoint(broker, tmp_path):
    script = Path(__file__).with_name("server_process.py")
    ckpt = tmp_path / "ckpt"
    args = [sys.executable, str(script), broker.host, str(broker.port), broker.accounts.server_password, str(ckpt), "12"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    fleet_config = FleetConfig(port=broker.port, layer_sizes=LAYERS, reply_delay_s=0.15)
    with MqttFleet(FLEET_SEEDS, broker.accounts.devices, fleet_config):
        first = subprocess.Popen(args, env=env)
        try:
            deadline = time.monotonic() + 60
            while (Checkpointer(ckpt).load_latest() or type("C", (), {"server_round": 0})).server_round < 4:
                assert first.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "no round 4 checkpoint"
                time.sleep(0.02)
            time.sleep(0.1)  # round 5 is in flight
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed_at = Checkpointer(ckpt).load_latest().server_round
            assert 4 <= killed_at < 12
            second = subprocess.run(args, env=env, timeout=90)
            assert second.returncode == 0
        finally:
            if first.poll() is None:
                first.kill()
    final = Checkpointer(ckpt).load_latest()
    assert final.server_round == 12
    assert final.meta["strategy"] == "tinyreptile"
    assert_meta_model_improved(final.weights, private_names=())
