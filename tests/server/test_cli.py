from typer.testing import CliRunner

from server import cli
from server.cli import app


def test_profiles_lists_every_board_with_its_limits(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 200)  # a wide terminal, so rich does not wrap cells
    result = CliRunner().invoke(app, ["profiles"])
    assert result.exit_code == 0, result.output
    assert "Arduino Nano 33 BLE Sense" in result.output and "256 (172)" in result.output


def test_registry_is_mounted_under_tinyfleet():
    result = CliRunner().invoke(app, ["registry", "list-queries"])
    assert result.exit_code == 0, result.output
    assert "models-for-device" in result.output


def test_bench_runs_a_tiny_task_and_prints_each_methods_new_device_rule(monkeypatch, tmp_path):
    monkeypatch.setattr(cli.console, "width", 200)
    result = CliRunner().invoke(app, [
        "bench", "--task", "presence", "--out", str(tmp_path), "--rounds", "1", "--train-devices", "5",
        "--eval-devices", "2", "--methods", "fedavg,from-scratch", "--no-drift",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "new device" in result.output and "SGD " in result.output  # FedAvg adapts at its chosen rate
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ ")}
    assert {"fedavg", "from-scratch", "fedavg-rebuilt-head", "from-scratch-rebuilt-head"} <= set(lines)
    assert (tmp_path / "presence.json").exists()


def test_bench_refuses_an_unknown_task_or_method_before_any_work(tmp_path):
    for args, reason in ((["--task", "poetry"], "unknown task 'poetry'"),
                         (["--task", "presence", "--methods", "fedavg,magic"], "unknown methods ['magic']")):  # fmt: skip
        result = CliRunner().invoke(app, ["bench", *args, "--out", str(tmp_path)])
        assert result.exit_code == 2 and reason in result.output and not any(tmp_path.iterdir())


def test_the_tinyfleet_script_says_what_is_missing_on_a_device_install():
    import subprocess
    import sys

    code = "import sys; sys.modules['typer'] = None; from server.entry import main; main()"  # typer not installed
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "lacks 'typer'" in done.stderr and "tinyfleet-device" in done.stderr


def test_clients_per_round_means_the_same_knob_for_fedavg():
    from server.cli import _run_config
    from server.core.run_config import settings_from_run_config

    fedavg = settings_from_run_config(_run_config(None, "fedavg", None, 4, None, None, None, []))
    assert fedavg.fedavg_clients_per_round == 4 and fedavg.min_nodes == 4
    reptile = settings_from_run_config(_run_config(None, "tinyreptile", None, 4, None, None, None, []))
    assert reptile.reptile.clients_per_round == 4


def test_version_and_iris_print_as_written():
    from typer.testing import CliRunner

    from server.cli import app, console

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("tinyfleet ")
    with console.capture() as captured:
        console.print("urn:x:foo")
    assert captured.get().strip() == "urn:x:foo"  # not rich's :x: emoji
