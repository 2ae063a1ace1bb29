"""Wire protocol v1's fixed layout: constants, record structs, dtype codes, name and device-id rules.

One home for every number of ``docs/protocol.md`` (sizes, caps, flags, dtype
codes) and for the checks the encoder and the decoder must agree on (names,
device ids, finite values, dense float32 step sizes), so the two halves of the
codec cannot drift apart. :mod:`edge.wire.encode` and :mod:`edge.wire.decode`
build on it; :mod:`edge.wire.codec` re-exports all three.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from enum import IntEnum

import numpy as np

from edge.wire.errors import WireFormatError
from edge.wire.sparse import SparseTensor

MAGIC = b"TFWP"
VERSION = 1
SUPPORTED_VERSIONS = (VERSION,)

DEFAULT_MAX_PAYLOAD = 64 * 1024  # bytes, whole message including header and CRC
MAX_RANK = 4
MAX_NAME_LEN = 32  # tensor and metric names: printable ASCII, no space
MAX_DEVICE_ID_LEN = 64
MAX_TENSORS = 64
MAX_METRICS = 16
MAX_ROUND_ID = 0xFFFFFFFF

HEADER = struct.Struct("<4sBBBBIIIHBB")  # 24 bytes
TENSOR = struct.Struct("<BBBB4II")  # 24 bytes
METRIC = struct.Struct("<BBBBf")  # 8 bytes
CRC = struct.Struct("<I")  # 4 bytes, trailer
assert HEADER.size == 24 and TENSOR.size == 24 and METRIC.size == 8

FLAG_SPARSE = 0x01  # tensor flag: indices + values instead of all values
FLAG_INDEX16 = 0x02  # tensor flag: sparse indices are uint16 (set iff sparse and prod(shape) <= 65,536)
TENSOR_FLAGS = FLAG_SPARSE | FLAG_INDEX16
INDEX16_MAX_ENTRIES = 1 << 16  # a uint16 flat index addresses at most this many entries
MESSAGE_FLAGS = 0x00  # no message flags defined in v1


class MessageKind(IntEnum):
    MODEL = 1  # absolute weights, server -> device (task/model download)
    UPDATE = 2  # delta (phi - theta of round_id), device -> server; may be sparse
    STEP_SIZES = 3  # per-weight step sizes for round_id, server -> device after its MODEL; dense float32, > 0
    HYPERGRADIENT = 4  # d(query loss)/d(log step size), device -> server before its UPDATE; dense float32


class DType(IntEnum):
    FLOAT32 = 1
    FLOAT16 = 2
    INT8 = 3
    UINT8 = 4
    INT16 = 5
    INT32 = 6


_WIRE_DTYPES: dict[int, np.dtype] = {
    DType.FLOAT32: np.dtype("<f4"),
    DType.FLOAT16: np.dtype("<f2"),
    DType.INT8: np.dtype("i1"),
    DType.UINT8: np.dtype("u1"),
    DType.INT16: np.dtype("<i2"),
    DType.INT32: np.dtype("<i4"),
}
_CODE_OF: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in _WIRE_DTYPES.items()}


def dtype_code(dtype: np.dtype | type | str) -> int:
    """The wire code of a numpy dtype, or :class:`WireFormatError` if it has none (e.g. float64)."""
    dt = np.dtype(dtype)
    code = _CODE_OF.get((dt.kind, dt.itemsize))
    if code is None:
        supported = ", ".join(str(np.dtype(d).newbyteorder("=")) for d in _WIRE_DTYPES.values())
        raise WireFormatError(WireFormatError.BAD_DTYPE, f"dtype {dt} has no wire code; supported: {supported}")
    return code


def wire_dtype(code: int) -> np.dtype:
    """The numpy dtype (native byte order) of a wire dtype code."""
    try:
        return _WIRE_DTYPES[code].newbyteorder("=")
    except KeyError:
        raise WireFormatError(WireFormatError.BAD_DTYPE, f"unknown dtype code {code}") from None


def pad4(n: int) -> int:
    return (n + 3) & ~3


def index_itemsize(size: int) -> int:
    """Bytes per sparse index of a tensor with ``size`` entries: 2 up to 65,536 entries, else 4.

    The width is a function of the shape, not a choice, so every payload has one
    encoding: half the index bytes for every tensor of a TinyML model (the
    1-40-40-1 sine MLP's Top-10% update shrinks from ~1.6 KB to ~1.3 KB, i.e. from
    4.5x to ~5.5x smaller than the dense 7,240 bytes), and uint32 only where needed.
    """
    return 2 if size <= INDEX16_MAX_ENTRIES else 4


# ---------------------------------------------------------------- names and ids


def _is_name(name: object, max_len: int) -> bool:
    return isinstance(name, str) and 0 < len(name) <= max_len and all(0x21 <= ord(c) <= 0x7E for c in name)


def check_name(name: object, what: str = "tensor name") -> str:
    if not _is_name(name, MAX_NAME_LEN):
        raise WireFormatError(
            WireFormatError.BAD_NAME,
            f"{what} {name!r} must be 1..{MAX_NAME_LEN} printable ASCII characters without spaces",
        )
    return name  # type: ignore[return-value]


_DEVICE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")


def check_device_id(device_id: object) -> str:
    """A device id is 1..64 characters from ``[A-Za-z0-9._:-]``.

    It is used verbatim as an MQTT topic level and as the broker username, so
    ``/``, ``+``, ``#``, ``$``, spaces, non-printable and non-ASCII characters are
    refused (a whitelist, stricter than MQTT itself).
    """
    if not isinstance(device_id, str):
        raise WireFormatError(WireFormatError.BAD_DEVICE_ID, f"device id must be a str, got {type(device_id).__name__}")
    if not 0 < len(device_id) <= MAX_DEVICE_ID_LEN:
        raise WireFormatError(
            WireFormatError.BAD_DEVICE_ID, f"device id must be 1..{MAX_DEVICE_ID_LEN} characters, got {len(device_id)}"
        )
    bad = sorted(set(device_id) - _DEVICE_ID_CHARS)
    if bad:
        raise WireFormatError(
            WireFormatError.BAD_DEVICE_ID,
            f"device id {device_id!r} contains forbidden character(s) {bad}; allowed: letters, digits, '-', '_', '.', ':'",
        )
    return device_id


# ---------------------------------------------------------------- value checks shared by encoder and decoder


def _check_finite_values(name: str, values: np.ndarray) -> None:
    if values.dtype.kind == "f" and values.size:
        finite = np.isfinite(values.reshape(-1))
        if not finite.all():
            first = int(np.argmin(finite))
            raise WireFormatError(
                WireFormatError.NON_FINITE,
                f"tensor {name!r} has {int(finite.size - finite.sum())} NaN/Inf value(s), first at value #{first}",
            )



def _dense_float32(tensors: Mapping[str, object], what: str, positive: bool = False) -> dict[str, np.ndarray]:
    """``tensors`` as dense float32 arrays (what STEP_SIZES and HYPERGRADIENT carry); refused otherwise."""
    out = {}
    for name, value in tensors.items():
        if isinstance(value, SparseTensor):
            raise WireFormatError(WireFormatError.BAD_FLAGS, f"{what} {name!r} is sparse; {what} are sent dense")
        array = np.asarray(value)
        if array.dtype != np.float32:
            raise WireFormatError(WireFormatError.SPEC_MISMATCH, f"{what} {name!r} have dtype {array.dtype}; expected float32")
        _check_finite_values(name, array)
        if positive and np.any(array <= 0):
            at = int(np.argmax(array.reshape(-1) <= 0))
            raise WireFormatError(
                WireFormatError.NON_POSITIVE, f"{what} {name!r} value #{at} is {float(array.reshape(-1)[at])}; step sizes must be > 0"
            )
        out[name] = array
    return out

