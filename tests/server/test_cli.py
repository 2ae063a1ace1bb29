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
