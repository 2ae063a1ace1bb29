"""The module-level ServerApp a Flower deployment runs (``flwr run server/flower_app <connection>``).

Why a second entry point beside :func:`server.core.federation.make_server_app`: in
a deployment the SuperLink starts the ServerApp in its own process from the
Flower App's ``[tool.flwr.app.components]``, so the app must be importable at
module level and can only learn its settings from ``context.run_config``
(the App's ``[tool.flwr.app.config]`` table plus ``--run-config`` overrides).
Everything else — strategy, checkpointing, resuming, registering each
round's version when the run config names a ``registry`` — is the same as in
simulation and MQTT (:func:`server.core.federation.run_federation`,
:class:`server.registry.registry_link.RunVersions`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.core.federation import run_federation
from server.core.run_dir import RoundsLog
from server.core.run_config import settings_from_run_config

log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = settings_from_run_config(context.run_config)
    log.warning(
        "TinyFleet %s: %d rounds, checkpoints in %s", settings.strategy, settings.num_rounds, settings.checkpoint_dir
    )
    registry = str(context.run_config.get("registry", "") or "")
    store = versions = None
    if registry:  # `tinyfleet server --registry DIR`: this process owns the store while the run lasts
        from server.serve import open_registry, run_versions

        store = open_registry(registry)
        federation = str(context.run_config.get("federation", "") or "") or f"flower-{settings.strategy}"
        # the model is described beside the checkpoints, so each version is a version of a described model
        versions = run_versions(store, federation, settings, Path(settings.checkpoint_dir).parent / "models")
        log.warning("registering every version in %s as federation %s", registry, federation)

    def on_round(server_round: int, weights: dict[str, np.ndarray], metrics: dict[str, object]) -> None:
        log.warning("round %d/%d done: %s", server_round, settings.num_rounds,
                    {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})  # fmt: skip
        if versions is not None:
            versions.on_round(server_round, weights, metrics)

    rounds_log = str(context.run_config.get("rounds-log", "") or "")
    observers = [RoundsLog(Path(rounds_log))] if rounds_log else []  # what `tinyfleet server` shows and keeps
    try:
        run_federation(grid, settings, on_round, observers=observers)
    finally:
        if store is not None:
            store.close()
