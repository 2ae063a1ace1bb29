"""Errors raised by the wire protocol.

Every refusal carries a short machine-readable ``code`` (for counters and log
fields) and a message that says exactly what is wrong, so a receiver can drop
the payload with a logged reason and go on.
"""

from __future__ import annotations


class WireFormatError(ValueError):
    """A payload (or a value about to be encoded) does not follow the wire protocol.

    ``code`` is one of the ``WireFormatError.*`` class constants below.
    """

    BAD_TYPE = "bad-type"
    OVERSIZED = "oversized"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing-bytes"
    BAD_MAGIC = "bad-magic"
    BAD_VERSION = "unsupported-version"
    BAD_CRC = "bad-crc"
    BAD_KIND = "unknown-kind"
    BAD_FLAGS = "bad-flags"
    BAD_DTYPE = "unknown-dtype"
    BAD_SHAPE = "bad-shape"
    BAD_NAME = "bad-name"
    DUPLICATE_NAME = "duplicate-name"
    BAD_PADDING = "bad-padding"
    BAD_INDICES = "bad-indices"
    NON_FINITE = "non-finite"
    NON_POSITIVE = "non-positive"  # a step size <= 0 in a STEP_SIZES payload
    TOO_MANY = "too-many"
    SPEC_MISMATCH = "spec-mismatch"
    FOREIGN_DEVICE = "foreign-device"
    WRONG_ROUND = "wrong-round"
    BAD_DEVICE_ID = "bad-device-id"
    BAD_FIELD = "bad-field"
    BAD_TOPIC = "bad-topic"
    BAD_JSON = "bad-json"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message


class ControlMessageError(WireFormatError):
    """A JSON control message (task, telemetry, announce) is refused."""
