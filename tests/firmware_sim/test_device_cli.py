"""`tinyfleet-device` runs a device with nothing but a device install: it joins a real MQTT federation while
TensorFlow, Flower, rdflib, Oxigraph, typer, rich, FastAPI and our own `server`/`ontology` packages are
unimportable; bad command lines are refused on one line with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from firmware_sim import device_cli
from firmware_sim.device_run import PASSWORD_ENV

ROOT = Path(__file__).resolve().parents[2]

# What a `pip install 'tinyfleet[device]'` lacks (or, for server and ontology, what a device must not need).
BLOCKED = ("typer", "rich", "rdflib", "pyoxigraph", "oxrdflib", "tensorflow", "keras", "fastapi", "flwr",
           "server", "ontology")  # fmt: skip

# Runs before anything else in the child: a meta-path finder that makes the blocked packages raise ImportError,
# then the device's own entry point; it exits 3 if a blocked package got loaded anyway.
BLOCKER = f"""
import importlib.abc, sys
BLOCKED = frozenset({BLOCKED!r})

class DeviceInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not part of a device install")
        return None

sys.meta_path.insert(0, DeviceInstall())
assert not BLOCKED & {{m.partition(".")[0] for m in sys.modules}}
if sys.argv[1:2] == ["--exec"]:
    exec(sys.argv[2])
    sys.exit(0)
from firmware_sim.device_cli import main
try:
    code = main(sys.argv[1:])
finally:
    loaded = sorted(BLOCKED & {{m.partition(".")[0] for m in sys.modules if sys.modules[m] is not None}})
    if loaded:
        print("blocked packages were loaded:", loaded, file=sys.stderr)
        sys.exit(3)
sys.exit(code)
"""


def device_only(*args: str) -> list[str]:
    """A `tinyfleet-device ARGS` command line, run as a device install would run it."""
    return [sys.executable, "-c", BLOCKER, *args]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM (the server stops its mosquitto in `finally`), then SIGKILL the process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=timeout_s)


def wait_for_file(path: Path, server: subprocess.Popen, log: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {path.name} from the server:\n{log.read_text()}"
        time.sleep(0.05)
    time.sleep(0.1)  # written in one call; let it land


def test_the_blocker_really_blocks_what_a_device_install_lacks():
    for module in ("typer", "rdflib", "tensorflow", "flwr", "server.cli"):
        done = subprocess.run(device_only("--exec", f"import {module}"), cwd=ROOT, env=child_env(),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 1 and "is not part of a device install" in done.stderr, (module, done.stderr)


def test_a_device_only_install_finishes_its_rounds_in_a_real_mqtt_federation(tmp_path: Path) -> None:
    """`tinyfleet server --local-broker` (full install) and two devices run under the blocker: one logs in with
    --accounts, the other with --mqtt HOST:PORT and its password in $TINYFLEET_DEVICE_PASSWORD."""
    work, ckpt = tmp_path / "server", tmp_path / "ckpt"
    env = child_env()
    started: list[subprocess.Popen] = []
    try:
        server = spawn([sys.executable, "-m", "server.cli", "server", "--local-broker", "--fleet", "2",
                        "--workdir", str(work), "--rounds", "2", "--clients-per-round", "2",
                        "--checkpoint-dir", str(ckpt), "--node-timeout", "20", "--round-timeout", "10"],
                       env, tmp_path / "server.log")  # fmt: skip
        started.append(server)
        wait_for_file(work / "accounts.json", server, tmp_path / "server.log")
        accounts = json.loads((work / "accounts.json").read_text())
        started.append(spawn(device_only("run", "--accounts", str(work / "accounts.json"), "--id", "sine-0",
                                         "--rounds", "2", "--duration", "40"), env, tmp_path / "device-0.log"))
        with_password = {**env, PASSWORD_ENV: accounts["devices"]["sine-1"]}
        started.append(spawn(device_only("run", "--mqtt", f"{accounts['host']}:{accounts['port']}", "--id", "sine-1",
                                         "--rounds", "2", "--duration", "40"), with_password, tmp_path / "device-1.log"))
        for process in started:
            process.wait(timeout=60)
    finally:
        for process in reversed(started):
            stop(process)
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert [p.returncode for p in started] == [0, 0, 0], logs
    for i in range(2):
        assert f"sine-{i}: 2 round(s) done" in logs[f"device-{i}.log"], logs
        assert "Traceback" not in logs[f"device-{i}.log"], logs

    from server.core.checkpoint import Checkpointer
    from server.core.federation import FederationSettings, initial_weights

    final = Checkpointer(ckpt).load_latest()
    assert final.server_round == 2 and final.meta["metrics"]["clients"] == 2
    assert not np.array_equal(final.weights["w1"], initial_weights(FederationSettings())["w1"])


def wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (log.read_text() if log.exists() else ""):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {text!r} in {log.name}:\n{log.read_text()}"
        time.sleep(0.05)


def one_device_broker(tmp_path: Path):
    from server.transports.broker import BrokerAccounts, LocalBroker

    accounts = BrokerAccounts()
    accounts.add_devices(["sine-0"])
    return LocalBroker(tmp_path / "broker", accounts)


def test_sigterm_ends_a_waiting_device_cleanly(tmp_path: Path) -> None:
    with one_device_broker(tmp_path) as broker:
        log = tmp_path / "device.log"
        device = spawn(device_only("run", "--mqtt", f"{broker.host}:{broker.port}", "--id", "sine-0"),
                       {**child_env(), PASSWORD_ENV: broker.accounts.devices["sine-0"]}, log)  # fmt: skip
        try:
            wait_for_line(log, "online at", device)  # no server: it waits for a task until stopped
            device.send_signal(signal.SIGTERM)
            device.wait(timeout=15)
        finally:
            stop(device)
    assert device.returncode == 0, log.read_text()
    assert "sine-0: 0 round(s) done" in log.read_text() and "Traceback" not in log.read_text()


@pytest.mark.slow  # the device retries for its 15 s connect deadline before it gives up
def test_a_wrong_password_ends_in_one_error_line_and_status_2(tmp_path: Path) -> None:
    with one_device_broker(tmp_path) as broker:
        refused = subprocess.run(
            device_only("run", "--mqtt", f"{broker.host}:{broker.port}", "--id", "sine-0", "--password", "wrong"),
            cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused
    errors = [line for line in refused.stderr.splitlines() if line.startswith("tinyfleet-device")]
    assert errors == [refused.stderr.strip().splitlines()[-1]], refused.stderr  # log lines before, one error last
    assert errors[0].startswith("tinyfleet-device: error: sine-0 could not connect") and "wrong password" in errors[0]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["fly"], "invalid choice: 'fly'"),
        (["run"], "give --mqtt HOST:PORT (or --accounts FILE) and --id"),
        (["run", "--mqtt", "127.0.0.1:1883"], "--id"),
        (["run", "--mqtt", "broker", "--id", "sine-1", "--password", "x"], "HOST:PORT"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "pi-kitchen", "--password", "x"], "<task>-<number>"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "kettle-1", "--password", "x"], "unknown task 'kettle'"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "sine-1", "--password", "x", "--task", "keywords"],
         "'sine-1' is not a device of task 'keywords'"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "sine-1", "--password", "x", "--profile", "pi5"],
         "--profile: unknown device profile 'pi5'; known: nano33ble, esp32s3"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "sine-1", "--password", "x", "--data", "nowhere"],
         "--data nowhere: no such file or folder"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "sine-1", "--password", "x", "--data", "."],
         "--data: a sine device generates its own data"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "sine-1", "--password", "x", "--task", "."],
         "is not a task folder: it has no task.toml"),
        (["run", "--superlink", "127.0.0.1:9", "--partition-id", "1", "--profile", "rpi4"], "--profile: for an MQTT device"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "sine-1"], PASSWORD_ENV),
        (["run", "--accounts", "missing.json", "--id", "sine-1"], "missing.json"),
        (["run", "--superlink", "127.0.0.1:9"], "--superlink needs --partition-id"),
        (["run", "--superlink", "127.0.0.1:9", "--mqtt", "127.0.0.1:1883"], "choose one"),
        (["run", "--superlink", "127.0.0.1:9", "--partition-id", "-1"], "partition_id must be >= 0"),
        (["run", "--rounds", "many"], "argument --rounds: invalid int value: 'many'"),
        (["run", "--mqtt", "127.0.0.1:1883", "--id", "sine-1", "--password", "x", "--rounds", "0"], "--rounds must be >= 1"),
        (["run", "--duration", "-5", "--mqtt", "127.0.0.1:1883", "--id", "sine-1"], "--duration must be > 0"),
    ],
)
def test_bad_command_lines_are_one_line_on_stderr_with_status_2(monkeypatch, tmp_path, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    try:
        code = device_cli.main(args)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("tinyfleet-device") and ": error: " in err, err
    assert message in err, err


def test_a_broken_accounts_file_is_refused_with_its_name(monkeypatch, tmp_path, capsys):
    (tmp_path / "accounts.json").write_text(json.dumps({"devices": {"sine-1": "pw"}}))  # no host/port
    assert device_cli.main(["run", "--accounts", str(tmp_path / "accounts.json"), "--id", "sine-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not an accounts file" in err, err


def test_errors_version_and_help_need_no_heavy_import_and_print_no_traceback(tmp_path):
    env = child_env()
    refused = subprocess.run(device_only("run", "--mqtt", "nohost", "--id", "sine-0", "--password", "x"), cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and refused.stdout == "", refused
    assert refused.stderr.strip().splitlines() == [
        "tinyfleet-device: error: address must look like HOST:PORT (e.g. 127.0.0.1:9091), got 'nohost'"
    ]
    version = subprocess.run(device_only("--version"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"tinyfleet-device {device_cli.package_version()}"
    helped = subprocess.run(device_only("run", "--help"), cwd=tmp_path, env={**env, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert helped.returncode == 0
    assert "--superlink HOST:PORT" in helped.stdout and "(default: runs/device)" in helped.stdout
    assert "(default: 1)" in helped.stdout and PASSWORD_ENV in helped.stdout


def test_the_script_is_declared_and_both_command_lines_take_the_same_options():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tinyfleet-device"] == "firmware_sim.device_cli:main"

    import click
    import typer

    from server.cli import app

    group = typer.main.get_command(app)
    typer_run = group.get_command(click.Context(group), "device").get_command(click.Context(group), "run")
    typer_options = {name for p in typer_run.params for name in p.opts if name != "--help"}
    run_parser = next(a for a in device_cli.build_parser()._actions if a.dest == "command").choices["run"]
    argparse_options = {name for a in run_parser._actions for name in a.option_strings if name not in ("-h", "--help")}
    assert argparse_options == typer_options
