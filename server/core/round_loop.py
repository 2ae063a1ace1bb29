"""The round loop: configure, send, aggregate, evaluate, then tell the observers.

Why our own loop instead of Flower's ``Strategy.start``: what happens after a
round (the checkpoint, the registry's version with the devices that made it,
the progress line, a benchmark's cost log, the console) needs both the round's
replies and the θ they produced. ``start`` shows the replies only to
``aggregate_train`` and θ only to ``evaluate_fn``, which led to wrapping the
strategy's method on the instance. Here the loop is explicit, makes the same
calls in the same order as ``start`` (so a strategy cannot tell the
difference and results are unchanged), and hands each observer one
:class:`RoundReport`. Strategies stay plain Flower strategies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edge import record_keys as keys
from edge.flower_records import from_array_record
from edge.identity import device_iri, device_id_of
from server.transports.mqtt_rounds import reply_device_id

log = logging.getLogger(__name__)

#: Keys of the round's metrics dict given to callback observers (see :meth:`RoundReport.as_metrics`).
PARTICIPANTS = "participants"  # the device seeds of the replies (Flower devices)
PARTICIPANT_DEVICES = "participant-devices"  # the device IRIs whose replies made a new θ, over either transport


@dataclass(frozen=True)
class RoundReport:
    """What one round did, as every observer sees it."""

    server_round: int  # absolute: a resumed run continues the count
    weights: dict[str, np.ndarray]  # θ after the round
    metrics: dict[str, float]  # the strategy's aggregated training metrics (numbers only)
    participants: tuple[int, ...] = ()  # device seeds of the replies that carried one
    participant_devices: tuple[str, ...] | None = None  # device IRIs; None when the round made no new θ
    evaluate_metrics: dict[str, float] = field(default_factory=dict)
    replies: int = 0
    failures: int = 0  # replies that were errors

    @property
    def aggregated(self) -> bool:
        """Whether the round produced a new θ (some reply was usable)."""
        return self.participant_devices is not None

    def as_metrics(self) -> dict[str, object]:
        """The flat dict callback observers take: the metrics plus who took part."""
        out: dict[str, object] = dict(self.metrics)
        out[PARTICIPANTS] = sorted(self.participants)
        if self.participant_devices is not None:
            out[PARTICIPANT_DEVICES] = list(self.participant_devices)
        return out


Observer = Callable[[RoundReport], None]
RoundCallback = Callable[[int, dict[str, np.ndarray], dict[str, object]], None]


def callback_observer(callback: RoundCallback) -> Observer:
    """An observer from a ``(round, θ, metrics)`` callback (the shape progress lines and registries take)."""
    return lambda report: callback(report.server_round, report.weights, report.as_metrics())


@runtime_checkable
class StatefulStrategy(Protocol):
    """A strategy whose state besides θ must survive a restart (momentum, step sizes); checkpoints save it."""

    def strategy_state(self) -> dict[str, np.ndarray]: ...

    def restore_strategy_state(self, state: dict[str, np.ndarray]) -> None: ...


def numeric_metrics(record: Mapping[str, object] | None) -> dict[str, float]:
    """The quantities among a round's metrics, as floats: no flags, lists or the device-seed identity."""
    if record is None:
        return {}
    return {
        str(k): float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != keys.DEVICE_SEED
    }


def reply_seeds(replies: Iterable[Message]) -> list[int]:
    """Device seeds named by the replies' metrics (Flower devices say which simulated device they play)."""
    seeds = []
    for message in replies:
        if not message.has_error() and keys.METRICS in message.content.metric_records:
            seed = message.content.metric_records[keys.METRICS].get(keys.DEVICE_SEED)
            if isinstance(seed, (int, float)) and not isinstance(seed, bool):
                seeds.append(int(seed))
    return seeds


def participants_of(replies: Iterable[Message]) -> list[str]:
    """Device IRIs of the replies (errors skipped): MQTT replies by device id, Flower replies by device seed."""
    devices = set()
    for reply in replies:
        if reply.has_error():
            continue
        device_id = reply_device_id(reply)
        if device_id is None:
            metrics = reply.content.metric_records.get(keys.METRICS)
            seed = metrics.get(keys.DEVICE_SEED) if metrics is not None else None
            if isinstance(seed, (int, float)) and not isinstance(seed, bool):
                device_id = device_id_of(int(seed))
        if device_id is not None:
            devices.add(device_iri(device_id))
    return sorted(devices)


def run_rounds(
    strategy: Strategy,
    grid: Grid,
    initial: ArrayRecord,
    *,
    num_rounds: int,
    config: ConfigRecord,
    timeout: float,
    round_offset: int = 0,
    observers: Sequence[Observer] = (),
) -> ArrayRecord:
    """Run ``num_rounds`` rounds of ``strategy`` on ``grid`` from ``initial``; the θ it ends with.

    Round ``r`` of this call is reported as round ``round_offset + r``. The
    strategy sees exactly the calls of Flower's ``Strategy.start``; the
    evaluation messages carry the same config as the training ones, so an
    evaluating device is asked for the same round as a training one.
    """
    strategy.summary()
    arrays = initial
    for current in range(1, num_rounds + 1):
        absolute = round_offset + current
        log.info("[ROUND %d]", absolute)
        replies = list(grid.send_and_receive(messages=strategy.configure_train(current, arrays, config, grid), timeout=timeout))
        new_arrays, train_metrics = strategy.aggregate_train(current, replies)
        if new_arrays is not None:
            arrays = new_arrays
        evaluation = list(grid.send_and_receive(messages=strategy.configure_evaluate(current, arrays, config, grid), timeout=timeout))
        evaluate_metrics = strategy.aggregate_evaluate(current, evaluation)
        report = RoundReport(
            server_round=absolute,
            weights=from_array_record(arrays),
            metrics=numeric_metrics(train_metrics),
            participants=tuple(sorted(reply_seeds(replies))),
            participant_devices=tuple(participants_of(replies)) if new_arrays is not None else None,
            evaluate_metrics=numeric_metrics(evaluate_metrics),
            replies=len(replies),
            failures=sum(1 for reply in replies if reply.has_error()),
        )
        for observer in observers:
            observer(report)
    return arrays
