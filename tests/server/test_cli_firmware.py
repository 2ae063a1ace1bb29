"""`tinyfleet firmware build|run` (server/cli_firmware.py): images with their size reports, refusals on one line, and
an emulated board that joins an MQTT federation as its device and stops with its gateway on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.firmware.build import image_size
from server.cli import app

ROOT = Path(__file__).resolve().parents[2]
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


@needs_arm
@pytest.mark.parametrize("board", ["mps2-an386", "nano33ble"])
def test_build_writes_the_image_and_a_size_report_read_with_arm_none_eabi_size(tmp_path: Path, board: str) -> None:
    result = CliRunner().invoke(app, ["firmware", "build", "--board", board, "--task", "sine", "--out", str(tmp_path),
                                      "--id", "sine-3", "--samples", "200"])  # fmt: skip
    assert result.exit_code == 0, result.output
    elf = tmp_path / "sine_firmware.elf"
    report = json.loads((tmp_path / "sine_firmware.size.json").read_text())
    size = image_size(elf)
    assert (report["flash_bytes"], report["ram_bytes"]) == (size.flash_bytes, size.ram_bytes)
    assert report["size"] == {"text": size.text, "data": size.data, "bss": size.bss}
    assert (report["board"], report["task"], report["device_id"], report["sensor_samples"]) == (board, "sine", "sine-3", 200)
    assert f"flash {size.flash_bytes:,} B" in result.output and f"RAM {size.ram_bytes:,} B" in result.output
    assert size.flash_bytes < report["board_flash_bytes"] and size.ram_bytes < report["board_ram_bytes"]
    flashable = {p.suffix for p in tmp_path.glob("sine_firmware.*")} & {".bin", ".hex"}
    if board == "nano33ble":
        assert flashable == {".bin", ".hex"}
        assert (tmp_path / "sine_firmware.bin").stat().st_size == size.flash_bytes
        assert (tmp_path / "sine_firmware.hex").read_text().startswith(":020000021000")  # the application at 0x10000
    else:
        assert flashable == set()


@needs_arm
def test_build_json_prints_the_report(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["firmware", "build", "--board", "mps2-an386", "--out", str(tmp_path), "--samples", "10", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads((tmp_path / "sine_firmware.size.json").read_text())


@pytest.mark.parametrize(("args", "reason"), [
    (["--task", "presence"], "task 'presence' has no firmware yet"),
        (["--task", "keywords", "--id", "sine-3"], "keywords-<number>"),
    (["--task", "poetry"], "unknown task 'poetry'; firmware tasks: sine"),
    (["--board", "esp32"], "unknown board 'esp32'"),
    (["--id", "nano-kitchen"], "device id must be sine-<number>"),
])  # fmt: skip
def test_build_refuses_on_one_line_before_any_work(tmp_path: Path, args: list[str], reason: str) -> None:
    argv = ["firmware", "build", "--board", "mps2-an386", "--out", str(tmp_path / "out"), *args]
    if "--board" in args:
        argv = ["firmware", "build", "--out", str(tmp_path / "out"), *args]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert reason in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()


def test_run_refuses_a_board_qemu_does_not_emulate_and_an_unknown_device(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"host": "127.0.0.1", "port": 1, "devices": {"sine-0": "pw"}}))
    nano = CliRunner().invoke(app, ["firmware", "run", "--board", "nano33ble", "--accounts", str(accounts), "--id", "sine-0"])
    assert nano.exit_code == 2 and "physical board" in nano.output and "tinyfleet gateway --serial /dev/ttyACM0" in nano.output
    unknown = CliRunner().invoke(app, ["firmware", "run", "--accounts", str(accounts), "--id", "sine-9"])
    assert unknown.exit_code == 2 and "no account for 'sine-9'" in unknown.output


@needs_arm
def test_run_refuses_an_image_built_for_another_device(tmp_path: Path) -> None:
    built = CliRunner().invoke(app, ["firmware", "build", "--board", "mps2-an386", "--out", str(tmp_path), "--id", "sine-1",
                                     "--samples", "10"])  # fmt: skip
    assert built.exit_code == 0, built.output
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"host": "127.0.0.1", "port": 1, "devices": {"sine-2": "pw"}}))
    result = CliRunner().invoke(app, ["firmware", "run", "--accounts", str(accounts), "--id", "sine-2",
                                      "--elf", str(tmp_path / "sine_firmware.elf")])  # fmt: skip
    assert result.exit_code == 2 and "was built for sine-1, not sine-2" in result.output, result.output


def _have_mosquitto() -> bool:
    from server.transports.broker import find_executable

    try:
        return bool(find_executable("mosquitto"))
    except Exception:
        return False


def _children(pid: int) -> list[int]:
    from tests.server.process_tree import descendants

    return descendants(pid)


@needs_arm  # about 5 s each: QEMU, a gateway and mosquitto
@pytest.mark.skipif(not _have_mosquitto(), reason="apt-get install mosquitto")
@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm", "ctrl-c"])
def test_run_joins_a_federation_as_its_device_and_sigterm_stops_qemu_and_the_gateway(tmp_path: Path, ctrl_c: bool) -> None:
    """SIGTERM to the command, or Ctrl-C: SIGINT to its whole process group, QEMU included, as a terminal sends it."""
    from flwr.app import ConfigRecord

    from edge import record_keys as keys
    from edge.flower_records import to_array_record
    from edge.mlp import init_mlp_weights
    from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig
    from server.transports.broker import SERVER_USER, BrokerAccounts, LocalBroker
    from server.transports.mqtt_grid import MqttGrid, MqttGridConfig

    accounts = BrokerAccounts()
    accounts.add_devices(["sine-5"])
    with LocalBroker(tmp_path / "broker", accounts) as broker:
        accounts_file = tmp_path / "accounts.json"
        accounts_file.write_text(json.dumps({"host": broker.host, "port": broker.port, "devices": accounts.devices}))
        log = open(tmp_path / "run.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", "firmware", "run", "--accounts", str(accounts_file),
                                 "--id", "sine-5", "--out", str(tmp_path / "fw"), "--samples", "300"],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                start_new_session=True)  # fmt: skip
        try:
            grid_config = MqttGridConfig(host=broker.host, port=broker.port, username=SERVER_USER, password=accounts.server_password,
                                         round_timeout_s=30.0, device_deadline_s=20.0, grace_s=0.3)  # fmt: skip
            with MqttGrid(grid_config) as grid:
                deadline = time.monotonic() + 30
                while len(grid.get_node_ids()) < 1:
                    assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "run.log").read_text()
                    time.sleep(0.05)
                assert grid.device_ids() == ["sine-5"]
                strategy = TinyMetaFed(TinyMetaFedConfig(clients_per_round=1, total_rounds=2, meta_step_size=1.0, top_p=0.1,
                                                         node_timeout_s=30))  # fmt: skip
                strategy.start(grid=grid, initial_arrays=to_array_record(init_mlp_weights((1, 40, 40, 1), 0)), num_rounds=2,
                               timeout=60.0, train_config=ConfigRecord({keys.INNER_LEARNING_RATE: 0.02, keys.STREAM_SAMPLES: 10,
                                                                        keys.PROBE_SAMPLES: 5}))  # fmt: skip
            train = [r for r in grid.round_log if r["asked"] == 1]
            assert len(train) >= 2 and all(r["replied"] == 1 for r in grid.round_log), grid.round_log
            assert not grid.drops, grid.drops
            qemu = _children(proc.pid)
            assert qemu, "QEMU is not a child of the command"
            if ctrl_c:
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, (tmp_path / "run.log").read_text()
            for pid in qemu:
                assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    text = (tmp_path / "run.log").read_text()
    assert "sine-5: QEMU mps2-an386" in text and "sine-5: stopped;" in text and " 0 refused" in text, text


def test_build_records_the_measured_image_in_a_registry(tmp_path: Path) -> None:
    """`firmware build --registry DIR`: the image's flash and RAM, as arm-none-eabi-size read them, become the
    device's firmware facts in the store (what matchmaking then uses)."""
    import json

    from ontology.store import open_store

    store_dir = tmp_path / "store"
    result = CliRunner().invoke(app, ["firmware", "build", "--board", "nano33ble", "--out", str(tmp_path / "out"),
                                      "--registry", str(store_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "sine_firmware.size.json").read_text())
    with open_store(str(store_dir)) as store:
        rows = store.query(
            "PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?flash ?ram WHERE { "
            "<https://w3id.org/tinyfleet/id/device/sine-0> tf:runsFirmware ?image . "
            "?image tf:firmwareFlashBytes ?flash ; tf:firmwareRamBytes ?ram }"
        ).rows
    assert [(int(f), int(r)) for f, r in rows] == [(report["flash_bytes"], report["ram_bytes"])]
    refused = CliRunner().invoke(app, ["firmware", "build", "--board", "nano33ble", "--out", str(tmp_path / "o2"),
                                       "--model", "urn:x:m"])  # fmt: skip
    assert refused.exit_code == 2 and "give --registry too" in refused.output
