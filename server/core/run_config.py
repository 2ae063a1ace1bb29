"""Federation settings from a flat key/value run config (Flower's ``context.run_config``, CLI overrides).

Why a separate mapping: a Flower deployment hands the ServerApp only the flat
``[tool.flwr.app.config]`` table of the Flower App (overridable with
``flwr run --run-config``), while the code wants the typed, validated
:class:`server.core.federation.FederationSettings`. Keys are kebab-case like
Flower's own; an unknown key or a value of the wrong type is refused with a
message naming the key, never silently ignored, because a typo in a run
config would otherwise run a different experiment than the one asked for.

The strategy hyperparameters (``clients-per-round``, ``top-p``, ...) apply
to whichever strategy ``strategy`` names. A key only another strategy has
(``top-p`` when running ``tinyreptile``) is logged and ignored, because a
Flower App's config table lists every key whatever the strategy.

One source of defaults: the dataclasses. The Flower App's table is
:func:`default_run_config` (``python -m server.core.run_config`` prints it, and a
test holds ``server/flower_app/pyproject.toml`` equal to it), and
``tinyfleet server`` in Flower mode submits the whole resolved settings
(:func:`flatten_settings`), so the same command means the same experiment
in Flower mode and MQTT mode.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from server.core.federation import DeviceRoundConfig, FederationSettings
from server.strategies.tiny_metafed import TinyMetaFedConfig
from server.strategies.tiny_reptile import TinyReptileConfig

log = logging.getLogger(__name__)

# run-config key -> FederationSettings field (top level)
TOP_LEVEL = {
    "strategy": "strategy",
    "num-rounds": "num_rounds",
    "layer-sizes": "layer_sizes",
    "init-seed": "init_seed",
    "checkpoint-dir": "checkpoint_dir",
    "fedavg-clients-per-round": "fedavg_clients_per_round",
    "node-timeout-s": "node_timeout_s",
}
# keys the ServerApp itself reads, not federation settings: where a Flower deployment registers every round's
# meta-model version (an Oxigraph directory as the SuperLink's host sees it), the federation's id there, and
# the rounds.jsonl it appends each round to
SERVER_APP_KEYS = ("registry", "federation", "rounds-log")
# fields of the strategy configs the server fixes itself (from num-rounds / node-timeout-s)
DERIVED = {"total_rounds", "node_timeout_s"}


def _key(field_name: str) -> str:
    return field_name.replace("_", "-")


def _strategy_keys(config_type: type) -> dict[str, dataclasses.Field]:
    return {_key(f.name): f for f in dataclasses.fields(config_type) if f.name not in DERIVED}


DEVICE_KEYS = {_key(f.name): f for f in dataclasses.fields(DeviceRoundConfig)}
STRATEGY_KEYS = {"tinyreptile": _strategy_keys(TinyReptileConfig), "tinymetafed": _strategy_keys(TinyMetaFedConfig)}


def known_keys() -> set[str]:
    """Every key some strategy accepts."""
    return set(TOP_LEVEL) | set(DEVICE_KEYS) | set(SERVER_APP_KEYS) | {k for keys in STRATEGY_KEYS.values() for k in keys}


#: tuple-valued keys whose items are integers (a tuple's default may be empty, so its type says nothing)
INTEGER_TUPLES = {"layer-sizes", "device-seeds"}


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    raise ValueError(f"run config {key!r} must be a comma-separated string, got {value!r}")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the field's ``default``; ValueError naming ``key`` otherwise."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, tuple):
        names = _names(value, key)
        if key in INTEGER_TUPLES:
            try:
                return tuple(int(n) for n in names)
            except ValueError:
                raise ValueError(f"run config {key!r} must be comma-separated integers, got {value!r}") from None
        return names
    else:  # pragma: no cover - a new field type needs a rule here
        raise TypeError(f"no run-config rule for {key!r} of type {type(default).__name__}")
    raise ValueError(f"run config {key!r} must be a {type(default).__name__}, got {value!r} ({type(value).__name__})")


def _base_configs(task: str = "sine", strategy: str | None = None) -> dict[str, Any]:
    """The defaults a run config's missing keys take: the task's method (:func:`server.core.tasks.task_settings`;
    for sine the demo's), not the bare dataclass fields. ``top`` is the whole settings of ``strategy``."""
    from server.core.tasks import task_settings

    top = task_settings(task, strategy)
    return {
        "top": top, "device": top.device,
        "tinyreptile": task_settings(task, "tinyreptile").reptile, "tinymetafed": task_settings(task, "tinymetafed").metafed,
    }  # fmt: skip


def settings_from_run_config(run_config: Mapping[str, Any]) -> FederationSettings:
    """Typed settings from a flat run config; missing keys keep their defaults."""
    unknown = sorted(set(run_config) - known_keys())
    if unknown:
        raise ValueError(f"unknown run config keys {unknown}; known: {', '.join(sorted(known_keys()))}")
    strategy = run_config.get("strategy", FederationSettings.strategy)
    task = _coerce("task", run_config.get("task", DeviceRoundConfig.task), DeviceRoundConfig.task)
    bases = _base_configs(task, strategy if strategy in STRATEGY_KEYS or strategy == "fedavg" else None)
    top = {
        name: _coerce(key, run_config[key], getattr(bases["top"], name)) for key, name in TOP_LEVEL.items() if key in run_config
    }
    device = {
        f.name: _coerce(key, run_config[key], getattr(bases["device"], f.name))
        for key, f in DEVICE_KEYS.items() if key in run_config
    }
    strategy_keys = STRATEGY_KEYS.get(str(strategy), {})
    given = set(run_config) - set(TOP_LEVEL) - set(DEVICE_KEYS) - set(SERVER_APP_KEYS)
    foreign = sorted(given - set(strategy_keys))
    for key in foreign:  # at its default it is the table's filler; set to anything else it asks for the wrong strategy
        owners = [name for name, keys in STRATEGY_KEYS.items() if key in keys]
        field = STRATEGY_KEYS[owners[0]][key]
        default = getattr(bases[owners[0]], field.name)
        if _coerce(key, run_config[key], default) != default:
            raise ValueError(f"run config {key!r} = {run_config[key]!r} applies to strategy {' or '.join(owners)} only, "
                             f"not {strategy!r}; drop it or choose that strategy")
    if foreign:
        log.info("run config keys %s do not apply to strategy %r; ignored at their defaults", foreign, strategy)
    running = bases.get(str(strategy))
    chosen = {f.name: _coerce(key, run_config[key], getattr(running, f.name))
              for key, f in strategy_keys.items() if key in given}  # fmt: skip
    if "strategy" in top and top["strategy"] not in (*STRATEGY_KEYS, "fedavg"):
        FederationSettings(strategy=top["strategy"])  # refuses it, naming the strategies
    settings = dataclasses.replace(bases["top"], **top, device=dataclasses.replace(bases["device"], **device))
    if strategy == "tinyreptile":
        return dataclasses.replace(settings, reptile=dataclasses.replace(bases["tinyreptile"], **chosen))
    if strategy == "tinymetafed":
        return dataclasses.replace(settings, metafed=dataclasses.replace(bases["tinymetafed"], **chosen))
    return settings


Scalar = bool | int | float | str


def _flat(value: Any) -> Scalar:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"no run-config form for {value!r}")  # pragma: no cover - a new field type needs a rule here


def flatten_settings(settings: FederationSettings) -> dict[str, Scalar]:
    """Every run-config key with its value in ``settings``: what a Flower ServerApp must receive to run them.

    Keys of the strategy ``settings`` does not run take that strategy's defaults
    (the table lists every key, and they are ignored).
    """
    out: dict[str, Scalar] = {key: _flat(getattr(settings, name)) for key, name in TOP_LEVEL.items()}
    out.update({key: _flat(getattr(settings.device, f.name)) for key, f in DEVICE_KEYS.items()})
    running = {"tinyreptile": settings.reptile, "tinymetafed": settings.metafed}.get(settings.strategy)
    bases = _base_configs(settings.device.task)
    for strategy, keys in STRATEGY_KEYS.items():
        config = running if strategy == settings.strategy and running is not None else None
        for key, f in keys.items():
            if key not in out or config is not None:
                out[key] = _flat(getattr(config if config is not None else bases[strategy], f.name))
    return out


def default_run_config() -> dict[str, Scalar]:
    """The Flower App's ``[tool.flwr.app.config]`` table: every key at its dataclass default."""
    return {**flatten_settings(FederationSettings()), **{key: "" for key in SERVER_APP_KEYS}}


def flower_app_table() -> str:
    """:func:`default_run_config` as the TOML lines of the Flower App's config table."""
    def toml(value: Scalar) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(value)

    return "\n".join(f"{key} = {toml(value)}" for key, value in default_run_config().items())


if __name__ == "__main__":
    print(flower_app_table())
