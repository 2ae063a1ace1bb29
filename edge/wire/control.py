"""JSON control messages (wire protocol v1): strict parsing with dataclasses and explicit checks.

JSON is used only where a person reads the message (task assignments,
telemetry, the announced Thing Description); tensors always travel in the
binary payload of :mod:`edge.wire.codec`. Parsing refuses, with
:class:`ControlMessageError`, anything that is not exactly the documented
shape: non-UTF-8, oversized, duplicate keys, NaN/Infinity, unknown or missing
fields, booleans where numbers are expected, out-of-range values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.wire.codec import MAX_NAME_LEN, _is_name
from edge.wire.errors import ControlMessageError, WireFormatError

CONTROL_VERSION = 1
MAX_TASK_BYTES = 4096
MAX_TELEMETRY_BYTES = 4096
MAX_ANNOUNCE_BYTES = 16384
MAX_HYPERPARAMETERS = 32
MAX_TELEMETRY_FIELDS = 32
MAX_STRING_LEN = 128
MAX_DEADLINE_S = 86_400.0

Scalar = int | float | bool | str


def _err(code: str, message: str) -> ControlMessageError:
    return ControlMessageError(code, message)


def _reject_constant(name: str) -> Any:
    raise _err(WireFormatError.BAD_JSON, f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _err(WireFormatError.BAD_JSON, f"duplicate key {key!r}")
        out[key] = value
    return out


def loads_object(payload: bytes | str, max_bytes: int, what: str) -> dict[str, Any]:
    """Parse a JSON object strictly (size cap, UTF-8, no duplicate keys, no NaN/Infinity)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise _err(WireFormatError.BAD_TYPE, f"{what} must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if len(payload) > max_bytes:
        raise _err(WireFormatError.OVERSIZED, f"{what} is {len(payload)} bytes; the cap is {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _err(WireFormatError.BAD_JSON, f"{what} is not UTF-8: {exc}") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ControlMessageError:
        raise
    except (ValueError, RecursionError) as exc:
        raise _err(WireFormatError.BAD_JSON, f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _err(WireFormatError.BAD_JSON, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")


def _exact_keys(obj: Mapping[str, Any], required: set[str], optional: set[str], what: str) -> None:
    missing = sorted(required - set(obj))
    unknown = sorted(set(obj) - required - optional)
    if missing or unknown:
        raise _err(WireFormatError.BAD_FIELD, f"{what}: missing fields {missing or 'none'}, unknown fields {unknown or 'none'}")


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(WireFormatError.BAD_FIELD, f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _number(value: Any, name: str, lo: float, hi: float, *, open_lo: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if open_lo else "["
        raise _err(WireFormatError.BAD_FIELD, f"{name} must be a finite number in {bracket}{lo}, {hi}], got {value!r}")
    return float(value)


def _scalar(value: Any, name: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -(2**53) <= value <= 2**53:
            raise _err(WireFormatError.BAD_FIELD, f"{name} = {value} is outside the exactly representable integer range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _err(WireFormatError.NON_FINITE, f"{name} is {value}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LEN:
            raise _err(WireFormatError.BAD_FIELD, f"{name} is a string of {len(value)} characters > {MAX_STRING_LEN}")
        return value
    raise _err(WireFormatError.BAD_FIELD, f"{name} must be a number, boolean or string, got {type(value).__name__}")


def _scalar_map(value: Any, what: str, max_items: int) -> dict[str, Scalar]:
    if not isinstance(value, Mapping):
        raise _err(WireFormatError.BAD_FIELD, f"{what} must be an object, got {type(value).__name__}")
    if len(value) > max_items:
        raise _err(WireFormatError.TOO_MANY, f"{what} has {len(value)} entries > {max_items}")
    out: dict[str, Scalar] = {}
    for key, item in value.items():
        if not _is_name(key, MAX_NAME_LEN):
            raise _err(WireFormatError.BAD_NAME, f"{what} key {key!r} must be 1..{MAX_NAME_LEN} printable ASCII characters")
        out[key] = _scalar(item, f"{what}[{key!r}]")
    return out


@dataclass(frozen=True)
class TaskAssignment:
    """Server -> device on ``.../task``: train on the MODEL payload of ``round_id`` and reply by the deadline.

    ``deadline_s`` is relative (seconds from receipt) because a microcontroller
    has no synchronised clock; the server enforces its own wall-clock deadline.
    ``top_p`` is the kept fraction for a sparse UPDATE, or None for a dense one.
    ``hyperparameters`` is a flat map using the names of :mod:`edge.record_keys`.
    """

    round_id: int
    deadline_s: float
    hyperparameters: dict[str, Scalar] = field(default_factory=dict)
    top_p: float | None = None

    TYPE = "task"

    def __post_init__(self) -> None:
        _int(self.round_id, "round_id", 0, 2**32 - 1)
        object.__setattr__(self, "deadline_s", _number(self.deadline_s, "deadline_s", 0.0, MAX_DEADLINE_S, open_lo=True))
        object.__setattr__(self, "hyperparameters", _scalar_map(self.hyperparameters, "hyperparameters", MAX_HYPERPARAMETERS))
        if self.top_p is not None:
            object.__setattr__(self, "top_p", _number(self.top_p, "top_p", 0.0, 1.0, open_lo=True))

    def to_json(self) -> bytes:
        return _dumps(
            {
                "v": CONTROL_VERSION,
                "type": self.TYPE,
                "round_id": self.round_id,
                "deadline_s": self.deadline_s,
                "hyperparameters": self.hyperparameters,
                "top_p": self.top_p,
            }
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> TaskAssignment:
        obj = loads_object(payload, MAX_TASK_BYTES, "task")
        _exact_keys(obj, {"v", "type", "round_id", "deadline_s", "hyperparameters"}, {"top_p"}, "task")
        if type(obj["v"]) is not int or obj["v"] != CONTROL_VERSION:
            raise _err(WireFormatError.BAD_VERSION, f"task version {obj['v']!r} is not supported (expected {CONTROL_VERSION})")
        if obj["type"] != cls.TYPE:
            raise _err(WireFormatError.BAD_FIELD, f"type must be {cls.TYPE!r}, got {obj['type']!r}")
        return cls(
            round_id=obj["round_id"],
            deadline_s=obj["deadline_s"],
            hyperparameters=obj["hyperparameters"],
            top_p=obj.get("top_p"),
        )


def encode_telemetry(values: Mapping[str, Scalar]) -> bytes:
    """Device -> server on ``.../telemetry``: a flat JSON object of scalars plus ``"v": 1``."""
    checked = _scalar_map(values, "telemetry", MAX_TELEMETRY_FIELDS)
    if "v" in checked:
        raise _err(WireFormatError.BAD_FIELD, "telemetry key 'v' is reserved for the version")
    return _dumps({"v": CONTROL_VERSION, **checked})


def parse_telemetry(payload: bytes | str) -> dict[str, Scalar]:
    obj = loads_object(payload, MAX_TELEMETRY_BYTES, "telemetry")
    version = obj.pop("v", None)
    if type(version) is not int or version != CONTROL_VERSION:
        raise _err(WireFormatError.BAD_VERSION, f"telemetry version {version!r} is not supported (expected {CONTROL_VERSION})")
    return _scalar_map(obj, "telemetry", MAX_TELEMETRY_FIELDS)


def parse_announce(payload: bytes | str) -> dict[str, Any]:
    """Device -> server on ``.../announce`` (retained): its Thing Description as a JSON object.

    Only the JSON is checked here; validating the TD itself is the ontology's job.
    An empty retained payload (a device being forgotten) is refused like any other.
    """
    return loads_object(payload, MAX_ANNOUNCE_BYTES, "announce")
