"""The ``tinyfleet`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from firmware_sim.device_run import DEFAULTS as DEVICE_DEFAULTS
from firmware_sim.device_run import DEVICE_ERRORS, PASSWORD_ENV, DeviceRunOptions, run_device
from firmware_sim.device_run import HELP as DEVICE_HELP

REGISTRY_HELP = "Semantic registry: describe, validate, register, query, serve."


class _LazyRegistryGroup(TyperGroup):
    """The top-level group, with ``registry`` loaded only when it is asked for.

    The registry CLI imports rdflib and Oxigraph; mounting it at import made
    every ``tinyfleet`` command (a device's too) pay for them and fail without
    them. Click resolves one subcommand per invocation, so ``tinyfleet device
    run`` never touches ``registry``; ``tinyfleet --help`` lists it and loads it.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        return names if "registry" in names else [*names, "registry"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "registry" and "registry" not in self.commands:
            self.add_command(_registry_command(), "registry")
        return super().get_command(ctx, cmd_name)


def _registry_command() -> click.Command:
    """``ontology.cli``'s app as the click command ``registry`` (imports rdflib)."""
    from ontology.cli import app as registry_app

    holder = typer.Typer()
    holder.add_typer(registry_app, name="registry", help=REGISTRY_HELP)
    command = typer.main.get_command(holder)
    return command.get_command(click.Context(command), "registry")  # type: ignore[attr-defined]


app = typer.Typer(help="TinyFleet: on-device online learning and federated meta-learning for TinyML fleets.",
                  no_args_is_help=True, cls=_LazyRegistryGroup)  # the registry is mounted on demand
console = Console(emoji=False)  # device ids and IRIs like urn:x:foo must print as written, not as :x: emoji


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"tinyfleet {version('tinyfleet')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """TinyFleet: on-device online learning and federated meta-learning for TinyML fleets."""


def _quiet_frameworks() -> None:
    """Flower logs every round and TensorFlow every worker start; the demo shows a progress bar instead."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    from flwr.supercore.logger import FLOWER_LOGGER  # sets its own level on import, so override after

    FLOWER_LOGGER.setLevel(logging.ERROR)  # also hides run_simulation's deprecation notice


@app.command()
def demo(
    task: str = typer.Option("sine", help="sine: TinyReptile against FedAvg on the sine fleet (below); characters, "
                                          "keywords or presence: that task's method comparison, as `tinyfleet bench "
                                          "--task T` without its drift experiment."),
    out: Path = typer.Option(Path("runs/demo"), help="Where report.json, adaptation.png and checkpoints go."),
    train_devices: int = typer.Option(None, help="Simulated devices in the training fleet."),
    unseen_devices: int = typer.Option(None, help="Unseen devices the initialisations are evaluated on."),
    reptile_rounds: int = typer.Option(None, help="TinyReptile rounds."),
    fedavg_rounds: int = typer.Option(None, help="FedAvg rounds."),
    resume: bool = typer.Option(False, help="Continue from the checkpoints in OUT instead of starting over."),
    engine: str = typer.Option("inprocess", click_type=click.Choice(["inprocess", "flower"]), help="inprocess (the same ServerApp and ClientApp, no Ray) or flower "
                                                 "(Flower's simulation engine); the figures are the same."),
) -> None:
    """Meta-train TinyReptile and FedAvg over simulated devices, then adapt on unseen ones."""
    if task != "sine":
        bench(task=task, out=out, rounds=reptile_rounds, train_devices=train_devices, eval_devices=unseen_devices,
              methods=",".join(BENCH_METHODS), drift=False, reuse_training=resume)
        return
    _quiet_frameworks()
    from dataclasses import replace

    from server.experiments.demo import DemoConfig, run_demo

    config = DemoConfig(out_dir=str(out), resume=resume, engine=engine)
    overrides = {
        "n_train_devices": train_devices,
        "n_unseen_devices": unseen_devices,
        "reptile_rounds": reptile_rounds,
        "fedavg_rounds": fedavg_rounds,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
    ) as progress:
        tasks = {
            "tinyreptile": progress.add_task("TinyReptile", total=config.reptile_rounds, status=""),
            "fedavg": progress.add_task("FedAvg", total=config.fedavg_rounds, status=""),
        }

        def on_round(method: str, server_round: int, total: int, metrics: dict[str, float]) -> None:
            loss = metrics.get("loss-after")
            status = f"probe loss after adaptation {loss:.3f}" if loss is not None else ""
            progress.update(tasks[method], completed=server_round, status=status)

        report = run_demo(config, on_round)

    table = Table(title=f"MSE on {config.n_unseen_devices} unseen devices after K online shots")
    table.add_column("init")
    for k in config.shots:
        table.add_column(f"K={k}", justify="right")
    rows = report["adaptation"] + report["adaptation_on_device_learners"]
    for method in dict.fromkeys(r["method"] for r in rows):
        values = {r["shots"]: r["value"] for r in rows if r["method"] == method}
        table.add_row(method, *(f"{values[k]:.3f}" for k in config.shots))
    console.print(table)
    registry = report["registry"]
    console.print(
        f"registry ({registry['store']}): SPARQL '{registry['query']}' selected {len(registry['selected_devices'])} "
        f"devices, excluded {len(registry['excluded_devices'])}; versions registered {registry['versions_registered']}"
    )
    console.print(f"report: {out / 'report.json'}   plot: {report['plot']}")
    console.print("timings: " + json.dumps({k: round(v, 1) for k, v in report["timings"].items()}))


BENCH_METHODS = ("tinymetafed", "tinyreptile", "fedavg", "local-only", "from-scratch")


@app.command()
def bench(
    task: str = typer.Option(..., help="Task family: characters, keywords or presence (sine: see `tinyfleet demo`)."),
    out: Path = typer.Option(Path("runs/bench"), help="Where <task>.json and <task>.png go."),
    rounds: int = typer.Option(None, help="Rounds of every federated method."),
    train_devices: int = typer.Option(None, help="Simulated devices in the training fleet."),
    eval_devices: int = typer.Option(None, help="Unseen devices every method is scored on."),
    methods: str = typer.Option(",".join(BENCH_METHODS), help="Comma-separated methods to run."),
    drift: bool = typer.Option(True, help="Also run the concept-drift experiment (online vs frozen)."),
    reuse_training: bool = typer.Option(False, help="Reuse finished training runs of identical settings in OUT."),
) -> None:
    """Compare TinyMetaFed, TinyReptile, FedAvg, local-only and from-scratch on one TinyML task."""
    _quiet_frameworks()
    from dataclasses import replace

    from server.experiments.drift_curves import DriftConfig
    from firmware_sim.task_families import task_family
    from server.experiments.task_bench import METHODS, TaskBenchConfig
    from server.experiments.task_report import run_task_bench

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    overrides = {
        "rounds": rounds, "n_train_devices": train_devices, "n_eval_devices": eval_devices,
        "reuse_training": reuse_training or None,
    }  # fmt: skip
    try:
        config = TaskBenchConfig.for_task(task, out_dir=str(out), **{k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(chosen) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        task_family(task)  # refuses an unknown task before any work starts
    except ValueError as exc:
        _fail(str(exc))
        return
    drift_config = DriftConfig.for_task(task) if drift and "tinymetafed" in chosen else None
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
    ) as progress:
        bars: dict[str, int] = {}

        def on_round(method: str, server_round: int, total: int) -> None:
            if method not in bars:
                bars[method] = progress.add_task(method, total=total)
            progress.update(bars[method], completed=server_round)

        report = run_task_bench(config, chosen, drift_config, on_round)

    rows = report["adaptation"]
    table = Table(title=f"{task}: {rows[0]['metric'].replace('_', ' ')} on {config.n_eval_devices} unseen devices after K shots")
    table.add_column("method", no_wrap=True)
    table.add_column("new device", no_wrap=True)  # its rule, chosen on validation devices
    for k in config.shots:
        table.add_column(f"K={k}", justify="right")
    for column in ("up B", "down B", "device s", "device mJ"):  # per device and round
        table.add_column(column, justify="right", no_wrap=True)
    for method in dict.fromkeys(r["method"] for r in rows):
        values = {r["shots"]: r["value"] for r in rows if r["method"] == method}
        cost = report["training"].get(method, {}).get("per_device_round")
        costs = (
            [f"{cost['bytes_up']:,.0f}", f"{cost['bytes_down']:,.0f}", f"{cost['device_time_s']:.2f}",
             f"{1000 * cost['device_energy_j']:.1f}"]
            if cost else ["-"] * 4
        )  # fmt: skip
        rule = report["adaptation_lr"].get(method)
        rule_text = "imprint" if rule == "imprint" else f"SGD {rule:g}" if isinstance(rule, (int, float)) else "-"
        table.add_row(method, rule_text, *(f"{values[k]:.3f}" for k in config.shots), *costs)
    console.print(table)
    console.print("up/down B, device s and mJ: per device and round (simulated on the profile below)")
    model = report["model"]
    console.print(
        f"model {model['layer_sizes']}: training RAM {model['ram_bytes']['total']:,} B of the "
        f"{model['profile']}'s {model['profile_usable_ram_bytes']:,} B usable"
    )
    if "drift" in report:
        d = report["drift"]
        console.print(
            f"drift ({d['drift']}): accuracy after it, online {d['after_drift']['online']:.3f} vs frozen "
            f"{d['after_drift']['frozen']:.3f} (before: {d['before_drift']['online']:.3f} / {d['before_drift']['frozen']:.3f})"
        )
    console.print(f"report: {out / (task + '.json')}   plot: {report['plot']}")


@app.command()
def profiles() -> None:
    """List the simulated device profiles and their limits."""
    from edge.profiles import PROFILES

    table = Table(title="Device profiles")
    for column in ("name", "board", "MCU", "clock MHz", "RAM KB (usable)", "flash KB (usable)", "FPU", "radio"):
        table.add_column(column)
    for p in PROFILES.values():
        table.add_row(
            p.name, p.board, p.mcu, f"{p.clock_hz / 1e6:g}",
            f"{p.ram_bytes // 1024} ({p.usable_ram_bytes // 1024})",
            f"{p.flash_bytes // 1024} ({p.usable_flash_bytes // 1024})",
            "yes" if p.has_fpu else "no", p.radio,
        )
    console.print(table)


def _run_config(task: str | None, strategy: str | None, rounds: int | None, clients_per_round: int | None,
                top_p: float | None, checkpoint_dir: Path | None, node_timeout: float | None,
                items: list[str]) -> dict[str, object]:
    """The flat run config both server modes take: named options first, then --run-config KEY=VALUE."""
    from server.serve import parse_run_config_items

    config: dict[str, object] = {}
    named = {"task": task, "strategy": strategy, "num-rounds": rounds, "clients-per-round": clients_per_round, "top-p": top_p,
             "checkpoint-dir": str(checkpoint_dir.resolve()) if checkpoint_dir else None, "node-timeout-s": node_timeout}
    config.update({k: v for k, v in named.items() if v is not None})
    config.update(parse_run_config_items(items))
    if config.get("strategy") == "fedavg" and "clients-per-round" in config:  # FedAvg's own key for the same knob
        config["fedavg-clients-per-round"] = config.pop("clients-per-round")
    return config


@contextlib.contextmanager
def _round_bar() -> Iterator[Callable[[Mapping[str, object], int], None]]:
    """The server's live view: a bar of rounds done under the per-round lines (which print above it)."""
    with Progress(TextColumn("[bold]federation"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        bar = progress.add_task("rounds", total=None)

        def on_round(record: Mapping[str, object], num_rounds: int) -> None:
            progress.update(bar, completed=int(record["round"]), total=num_rounds)  # type: ignore[call-overload]

        yield on_round


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@app.command()
def server(
    task: str = typer.Option(None, help="What the devices learn: sine, characters, keywords, presence, or a task "
                                        "folder with a task.toml (your own data and model); the task's own method "
                                        "is the default for every setting [default: sine]."),
    strategy: str = typer.Option(None, help="tinyreptile, tinymetafed or fedavg [default: tinyreptile, from FederationSettings]."),
    rounds: int = typer.Option(None, help="Federation rounds (run config num-rounds)."),
    clients_per_round: int = typer.Option(None, help="Devices sampled per round."),
    top_p: float = typer.Option(None, help="TinyMetaFed: kept fraction of each update, e.g. 0.1."),
    checkpoint_dir: Path = typer.Option(None, help="Where the meta-model is checkpointed each round (resumed if present)."),
    node_timeout: float = typer.Option(None, help="Seconds to wait for enough devices."),
    run_config: list[str] = typer.Option([], "--run-config", "-c", help="KEY=VALUE, repeatable (see server/flower_app/pyproject.toml)."),
    workdir: Path = typer.Option(Path("runs/server"), help="Everything the run writes: checkpoints, rounds.jsonl, "
                                                          "broker files, logs, FLWR_HOME."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --workdir from its last checkpoint."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete the run in --workdir (checkpoints, rounds) and start over."),
    superlink: str = typer.Option(None, help="Attach to this SuperLink (HOST:PORT) instead of starting one."),
    port: int = typer.Option(None, help="Port of the SuperLink started here (default: a free one)."),
    root_certificates: str = typer.Option(None, help="CA certificate of a TLS SuperLink given with --superlink."),
    run_timeout: float = typer.Option(3600.0, help="Give up on the Flower run after this many seconds."),
    mqtt: str = typer.Option(None, help="Drive MQTT devices through this broker (HOST:PORT) instead of Flower."),
    local_broker: bool = typer.Option(False, help="MQTT mode: start a private mosquitto on 127.0.0.1."),
    fleet: int = typer.Option(0, help="With --local-broker: create accounts for devices TASK-0 .. TASK-(N-1)."),
    username: str = typer.Option("tinyfleet-server", help="MQTT username of the server (external broker)."),
    password: str = typer.Option(None, envvar="TINYFLEET_MQTT_PASSWORD", help="MQTT password of the server."),
    tls_ca: str = typer.Option(None, help="MQTT: CA certificate file; set to use TLS."),
    round_timeout: float = typer.Option(30.0, help="MQTT: wall-clock deadline of one round."),
    quorum: float = typer.Option(1.0, help="MQTT: fraction of asked devices whose replies close a round early."),
    registry: str = typer.Option(None, help="Registry store (an Oxigraph directory) where every round's meta-model "
                                            "version is registered with its round, devices and metrics. Over MQTT it "
                                            "also picks the devices: each announced Thing Description is registered "
                                            "(a refused one leaves its device out) and rounds sample only the devices "
                                            "the eligible-devices query returns for the model and task."),
    console_port: int = typer.Option(None, "--console", help="MQTT mode: serve the fleet console on 127.0.0.1:PORT "
                                                              "during the federation (0: a free port)."),
    federation: str = typer.Option(None, help="With --registry: the federation's id there "
                                              "(default mqtt-STRATEGY or flower-STRATEGY)."),
) -> None:
    """Run a federation: a Flower SuperLink + the TinyFleet ServerApp, or MQTT devices (--mqtt / --local-broker)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_frameworks()  # our own per-round line replaces Flower's per-round log
    from server.core.run_dir import prepare_run
    from server.process_signals import Stopped
    from server.transports.broker import BrokerError
    from server.transports.flower_deploy import FlowerError

    try:
        if task is not None:
            from firmware_sim.user_task import resolve_task

            task = resolve_task(task).name  # a task folder (task.toml) is loaded and registered under its name
        config = _run_config(task, strategy, rounds, clients_per_round, top_p, checkpoint_dir, node_timeout, run_config)
        workdir.mkdir(parents=True, exist_ok=True)
        config = prepare_run(workdir, config, resume=resume, fresh=fresh)  # a workdir holds one run, never silently
        if console_port is not None and not (mqtt or local_broker):
            raise ValueError("--console serves an MQTT federation's console; in Flower mode the ServerApp's process "
                             "holds the run: use `tinyfleet console --workdir W` beside it")
        if mqtt or local_broker:
            from server.serve import MqttServerOptions, serve_mqtt

            options = MqttServerOptions(
                workdir=workdir.resolve(), broker=mqtt, username=username, password=password, tls_ca=tls_ca,
                local_broker=local_broker, fleet=fleet, round_timeout_s=round_timeout, quorum=quorum,
                registry=registry, federation=federation, console=console_port,
            )
            with _round_bar() as on_round:
                serve_mqtt(options, config, say=console.print, on_round=on_round)
            return
        from server.serve import FlowerServerOptions, serve_flower

        options = FlowerServerOptions(
            workdir=workdir.resolve(), superlink=superlink, port=port, root_certificates=root_certificates,
            run_timeout_s=run_timeout, registry=registry, federation=federation,
        )
        with _round_bar() as on_round:
            status = serve_flower(options, config, say=console.print, on_round=on_round)
    except (ValueError, TimeoutError, ConnectionError, FlowerError, BrokerError) as exc:
        _fail(str(exc))
    except (Stopped, KeyboardInterrupt) as stop:
        where = config.get("checkpoint-dir") if "config" in locals() else None
        console.print(f"stopped ({'SIGTERM' if isinstance(stop, Stopped) else 'Ctrl-C'}); every child process ended"
                      + (f"; checkpoints in {where} (continue with --resume)" if where else ""))
        raise typer.Exit(143 if isinstance(stop, Stopped) else 130) from None
    if status != "finished:completed":
        _fail(f"the run ended {status}; its log: flwr log RUN_ID (FLWR_HOME={workdir.resolve() / 'flwr'})")


device_app = typer.Typer(help="A Linux-class device (e.g. a Raspberry Pi) joining the fleet.", no_args_is_help=True)
app.add_typer(device_app, name="device")


@device_app.command("run")
def device_run(
    mqtt: str = typer.Option(DEVICE_DEFAULTS.mqtt, help=DEVICE_HELP["mqtt"]),
    device_id: str = typer.Option(DEVICE_DEFAULTS.device_id, "--id", help=DEVICE_HELP["device_id"]),
    password: str = typer.Option(DEVICE_DEFAULTS.password, envvar=PASSWORD_ENV, show_default=False,
                                 help=DEVICE_HELP["password"]),
    accounts: Path = typer.Option(DEVICE_DEFAULTS.accounts, help=DEVICE_HELP["accounts"]),
    tls_ca: str = typer.Option(DEVICE_DEFAULTS.tls_ca, help=DEVICE_HELP["tls_ca"]),
    rounds: int = typer.Option(DEVICE_DEFAULTS.rounds, help=DEVICE_HELP["rounds"]),
    superlink: str = typer.Option(DEVICE_DEFAULTS.superlink, help=DEVICE_HELP["superlink"]),
    partition_id: int = typer.Option(DEVICE_DEFAULTS.partition_id, help=DEVICE_HELP["partition_id"]),
    num_partitions: int = typer.Option(DEVICE_DEFAULTS.num_partitions, help=DEVICE_HELP["num_partitions"]),
    root_certificates: str = typer.Option(DEVICE_DEFAULTS.root_certificates, help=DEVICE_HELP["root_certificates"]),
    duration: float = typer.Option(DEVICE_DEFAULTS.duration, help=DEVICE_HELP["duration"]),
    workdir: Path = typer.Option(DEVICE_DEFAULTS.workdir, help=DEVICE_HELP["workdir"]),
    task: str = typer.Option(DEVICE_DEFAULTS.task, help=DEVICE_HELP["task"]),
    profile: str = typer.Option(DEVICE_DEFAULTS.profile, help=DEVICE_HELP["profile"]),
    data: Path = typer.Option(DEVICE_DEFAULTS.data, help=DEVICE_HELP["data"]),
) -> None:
    """Join over MQTT (--mqtt/--accounts + --id) or as a Flower SuperNode (--superlink + --partition-id)."""
    # The same device as `tinyfleet-device run` (firmware_sim.device_cli): both build DeviceRunOptions and call
    # run_device, with the defaults and help texts of firmware_sim.device_run.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = DeviceRunOptions(
        mqtt=mqtt, device_id=device_id, password=password, accounts=accounts, tls_ca=tls_ca, rounds=rounds,
        superlink=superlink, partition_id=partition_id, num_partitions=num_partitions,
        root_certificates=root_certificates, duration=duration, workdir=workdir, task=task, profile=profile, data=data,
    )  # fmt: skip
    try:
        code = run_device(options, say=console.print)
    except DEVICE_ERRORS as exc:
        _fail(str(exc))
        return
    if code:
        raise typer.Exit(code)


fleet_app = typer.Typer(help="Simulated MCU fleets speaking the wire protocol.", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")


@fleet_app.command("run")
def fleet_run(
    accounts: Path = typer.Option(..., help="accounts.json written by `tinyfleet server --local-broker --fleet N`."),
    mqtt: str = typer.Option(None, help="Broker HOST:PORT (default: the one in the accounts file)."),
    devices: int = typer.Option(None, help="Only the first N devices of the accounts file."),
    tls_ca: str = typer.Option(None, help="CA certificate file; set to use TLS."),
    duration: float = typer.Option(None, help="Leave after this many seconds (default: until stopped)."),
    qemu: int = typer.Option(0, help="Run the last N of these devices as C firmware under QEMU (mps2-an386), each "
                                     "behind its own serial gateway (sine-N, keywords-N)."),
    qemu_dir: Path = typer.Option(Path("runs/qemu"), help="With --qemu: one folder per QEMU device (its image; a "
                                                          "keywords device's clip feed)."),
) -> None:
    """Run many simulated microcontrollers in this process, each its own MQTT client (and N under QEMU)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from edge.firmware.build import BuildError
    from firmware_sim.device_tasks import seed_of
    from firmware_sim.linux_device import run_simulated_fleet
    from server.transports.flower_deploy import parse_address

    try:
        known = json.loads(accounts.read_text())
        if known.get("task"):
            from firmware_sim.user_task import resolve_task

            resolve_task(known["task"])  # a user task's folder: load it before its ids name a task
        host, port = parse_address(mqtt) if mqtt else (known["host"], int(known["port"]))
        chosen = sorted(known["devices"], key=seed_of)[:devices]
        passwords = {d: known["devices"][d] for d in chosen}
        if qemu:
            from firmware_sim.qemu_fleet import run_fleet

            done = run_fleet(host, port, passwords, qemu, tls_ca=tls_ca, duration_s=duration, workdir=qemu_dir,
                             say=console.print)  # fmt: skip
        else:
            done = run_simulated_fleet(host, port, passwords, task=known.get("task"), tls_ca=tls_ca, duration_s=duration,
                                       say=console.print)
        console.print(f"{len(done)} devices, {sum(done.values())} device-rounds done")
    except (ValueError, TimeoutError, OSError, KeyError, BuildError) as exc:
        _fail(str(exc))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def gateway(ctx: typer.Context) -> None:
    """Bridge a board's UART (QEMU socket or tty) to MQTT: --serial URL --id DEVICE --accounts FILE (see --help)."""
    from firmware_sim.serial_gateway import main as gateway_main

    raise typer.Exit(gateway_main(list(ctx.args)) or 0)


def _mount_export() -> None:
    from server.cli_export import export_app

    app.add_typer(export_app, name="export")


_mount_export()


def _mount_firmware() -> None:
    from server.cli_firmware import firmware_app

    app.add_typer(firmware_app, name="firmware")


_mount_firmware()


def _mount_console() -> None:
    from server.console.cli import console as console_command  # imports typer only; the app loads on use

    app.command("console")(console_command)


_mount_console()

if __name__ == "__main__":
    app()
