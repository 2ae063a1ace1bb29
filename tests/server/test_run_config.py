"""One source for every setting: the same `tinyfleet server` command means the same experiment in Flower and MQTT mode."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from server.core.federation import DeviceRoundConfig, FederationSettings
from server.core.run_config import SERVER_APP_KEYS, default_run_config, flatten_settings, settings_from_run_config
from server.strategies.tiny_metafed import TinyMetaFedConfig
from server.strategies.tiny_reptile import TinyReptileConfig

APP = Path(__file__).resolve().parents[2] / "server" / "flower_app" / "pyproject.toml"
COMMANDS = [  # what `tinyfleet server` passes for some command lines (named options + --run-config)
    {},
    {"strategy": "tinyreptile", "num-rounds": 7},
    {"strategy": "tinymetafed", "clients-per-round": 3, "top-p": 0.2},
    {"strategy": "fedavg", "local-epochs": 5, "fedavg-clients-per-round": 4},
    {"strategy": "tinyreptile", "step-size-learning-rate": 0.01, "anneal": "linear"},
    {"strategy": "tinymetafed", "device-seeds": "3,4,5", "reconstruction-rule": "sgd"},
]


def flower_app_table() -> dict:
    return tomllib.loads(APP.read_text())["tool"]["flwr"]["app"]["config"]


def test_the_flower_apps_config_table_is_the_dataclass_defaults():
    assert flower_app_table() == default_run_config()


@pytest.mark.parametrize("given", COMMANDS)
def test_flower_mode_and_mqtt_mode_resolve_a_command_to_the_same_settings(given):
    mqtt = settings_from_run_config(given)  # MQTT mode: only what was given, the rest from the dataclasses
    flower = settings_from_run_config({**flower_app_table(), **given})  # Flower fuses the App's table first
    assert flower == mqtt
    # and what Flower mode submits to the SuperLink resolves to the same settings again
    submitted = {**flatten_settings(mqtt), **{k: "" for k in SERVER_APP_KEYS}}
    assert settings_from_run_config(submitted) == mqtt


@pytest.mark.parametrize(
    "settings",
    [
        FederationSettings(),
        FederationSettings(strategy="tinymetafed", metafed=TinyMetaFedConfig(top_p=0.3, private_names=("w1", "b1"))),
        FederationSettings(reptile=TinyReptileConfig(step_size_learning_rate=0.01, clients_per_round=4),
                           device=DeviceRoundConfig(device_seeds=(2, 9), radio=False, local_epochs=3)),
        replace(FederationSettings(strategy="fedavg"), layer_sizes=(1, 8, 1), fedavg_clients_per_round=2),
    ],
)
def test_every_setting_survives_its_flat_form(settings):
    assert settings_from_run_config(flatten_settings(settings)) == settings


def test_each_strategy_shares_the_flat_tables_defaults():
    # a flat table has one value per key, so a key two strategy configs share must default the same in both
    reptile, metafed = TinyReptileConfig(), TinyMetaFedConfig()
    shared = set(vars(reptile)) & set(vars(metafed))
    assert {"clients_per_round", "anneal", "meta_step_size", "seed"} <= shared
    for name in shared:
        assert getattr(reptile, name) == getattr(metafed, name), name
    # composition, not refusal: TinyMetaFed has no step-size fields to refuse, TinyReptile no private part
    assert "step_size_learning_rate" not in vars(metafed) and "top_p" not in vars(reptile)
