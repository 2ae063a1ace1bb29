"""A device you can place: `tinyfleet-device run --task FOLDER --profile rpi4 --data DIR`, run as a device install
(TensorFlow, Flower and our server packages unimportable), joins a real mosquitto as machines-7, announces a TD that
says it is a Raspberry Pi 4, and trains two TinyReptile rounds beside three simulated machines on the rows it was
given."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from mqtt_helpers import grid_config, wait_for_devices

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.profiles import get_profile
from firmware_sim.linux_device import place_device
from firmware_sim.mqtt_fleet import FleetConfig, MqttFleet
from firmware_sim.tasks.example_task import CSV_COLUMNS, machine_rows, write_csv_task
from firmware_sim.tasks.user_data import read_layout
from firmware_sim.user_task import load_user_task
from server.strategies.tiny_reptile import TinyReptile, TinyReptileConfig
from server.transports.broker import BrokerAccounts, LocalBroker
from server.transports.mqtt_grid import MqttGrid

ROOT = Path(__file__).resolve().parents[2]
PLACED = "machines-7"  # the task's data has six machines (seeds 0..5): seed 7 can only learn from --data
# A device install: these raise ImportError in the child (the same list as tests/firmware_sim/test_device_cli.py).
BLOCKED = ("typer", "rich", "rdflib", "pyoxigraph", "oxrdflib", "tensorflow", "keras", "fastapi", "flwr", "server",
           "ontology")  # fmt: skip
BLOCKER = f"""
import importlib.abc, sys
class DeviceInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ImportError(name + " is not part of a device install")
sys.meta_path.insert(0, DeviceInstall())
from firmware_sim.device_cli import main
sys.exit(main(sys.argv[1:]))
"""


def write_own_rows(folder: Path, machine: int = 42, rows: int = 40) -> Path:
    """One machine the task's data never saw, in the task's CSV layout: what a user hands a placed device."""
    folder.mkdir(parents=True, exist_ok=True)
    values, labels = machine_rows(machine, rows)
    with open(folder / "kitchen_pump.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*CSV_COLUMNS, "label"])
        writer.writerows([*(f"{v:.4f}" for v in row), label] for row, label in zip(values, labels))
    return folder


def test_a_placed_device_runs_on_its_board_and_learns_from_its_own_rows(tmp_path: Path) -> None:
    folder = write_csv_task(tmp_path / "machines")
    mine = write_own_rows(tmp_path / "mine")
    task = place_device(PLACED, str(folder), "rpi4", mine)
    device = task.device(7)
    assert device.device_id == PLACED and device.profile == get_profile("rpi4")
    rows = {tuple(np.round(x, 5)) for x, _ in (next(device.stream) for _ in range(40))}
    own, _ = read_layout(task.data.spec, mine)
    expected_x, _ = task.data.arrays(own["kitchen_pump"])  # the rows of DIR, standardised by the task's scaler
    assert rows == {tuple(np.round(x, 5)) for x in expected_x}
    with pytest.raises(ValueError, match=r"seed 7 names none"):  # without --data, seed 7 has no machine
        place_device(PLACED, str(folder), "rpi4")
    with pytest.raises(ValueError, match="does not fit|RAM"):  # a board too small for the model refuses it
        place_device(PLACED, str(_big_model_task(tmp_path, folder)), "nano33ble", mine)


def _big_model_task(tmp_path: Path, folder: Path) -> Path:
    big = tmp_path / "big"
    big.mkdir()
    text = (folder / "task.toml").read_text().replace("hidden = [32]", "hidden = [1024, 1024]")
    (big / "task.toml").write_text(text.replace('path = "data"', f'path = "{folder / "data"}"'))
    return big


def test_a_placed_rpi4_device_install_joins_a_real_broker_and_finishes_two_rounds(tmp_path: Path) -> None:
    folder = write_csv_task(tmp_path / "machines")
    mine = write_own_rows(tmp_path / "mine")
    task = load_user_task(folder)
    accounts = BrokerAccounts()
    accounts.add_devices([task.device_id(s) for s in (0, 1, 2)] + [PLACED])
    tds: dict[str, dict] = {}
    announced = threading.Event()

    def on_announce(device_id: str, td: dict | None) -> None:
        if td is not None:
            tds[device_id] = td
            if device_id == PLACED:
                announced.set()

    env = {**{k: v for k, v in os.environ.items() if k != "TINYFLEET_DEVICE_PASSWORD"}, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "device.log"
    with LocalBroker(tmp_path / "broker", accounts) as broker:
        with MqttGrid(grid_config(broker), on_announce=on_announce) as grid, open(log, "wb") as out:
            placed = subprocess.Popen(
                [sys.executable, "-c", BLOCKER, "run", "--mqtt", f"{broker.host}:{broker.port}", "--id", PLACED,
                 "--task", str(folder), "--profile", "rpi4", "--data", str(mine), "--rounds", "2", "--duration", "120"],
                cwd=ROOT, env={**env, "TINYFLEET_DEVICE_PASSWORD": accounts.devices[PLACED]}, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                with MqttFleet([0, 1, 2], accounts.devices, FleetConfig(port=broker.port, task="machines")):
                    wait_for_devices(grid, 4, timeout_s=60.0)
                    assert announced.wait(10.0), log.read_text()
                    strategy = TinyReptile(TinyReptileConfig(clients_per_round=4, total_rounds=2, node_timeout_s=30))
                    result = strategy.start(
                        grid=grid, initial_arrays=to_array_record(task.theta0(0)), num_rounds=2, timeout=60.0,
                        train_config=_device_round(task.learning_rate),
                    )  # fmt: skip
                assert placed.wait(timeout=60) == 0, log.read_text()
            finally:
                if placed.poll() is None:
                    placed.kill()
                    placed.wait()
    said = log.read_text()
    assert f"{PLACED} (rpi4: Raspberry Pi 4" in said and f"{PLACED}: 2 round(s) done" in said, said
    rpi4, nano = get_profile("rpi4"), get_profile("nano33ble")
    mcu = tds[PLACED]["tf:hasMicrocontroller"]
    assert "Raspberry Pi 4" in tds[PLACED]["title"] and mcu["tf:ramBytes"] == rpi4.usable_ram_bytes
    assert tds[PLACED]["tf:supportsRuntime"] == {"@id": "tf:LiteRT"}
    assert tds["machines-0"]["tf:hasMicrocontroller"]["tf:ramBytes"] == nano.usable_ram_bytes  # the task's own board
    assert [r["replied"] for r in grid.round_log] == [4, 4], grid.round_log
    theta = from_array_record(result.arrays)
    assert any(not np.array_equal(theta[k], v) for k, v in task.theta0(0).items())
    json.dumps(tds[PLACED])  # a TD is plain JSON


def _device_round(learning_rate: float):  # type: ignore[no-untyped-def]
    from flwr.app import ConfigRecord

    return ConfigRecord({keys.INNER_LEARNING_RATE: learning_rate, keys.STREAM_SAMPLES: 20, keys.PROBE_SAMPLES: 5})


def test_a_device_learns_a_user_task_from_the_accounts_file(tmp_path: Path) -> None:
    """`device run --accounts W/accounts.json --id machines-2` needs no --task when the file carries the task's source."""
    from firmware_sim.device_run import DeviceRunOptions, task_of_accounts
    from firmware_sim.user_task import resolve_task, task_source

    folder = write_csv_task(tmp_path / "machines")
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"host": "127.0.0.1", "port": 1, "task": task_source(resolve_task(folder)),
                                    "devices": {"machines-2": "pw"}}))  # fmt: skip
    source = task_of_accounts(DeviceRunOptions(accounts=accounts, device_id="machines-2"))
    assert source == str(folder.resolve())
    assert place_device("machines-2", source).device(2).profile == get_profile("nano33ble")  # the task's own board
    assert task_of_accounts(DeviceRunOptions(accounts=accounts, task="sine")) == "sine"  # --task wins


def test_a_built_in_characters_or_keywords_device_learns_from_the_files_it_is_given(tmp_path: Path) -> None:
    """One drawer's Omniglot folder for a characters device (5 classes), one speaker's Speech Commands folder for a
    keywords device (4 words); their firmware's features, a device round on them, and refusals."""
    from PIL import Image

    from edge.device_round import run_device_round
    from edge.round_contract import RoundRequest
    from firmware_sim.device_tasks import device_task
    from firmware_sim.task_families import character_features, keyword_features
    from firmware_sim.tasks.audio import write_wav
    from firmware_sim.tasks.user_data import DataError, area_resize, read_clip

    pages = {}
    for c in range(5):
        grey = np.full((105, 105), 255, np.uint8)
        grey[10 + 15 * c : 30 + 15 * c, 20:80] = 0  # a bar at its own height: five legible classes
        folder = tmp_path / "drawer" / "Latin" / f"character{c:02d}"
        folder.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(grey).convert("1").save(folder / f"{c:02d}{k}_07.png")
        pages[c] = grey
    task = place_device("characters-3", "characters", "esp32s3", tmp_path / "drawer")
    device = task.device(3)
    assert device.profile.name == "esp32s3"
    x, y = next(device.stream)
    assert np.allclose(x, character_features(area_resize(1.0 - pages[int(y)] / 255.0, 28)), atol=1e-6)
    request = RoundRequest(shots=15, probe=5, learning_rate=0.05)
    assert run_device_round(device, request, device_task("characters").theta0(0), received_bytes=0).num_examples == 15
    shutil.rmtree(tmp_path / "drawer" / "Latin" / "character04")
    with pytest.raises(DataError, match=r"a characters device learns 5 classes, the folder has 4"):
        place_device("characters-3", "characters", None, tmp_path / "drawer")

    t = np.arange(12_000) / 16_000
    for w, word in enumerate(("go", "left", "stop", "yes")):
        for k in range(2):
            path = tmp_path / "speaker" / word / f"c0ffee01_nohash_{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, 0.3 * np.sin(2 * np.pi * (250 + 300 * w + 10 * k) * t))
    device = place_device("keywords-5", "keywords", "rpi4", tmp_path / "speaker").device(5)
    x, y = next(device.stream)
    assert x.shape == (120,) and device.profile.name == "rpi4"
    word = tmp_path / "speaker" / ("go", "left", "stop", "yes")[int(y)]  # labels: the sorted word folders
    features = [keyword_features(read_clip(word / f"c0ffee01_nohash_{k}.wav")) for k in range(2)]
    assert any(np.array_equal(x, f) for f in features)  # the keywords firmware's own features, same code both sides
    with pytest.raises(ValueError, match="a presence device generates its own data"):
        place_device("presence-1", "presence", None, tmp_path / "speaker")
