"""The round contract: what a device is told for one round, and what it answers.

Every transport carries the same two objects. Flower carries a
:class:`RoundRequest` as a ConfigRecord (plus θ and the step sizes as
ArrayRecords), MQTT as the hyperparameters of a TASK message (plus MODEL and
STEP_SIZES payloads), and the C firmware parses the same names. A transport
only encodes and decodes; what the fields mean, their defaults and their
checks live here, once. The device runs the request with
:func:`edge.device_round.run_device_round` and returns a :class:`RoundReply`.

Why one type: when the request had several homes (a config dict, a task
JSON, a plan parsed per transport), the copies drifted; for example MQTT
devices silently ignored FedAvg's local epochs. A request that is refused
raises :class:`edge.wire.WireFormatError` (one error type, with a code)
before the device's learner, stream or ledger is touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np

from edge import record_keys as keys
from edge.reconstruction import RECONSTRUCTION_RULES, parse_private_names as _split_names
from edge.wire import SparseTensor, WireFormatError

Weights = dict[str, np.ndarray]
Scalar = int | float | bool | str

MAX_RATE = 10.0  # a step size above this is a typo, not an experiment


def _count(values: Mapping[str, object], key: str, default: int, minimum: int = 0) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value != int(value):
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{key} = {value!r} must be a whole number >= {minimum}")
    if value < minimum:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{key} = {value!r} must be a whole number >= {minimum}")
    return int(value)


def _rate(values: Mapping[str, object], key: str, default: float, *, positive: bool = False) -> float:
    value = values.get(key, default)
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or not (0 < value if positive else 0 <= value) or value > MAX_RATE:
        bound = "(0, 10]" if positive else "[0, 10]"
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{key} = {value!r} must be a rate in {bound}")
    return float(value)


def _flag(values: Mapping[str, object], key: str, default: bool) -> bool:
    value = values.get(key, default)
    if not isinstance(value, bool):
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{key} = {value!r} must be true or false")
    return value


def parse_private_names(text: object) -> tuple[str, ...]:
    """``"w2,b2"`` -> ``("w2", "b2")``; the empty string means no private part."""
    if not isinstance(text, str):
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.PRIVATE_NAMES} must be a string, got {text!r}")
    return _split_names(text)


def kept_fraction(value: object) -> float | None:
    """A Top-P fraction strictly inside (0, 1), or None for a dense update (absent, 1.0 or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        return None
    return float(value)


@dataclass(frozen=True)
class StepSizeRequest:
    """Measure the hypergradient of the meta-learned step sizes (TinyReptile with step-size learning)."""

    base_rate: float  # the shared adaptation rate the step sizes multiply
    shots: int  # online steps the hypergradient differentiates through
    query: int  # samples the adapted model is then scored on

    KEYS = (keys.STEP_SIZE_BASE_RATE, keys.STEP_SIZE_SHOTS, keys.STEP_SIZE_QUERY)

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, object]) -> StepSizeRequest | None:
        if not any(key in values for key in cls.KEYS):
            return None
        return cls(
            base_rate=_rate(values, keys.STEP_SIZE_BASE_RATE, float("nan"), positive=True),
            shots=_count(values, keys.STEP_SIZE_SHOTS, -1, minimum=1),
            query=_count(values, keys.STEP_SIZE_QUERY, -1, minimum=1),
        )

    def to_hyperparameters(self) -> dict[str, Scalar]:
        return {keys.STEP_SIZE_BASE_RATE: self.base_rate, keys.STEP_SIZE_SHOTS: self.shots, keys.STEP_SIZE_QUERY: self.query}


@dataclass(frozen=True)
class RoundRequest:
    """Everything a device is told for one round. The defaults here are the only defaults a device applies."""

    round_id: int = 0  # the server round; it also keys a simulated device's fresh samples
    evaluate: bool = False  # score θ and adapt, but send no weights
    shots: int = 10  # fresh samples, one online SGD step each
    epochs: int = 1  # passes over the shots (FedAvg's local epochs)
    probe: int = 0  # held-back samples scored before and after adapting
    learning_rate: float = 0.02
    private_names: tuple[str, ...] = ()  # weights rebuilt on the device and never sent (TinyMetaFed)
    reconstruction_samples: int = 0
    reconstruction_lr: float = 0.02
    reconstruction_rule: str = "sgd"  # or "imprint" (a classifier's output layer from class means)
    top_p: float | None = None  # kept fraction of a sparse update; None = dense
    step_sizes: StepSizeRequest | None = None  # measure the step sizes' hypergradient after the round
    radio: bool = True  # False: the device learns alone (local-only baseline); no model crosses the radio
    extras: dict[str, Scalar] = field(default_factory=dict)  # other hyperparameters, passed through untouched

    def __post_init__(self) -> None:
        """Hold a request built in code to the same checks as one parsed from a transport."""
        values = self.to_hyperparameters()
        for key, minimum in ((keys.SERVER_ROUND, 0), (keys.STREAM_SAMPLES, 0), (keys.LOCAL_EPOCHS, 1), (keys.PROBE_SAMPLES, 0)):
            _count(values, key, 0, minimum)
        _count({"n": self.reconstruction_samples}, "n", 0)
        _rate(values, keys.INNER_LEARNING_RATE, 0.0)
        _rate({"r": self.reconstruction_lr}, "r", 0.0)
        if self.reconstruction_rule not in RECONSTRUCTION_RULES:
            raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.RECONSTRUCTION_RULE} = {self.reconstruction_rule!r} is not one of {RECONSTRUCTION_RULES}")
        if self.top_p is not None and kept_fraction(self.top_p) is None:
            raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.TOP_P} = {self.top_p!r} must be inside (0, 1) or None")

    @property
    def whole_model(self) -> bool:
        return not self.private_names

    @property
    def measures_step_sizes(self) -> bool:
        """Step sizes are measured in whole-model training rounds only (TinyMetaFed and evaluation ignore them)."""
        return self.step_sizes is not None and self.whole_model and not self.evaluate

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, object], *, evaluate: bool | None = None) -> RoundRequest:
        """Parse a flat map of hyperparameters (a Flower ConfigRecord or an MQTT task's); WireFormatError if refused.

        ``evaluate`` overrides the map's ``message-type`` (Flower says it in the message's type instead).
        """
        if evaluate is None:
            kind = values.get(keys.MESSAGE_TYPE, "train")
            if kind not in ("train", "evaluate"):
                raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.MESSAGE_TYPE} = {kind!r} is not train or evaluate")
            evaluate = kind == "evaluate"
        private = parse_private_names(values.get(keys.PRIVATE_NAMES, ""))
        rule = values.get(keys.RECONSTRUCTION_RULE, "sgd")
        if rule not in RECONSTRUCTION_RULES:
            raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.RECONSTRUCTION_RULE} = {rule!r} is not one of {RECONSTRUCTION_RULES}")
        top_p = values.get(keys.TOP_P)
        if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
            raise WireFormatError(WireFormatError.BAD_FIELD, f"{keys.TOP_P} = {top_p!r} must be a fraction in (0, 1]")
        _check_names(values)
        known = set(_KNOWN_KEYS)
        return cls(
            round_id=_count(values, keys.SERVER_ROUND, 0),
            evaluate=bool(evaluate),
            shots=_count(values, keys.STREAM_SAMPLES, 10),
            epochs=_count(values, keys.LOCAL_EPOCHS, 1, minimum=1),
            probe=_count(values, keys.PROBE_SAMPLES, 0),
            learning_rate=_rate(values, keys.INNER_LEARNING_RATE, 0.02),
            private_names=private,
            reconstruction_samples=_count(values, keys.RECONSTRUCTION_SAMPLES, 0) if private else 0,
            reconstruction_lr=_rate(values, keys.RECONSTRUCTION_LR, 0.02),
            reconstruction_rule=str(rule),
            top_p=kept_fraction(top_p),
            step_sizes=StepSizeRequest.from_hyperparameters(values),
            radio=_flag(values, keys.RADIO, True),
            extras={k: v for k, v in values.items() if k not in known and isinstance(v, (bool, int, float, str))},
        )

    def to_hyperparameters(self) -> dict[str, Scalar]:
        """The flat map a transport carries (Flower ConfigRecord entries, an MQTT task's hyperparameters)."""
        out: dict[str, Scalar] = dict(self.extras)
        out.update({
            keys.SERVER_ROUND: self.round_id,
            keys.MESSAGE_TYPE: "evaluate" if self.evaluate else "train",
            keys.STREAM_SAMPLES: self.shots,
            keys.LOCAL_EPOCHS: self.epochs,
            keys.PROBE_SAMPLES: self.probe,
            keys.INNER_LEARNING_RATE: self.learning_rate,
            keys.RADIO: self.radio,
        })  # fmt: skip
        if self.private_names:
            out.update({
                keys.PRIVATE_NAMES: ",".join(self.private_names),
                keys.RECONSTRUCTION_SAMPLES: self.reconstruction_samples,
                keys.RECONSTRUCTION_LR: self.reconstruction_lr,
                keys.RECONSTRUCTION_RULE: self.reconstruction_rule,
            })  # fmt: skip
        if self.top_p is not None:
            out[keys.TOP_P] = self.top_p
        if self.step_sizes is not None:
            out.update(self.step_sizes.to_hyperparameters())
        return out

    def with_(self, **changes: object) -> RoundRequest:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _check_names(values: Mapping[str, object]) -> None:
    for key in values:
        if not isinstance(key, str):
            raise WireFormatError(WireFormatError.BAD_FIELD, f"hyperparameter name {key!r} is not a string")


_KNOWN_KEYS = (
    keys.SERVER_ROUND, keys.MESSAGE_TYPE, keys.STREAM_SAMPLES, keys.LOCAL_EPOCHS, keys.PROBE_SAMPLES,
    keys.INNER_LEARNING_RATE, keys.PRIVATE_NAMES, keys.RECONSTRUCTION_SAMPLES, keys.RECONSTRUCTION_LR,
    keys.RECONSTRUCTION_RULE, keys.TOP_P, keys.RADIO, *StepSizeRequest.KEYS,
)  # fmt: skip


@dataclass(frozen=True)
class RoundReply:
    """Everything a device answers for one round, before a transport packs it.

    Exactly one of ``weights`` (φ, the adapted shared part, for a dense reply)
    and ``sparse_delta`` (Top-P of φ − θ) is set in a training round; neither
    in an evaluation round. Costs are the device's own books for this round:
    bytes are the lengths of the wire payloads (what the same round costs on
    the radio, whatever carried it), time and energy come from its profile.
    """

    device_id: str
    round_id: int
    weights: Weights | None
    sparse_delta: dict[str, SparseTensor] | None
    metrics: dict[str, float]  # losses measured this round (finite values only): loss-before/-after, prequential, ...
    num_examples: int
    bytes_sent: int
    bytes_received: int
    time_s: float
    energy_j: float
    hypergradient: Weights | None = None  # d(query loss)/d(log step size), if the request asked for it
    step_size_query_loss: float | None = None

    def metric_record(self) -> dict[str, float | int]:
        """The flat metrics every transport reports (Flower MetricRecord, MQTT UPDATE metrics + telemetry)."""
        out: dict[str, float | int] = dict(self.metrics)
        out.update({
            keys.NUM_EXAMPLES: self.num_examples,
            keys.SAMPLES_USED: self.num_examples,
            keys.BYTES_RECEIVED: self.bytes_received,
            keys.BYTES_SENT: self.bytes_sent,
            keys.DEVICE_TIME_S: self.time_s,
            keys.DEVICE_ENERGY_J: self.energy_j,
        })  # fmt: skip
        if self.step_size_query_loss is not None and math.isfinite(self.step_size_query_loss):
            out[keys.STEP_SIZE_QUERY_LOSS] = self.step_size_query_loss
        return out


def request_fields() -> tuple[str, ...]:
    """Names of the request's fields (for tests and docs that list the contract)."""
    return tuple(f.name for f in fields(RoundRequest))
