"""Binary tensor payload (wire protocol v1): named dense or sparse tensors, a CRC32 and a size cap.

The byte layout is specified in ``docs/protocol.md``; this module is its
reference implementation. Everything is little-endian, every record is a
fixed-size struct followed by a short name padded to 4 bytes, and every
array starts at a 4-byte aligned offset, so a C firmware can parse a payload in
place (pointers into its receive buffer) without dynamic allocation.

Decoding checks, in this order, and refuses with :class:`WireFormatError`:
type, size cap (on the received length, then on the declared length, before
the body is touched), magic, minimum length, version, declared length vs.
received length (truncated / trailing bytes), CRC32, header fields, then each
record (names, dtype, rank and shape, byte counts, zero padding, sparse
indices, NaN/Inf), and finally the optional expected spec.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
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


# ---------------------------------------------------------------- encoding


def _u32(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= MAX_ROUND_ID:
        raise WireFormatError(WireFormatError.BAD_FIELD, f"{what} must be an integer in [0, 2**32), got {value!r}")
    return int(value)


def _prepare_dense(name: str, value: object) -> tuple[int, tuple[int, ...], np.ndarray]:
    array = np.asarray(value)
    code = dtype_code(array.dtype)
    _check_shape(name, array.shape)
    wire = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[code])
    _check_finite_values(name, wire)
    return code, tuple(array.shape), wire


def _prepare_sparse(name: str, st: SparseTensor) -> tuple[int, tuple[int, ...], np.ndarray, np.ndarray]:
    code = dtype_code(st.values.dtype)
    _check_shape(name, st.shape)
    values = np.ascontiguousarray(st.values, dtype=_WIRE_DTYPES[code])
    _check_finite_values(name, values)
    index_dtype = "<u2" if index_itemsize(st.size) == 2 else "<u4"
    return code, st.shape, np.ascontiguousarray(st.indices, dtype=index_dtype), values


def _check_shape(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) > MAX_RANK:
        raise WireFormatError(WireFormatError.BAD_SHAPE, f"tensor {name!r} has rank {len(shape)} > {MAX_RANK}")
    if any(not 0 <= d <= 0xFFFFFFFF for d in shape):
        raise WireFormatError(WireFormatError.BAD_SHAPE, f"tensor {name!r} shape {shape} does not fit uint32 dimensions")


def _check_finite_values(name: str, values: np.ndarray) -> None:
    if values.dtype.kind == "f" and values.size:
        finite = np.isfinite(values.reshape(-1))
        if not finite.all():
            first = int(np.argmin(finite))
            raise WireFormatError(
                WireFormatError.NON_FINITE,
                f"tensor {name!r} has {int(finite.size - finite.sum())} NaN/Inf value(s), first at value #{first}",
            )


def _prepare_metrics(metrics: Mapping[str, float] | None) -> list[tuple[str, float]]:
    items = list((metrics or {}).items())
    if len(items) > MAX_METRICS:
        raise WireFormatError(WireFormatError.TOO_MANY, f"{len(items)} metrics > {MAX_METRICS}")
    out = []
    for name, value in items:
        check_name(name, "metric name")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise WireFormatError(WireFormatError.BAD_FIELD, f"metric {name!r} must be a number, got {value!r}")
        with np.errstate(over="ignore"):
            as32 = float(np.float32(value))
        if not math.isfinite(as32):
            raise WireFormatError(WireFormatError.NON_FINITE, f"metric {name!r} = {value!r} is not a finite float32")
        out.append((name, as32))
    return out


def _tensor_record_size(name: str, count: int, itemsize: int, sparse_size: int | None) -> int:
    """``sparse_size`` is the dense entry count of a sparse tensor (it sets the index width), None if dense."""
    index_bytes = 0 if sparse_size is None else pad4(count * index_itemsize(sparse_size))
    return TENSOR.size + pad4(len(name)) + index_bytes + pad4(count * itemsize)


def _split(
    weights: Mapping[str, np.ndarray | SparseTensor] | None, sparse: Mapping[str, SparseTensor] | None
) -> list[tuple[str, np.ndarray | SparseTensor]]:
    items = list((weights or {}).items())
    overlap = sorted(set(weights or {}) & set(sparse or {}))
    if overlap:
        raise WireFormatError(WireFormatError.DUPLICATE_NAME, f"names given in both weights and sparse: {overlap}")
    for name, value in (sparse or {}).items():
        if not isinstance(value, SparseTensor):
            raise WireFormatError(
                WireFormatError.BAD_TYPE, f"sparse entry {name!r} must be a SparseTensor, got {type(value).__name__}"
            )
    return items + list((sparse or {}).items())


def encoded_size(
    weights: Mapping[str, np.ndarray | SparseTensor] | None = None,
    *,
    sparse: Mapping[str, SparseTensor] | None = None,
    device_id: str = "",
    metrics: Mapping[str, float] | None = None,
) -> int:
    """Length in bytes of the payload :func:`encode_weights` would produce (the formula in docs/protocol.md).

    ``24 + pad4(len(device_id)) + sum(8 + pad4(len(metric))) + sum(tensor records) + 4`` where a tensor record is
    ``24 + pad4(len(name)) + (pad4(index_itemsize * nnz) if sparse) + pad4(count * itemsize)`` and ``count`` is
    ``nnz`` (sparse) or ``prod(shape)`` (dense); ``index_itemsize`` is 2 up to 65,536 entries, else 4.
    """
    size = HEADER.size + pad4(len(device_id)) + CRC.size
    size += sum(METRIC.size + pad4(len(name)) for name in (metrics or {}))
    for name, value in _split(weights, sparse):
        if isinstance(value, SparseTensor):
            size += _tensor_record_size(name, value.nnz, value.values.dtype.itemsize, value.size)
        else:
            array = np.asarray(value)
            size += _tensor_record_size(name, array.size, array.dtype.itemsize, None)
    return size


def encode_weights(
    weights: Mapping[str, np.ndarray | SparseTensor] | None,
    *,
    round_id: int,
    kind: MessageKind | int = MessageKind.UPDATE,
    device_id: str = "",
    num_examples: int = 0,
    metrics: Mapping[str, float] | None = None,
    sparse: Mapping[str, SparseTensor] | None = None,
    max_size: int = DEFAULT_MAX_PAYLOAD,
) -> bytes:
    """Encode a weight set into one payload.

    ``weights`` maps names to dense arrays or :class:`SparseTensor` (so a
    :attr:`DecodedMessage.tensors` re-encodes to the same bytes); ``sparse`` is
    an optional second mapping of sparse tensors, e.g. from :func:`top_p_sparsify`.
    Tensors are written in the order of ``weights`` then ``sparse``; a name may
    appear in only one of them. ``device_id`` may be empty (server -> device).
    ``metrics`` are a few named float32 scalars (e.g. loss) carried with an update.
    Raises :class:`WireFormatError` for anything the decoder would refuse,
    including a payload larger than ``max_size``.
    """
    try:
        kind = MessageKind(kind)
    except ValueError:
        raise WireFormatError(WireFormatError.BAD_KIND, f"unknown message kind {kind!r}") from None
    round_id = _u32(round_id, "round_id")
    num_examples = _u32(num_examples, "num_examples")
    device_id = device_id or ""
    if device_id:
        check_device_id(device_id)
    metric_items = _prepare_metrics(metrics)
    items = _split(weights, sparse)
    if len(items) > MAX_TENSORS:
        raise WireFormatError(WireFormatError.TOO_MANY, f"{len(items)} tensors > {MAX_TENSORS}")
    prepared = []
    for name, value in items:
        check_name(name)
        if isinstance(value, SparseTensor):
            code, shape, indices, values = _prepare_sparse(name, value)
            flags = FLAG_SPARSE | (FLAG_INDEX16 if indices.dtype.itemsize == 2 else 0)
            prepared.append((name, code, shape, flags, indices, values))
        else:
            code, shape, values = _prepare_dense(name, value)
            prepared.append((name, code, shape, 0, None, values))

    total = encoded_size(weights, sparse=sparse, device_id=device_id, metrics=dict(metric_items))
    if total > max_size:
        raise WireFormatError(WireFormatError.OVERSIZED, f"payload would be {total} bytes; the cap is {max_size}")

    out = bytearray(total)
    HEADER.pack_into(
        out, 0, MAGIC, VERSION, int(kind), MESSAGE_FLAGS, len(device_id), total, round_id, num_examples,
        len(prepared), len(metric_items), 0,
    )
    pos = HEADER.size
    out[pos : pos + len(device_id)] = device_id.encode("ascii")
    pos += pad4(len(device_id))
    for name, value in metric_items:
        METRIC.pack_into(out, pos, len(name), 0, 0, 0, value)
        pos += METRIC.size
        out[pos : pos + len(name)] = name.encode("ascii")
        pos += pad4(len(name))

    def tensor(name: str, code: int, shape: tuple[int, ...], flags: int, indices: np.ndarray | None, values: np.ndarray) -> None:
        nonlocal pos
        dims = list(shape) + [0] * (MAX_RANK - len(shape))
        TENSOR.pack_into(out, pos, len(name), code, flags, len(shape), *dims, values.size)
        pos += TENSOR.size
        out[pos : pos + len(name)] = name.encode("ascii")
        pos += pad4(len(name))
        if indices is not None:
            out[pos : pos + indices.nbytes] = indices.tobytes()
            pos += pad4(indices.nbytes)
        out[pos : pos + values.nbytes] = values.tobytes()
        pos += pad4(values.nbytes)

    for record in prepared:
        tensor(*record)
    assert pos == total - CRC.size, (pos, total)
    CRC.pack_into(out, pos, zlib.crc32(memoryview(out)[:pos]))
    return bytes(out)


def encode_model(weights: Mapping[str, np.ndarray], *, round_id: int, **kwargs: object) -> bytes:
    """A MODEL message: the absolute weights a device starts round ``round_id`` from."""
    return encode_weights(weights, round_id=round_id, kind=MessageKind.MODEL, **kwargs)  # type: ignore[arg-type]


def encode_step_sizes(scales: Mapping[str, np.ndarray], *, round_id: int, max_size: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """A STEP_SIZES message: one positive float32 multiplier of the adaptation rate per weight of round ``round_id``'s MODEL."""
    return encode_weights(
        _dense_float32(scales, "step sizes", positive=True), round_id=round_id, kind=MessageKind.STEP_SIZES, max_size=max_size
    )


def encode_hypergradient(
    hypergradient: Mapping[str, np.ndarray],
    *,
    round_id: int,
    device_id: str,
    num_examples: int,
    metrics: Mapping[str, float] | None = None,
    max_size: int = DEFAULT_MAX_PAYLOAD,
) -> bytes:
    """A HYPERGRADIENT message: d(query loss)/d(log step size) per weight, measured on ``num_examples`` samples."""
    if not device_id:
        raise WireFormatError(WireFormatError.BAD_DEVICE_ID, "a HYPERGRADIENT must name the device that measured it")
    return encode_weights(
        _dense_float32(hypergradient, "hypergradient"), round_id=round_id, kind=MessageKind.HYPERGRADIENT,
        device_id=device_id, num_examples=num_examples, metrics=metrics, max_size=max_size,
    )  # fmt: skip


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


# ---------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Header:
    version: int
    kind: MessageKind
    flags: int
    device_id_len: int
    total_len: int
    round_id: int
    num_examples: int
    tensor_count: int
    metric_count: int


@dataclass(frozen=True)
class DecodedMessage:
    version: int
    kind: MessageKind
    round_id: int
    device_id: str
    num_examples: int
    metrics: dict[str, float]
    tensors: dict[str, np.ndarray | SparseTensor]  # in wire order
    nbytes: int  # payload length, for byte accounting

    @property
    def dense(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.tensors.items() if isinstance(v, np.ndarray)}

    @property
    def sparse(self) -> dict[str, SparseTensor]:
        return {k: v for k, v in self.tensors.items() if isinstance(v, SparseTensor)}

    def to_dense(self) -> dict[str, np.ndarray]:
        """Every tensor as a dense array (sparse ones zero outside their indices)."""
        return {k: v.to_dense() if isinstance(v, SparseTensor) else v for k, v in self.tensors.items()}

    def spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {k: (tuple(v.shape), v.dtype) for k, v in self.tensors.items()}


def _fail(code: str, message: str) -> WireFormatError:
    return WireFormatError(code, message)


def read_header(
    payload: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_PAYLOAD,
    expected_kind: MessageKind | int | None = None,
    expected_round_id: int | None = None,
) -> Header:
    """Check size cap, magic, version, length, CRC32 and header fields; the body is not parsed.

    Cheap enough to drop late or misdirected payloads before decoding tensors.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise _fail(WireFormatError.BAD_TYPE, f"payload must be bytes, got {type(payload).__name__}")
    view = memoryview(payload).cast("B") if isinstance(payload, memoryview) else memoryview(payload)
    n = view.nbytes
    if n > max_size:
        raise _fail(WireFormatError.OVERSIZED, f"payload is {n} bytes; the cap is {max_size}")
    minimum = HEADER.size + CRC.size
    head = bytes(view[: min(n, 4)])
    if head != MAGIC[: len(head)]:
        raise _fail(WireFormatError.BAD_MAGIC, f"magic is {head!r}, expected {MAGIC!r}")
    if n < minimum:
        raise _fail(WireFormatError.TRUNCATED, f"payload is {n} bytes; a message has at least {minimum}")
    magic, version, kind, flags, dev_len, total, round_id, num_examples, n_tensors, n_metrics, reserved = (
        HEADER.unpack_from(view, 0)
    )
    if version not in SUPPORTED_VERSIONS:
        raise _fail(WireFormatError.BAD_VERSION, f"protocol version {version} is not supported (supported: {SUPPORTED_VERSIONS})")
    if total > max_size:
        raise _fail(WireFormatError.OVERSIZED, f"header declares {total} bytes; the cap is {max_size}")
    if n < total:
        raise _fail(WireFormatError.TRUNCATED, f"payload is {n} bytes but its header declares {total}")
    if n > total:
        raise _fail(WireFormatError.TRAILING_BYTES, f"payload is {n} bytes but its header declares {total}")
    (stored,) = CRC.unpack_from(view, total - CRC.size)
    computed = zlib.crc32(view[: total - CRC.size])
    if stored != computed:
        raise _fail(WireFormatError.BAD_CRC, f"CRC32 is 0x{stored:08x}, computed 0x{computed:08x}")
    try:
        kind = MessageKind(kind)
    except ValueError:
        raise _fail(WireFormatError.BAD_KIND, f"unknown message kind {kind}") from None
    if flags & ~MESSAGE_FLAGS:
        raise _fail(WireFormatError.BAD_FLAGS, f"message flags 0x{flags:02x} set undefined bits")
    if reserved:
        raise _fail(WireFormatError.BAD_FIELD, f"reserved header byte is {reserved}, must be 0")
    if dev_len > MAX_DEVICE_ID_LEN:
        raise _fail(WireFormatError.BAD_DEVICE_ID, f"device id length {dev_len} > {MAX_DEVICE_ID_LEN}")
    if n_tensors > MAX_TENSORS:
        raise _fail(WireFormatError.TOO_MANY, f"{n_tensors} tensors > {MAX_TENSORS}")
    if n_metrics > MAX_METRICS:
        raise _fail(WireFormatError.TOO_MANY, f"{n_metrics} metrics > {MAX_METRICS}")
    if expected_kind is not None and kind != expected_kind:
        raise _fail(WireFormatError.BAD_KIND, f"message kind is {kind.name}, expected {MessageKind(expected_kind).name}")
    if expected_round_id is not None and round_id != expected_round_id:
        raise _fail(WireFormatError.WRONG_ROUND, f"message is for round {round_id}, expected round {expected_round_id}")
    return Header(version, kind, flags, dev_len, total, round_id, num_examples, n_tensors, n_metrics)


class _Reader:
    """Bounds-checked cursor over the body (between the header and the CRC trailer)."""

    def __init__(self, view: memoryview, start: int, end: int) -> None:
        self.view, self.pos, self.end = view, start, end

    def take(self, n: int, what: str, code: str = WireFormatError.BAD_SHAPE) -> memoryview:
        if n > self.end - self.pos:
            raise _fail(code, f"{what} needs {n} bytes but only {self.end - self.pos} remain before the CRC")
        chunk = self.view[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def padding(self, used: int, what: str) -> None:
        pad = pad4(used) - used
        if pad and any(self.take(pad, f"padding after {what}")):
            raise _fail(WireFormatError.BAD_PADDING, f"padding after {what} is not zero")

    def name(self, length: int, what: str) -> str:
        raw = bytes(self.take(length, what))
        if not 0 < length <= MAX_NAME_LEN or not all(0x21 <= b <= 0x7E for b in raw):
            raise _fail(WireFormatError.BAD_NAME, f"{what} {raw!r} is not 1..{MAX_NAME_LEN} printable ASCII characters")
        self.padding(length, what)
        return raw.decode("ascii")


def decode_weights(
    payload: bytes | bytearray | memoryview,
    expected_spec: Mapping[str, tuple[tuple[int, ...], object]] | None = None,
    *,
    expected_kind: MessageKind | int | None = None,
    expected_round_id: int | None = None,
    expected_device_id: str | None = None,
    max_size: int = DEFAULT_MAX_PAYLOAD,
) -> DecodedMessage:
    """Decode and fully validate a payload; the returned arrays own their memory.

    ``expected_spec`` maps every expected name to ``(shape, dtype)`` (for sparse
    tensors, the dense shape); the message must carry exactly those names.
    ``expected_device_id`` is the id in the topic the payload arrived on: an
    UPDATE must name the same device (a missing id is refused too).
    """
    header = read_header(payload, max_size=max_size, expected_kind=expected_kind, expected_round_id=expected_round_id)
    view = memoryview(payload).cast("B") if isinstance(payload, memoryview) else memoryview(payload)
    r = _Reader(view, HEADER.size, header.total_len - CRC.size)

    device_id = ""
    if header.device_id_len:
        raw = bytes(r.take(header.device_id_len, "device id"))
        try:
            device_id = check_device_id(raw.decode("ascii"))
        except (UnicodeDecodeError, WireFormatError):
            raise _fail(WireFormatError.BAD_DEVICE_ID, f"device id {raw!r} is not a valid device id") from None
        r.padding(header.device_id_len, "device id")
    if expected_device_id is not None and device_id != expected_device_id:
        raise _fail(WireFormatError.FOREIGN_DEVICE, f"payload is from device {device_id!r}, expected {expected_device_id!r}")

    metrics: dict[str, float] = {}
    for i in range(header.metric_count):
        name_len, r1, r2, r3, value = METRIC.unpack(r.take(METRIC.size, f"metric #{i} record"))
        if r1 or r2 or r3:
            raise _fail(WireFormatError.BAD_FIELD, f"metric #{i} reserved bytes are not zero")
        name = r.name(name_len, f"metric #{i} name")
        if name in metrics:
            raise _fail(WireFormatError.DUPLICATE_NAME, f"metric {name!r} appears twice")
        if not math.isfinite(value):
            raise _fail(WireFormatError.NON_FINITE, f"metric {name!r} is {value}")
        metrics[name] = float(value)

    tensors: dict[str, np.ndarray | SparseTensor] = {}
    for i in range(header.tensor_count):
        name_len, code, flags, ndim, d0, d1, d2, d3, count = TENSOR.unpack(r.take(TENSOR.size, f"tensor #{i} record"))
        name = r.name(name_len, f"tensor #{i} name")
        if name in tensors:
            raise _fail(WireFormatError.DUPLICATE_NAME, f"tensor {name!r} appears twice")
        tensors[name] = _read_tensor(r, name, code, flags, ndim, (d0, d1, d2, d3), count)

    if r.pos != r.end:
        raise _fail(WireFormatError.TRAILING_BYTES, f"{r.end - r.pos} unparsed bytes after the last tensor")
    if expected_spec is not None:
        check_spec(tensors, expected_spec)
    return DecodedMessage(
        version=header.version,
        kind=header.kind,
        round_id=header.round_id,
        device_id=device_id,
        num_examples=header.num_examples,
        metrics=metrics,
        tensors=tensors,
        nbytes=header.total_len,
    )


def _read_tensor(
    r: _Reader, name: str, code: int, flags: int, ndim: int, dims: tuple[int, ...], count: int
) -> np.ndarray | SparseTensor:
    dt = _WIRE_DTYPES.get(code)
    if dt is None:
        raise _fail(WireFormatError.BAD_DTYPE, f"tensor {name!r} has unknown dtype code {code}")
    if flags & ~TENSOR_FLAGS:
        raise _fail(WireFormatError.BAD_FLAGS, f"tensor {name!r} flags 0x{flags:02x} set undefined bits")
    if ndim > MAX_RANK:
        raise _fail(WireFormatError.BAD_SHAPE, f"tensor {name!r} has rank {ndim} > {MAX_RANK}")
    if any(dims[ndim:]):
        raise _fail(WireFormatError.BAD_SHAPE, f"tensor {name!r} has rank {ndim} but non-zero unused dimensions {dims[ndim:]}")
    shape = tuple(dims[:ndim])
    size = math.prod(shape)
    sparse = bool(flags & FLAG_SPARSE)
    index16 = bool(flags & FLAG_INDEX16)
    if index16 and not sparse:
        raise _fail(WireFormatError.BAD_FLAGS, f"tensor {name!r} flags 0x{flags:02x}: INDEX16 (0x02) is defined only for sparse tensors")
    if sparse and index16 != (index_itemsize(size) == 2):
        width = "uint16 (flag 0x02 set)" if index_itemsize(size) == 2 else "uint32 (flag 0x02 clear)"
        raise _fail(WireFormatError.BAD_FLAGS, f"sparse tensor {name!r} flags 0x{flags:02x}: with {size} entries its indices must be {width}")
    if not sparse and count != size:
        raise _fail(WireFormatError.BAD_SHAPE, f"dense tensor {name!r} declares {count} values but shape {shape} has {size}")
    if sparse and count > size:
        raise _fail(WireFormatError.BAD_INDICES, f"sparse tensor {name!r} declares {count} entries but shape {shape} has {size}")
    indices = None
    if sparse:
        width = index_itemsize(size)
        index_type = "uint16" if width == 2 else "uint32"
        indices = np.frombuffer(r.take(width * count, f"tensor {name!r} indices ({count} x {index_type})"), dtype=f"<u{width}")
        r.padding(width * count, f"tensor {name!r} indices")
        if count:
            if int(indices.max()) >= size:
                at = int(np.argmax(indices >= size))
                raise _fail(WireFormatError.BAD_INDICES, f"sparse tensor {name!r} index {int(indices[at])} at #{at} is out of range for {size} entries")
            step = np.diff(indices.astype(np.int64))
            if np.any(step <= 0):
                at = int(np.argmax(step <= 0)) + 1
                problem = "duplicated" if step[at - 1] == 0 else "unsorted"
                raise _fail(WireFormatError.BAD_INDICES, f"sparse tensor {name!r} indices are {problem} at #{at} ({int(indices[at - 1])} then {int(indices[at])})")
    nbytes = count * dt.itemsize
    values = np.frombuffer(r.take(nbytes, f"tensor {name!r} values ({count} x {dt.newbyteorder('=')}, shape {shape})"), dtype=dt)
    r.padding(nbytes, f"tensor {name!r} values")
    _check_finite_values(name, values)
    values = values.astype(dt.newbyteorder("="), copy=True)
    if sparse:
        return SparseTensor(shape, indices.astype(np.uint32), values)
    return values.reshape(shape)


def check_spec(
    tensors: Mapping[str, np.ndarray | SparseTensor], expected_spec: Mapping[str, tuple[tuple[int, ...], object]]
) -> None:
    """Refuse unless ``tensors`` has exactly the names, shapes and dtypes of ``expected_spec``."""
    missing = sorted(set(expected_spec) - set(tensors))
    extra = sorted(set(tensors) - set(expected_spec))
    if missing or extra:
        raise _fail(WireFormatError.SPEC_MISMATCH, f"tensor names do not match: missing {missing or 'none'}, unexpected {extra or 'none'}")
    for name, (shape, dtype) in expected_spec.items():
        value = tensors[name]
        if tuple(value.shape) != tuple(shape):
            raise _fail(WireFormatError.SPEC_MISMATCH, f"tensor {name!r} has shape {tuple(value.shape)}; expected {tuple(shape)}")
        if np.dtype(value.dtype) != np.dtype(dtype):
            raise _fail(WireFormatError.SPEC_MISMATCH, f"tensor {name!r} has dtype {value.dtype}; expected {np.dtype(dtype)}")


def decode_step_sizes(
    payload: bytes | bytearray | memoryview,
    expected_spec: Mapping[str, tuple[tuple[int, ...], object]],
    *,
    expected_round_id: int | None = None,
    max_size: int = DEFAULT_MAX_PAYLOAD,
) -> dict[str, np.ndarray]:
    """The step sizes of a STEP_SIZES payload: exactly the names and shapes of ``expected_spec`` (the model's
    weights), dense float32, finite and > 0; :class:`WireFormatError` otherwise (``spec-mismatch``,
    ``bad-flags`` for a sparse tensor, ``non-finite``, ``non-positive``)."""
    message = decode_weights(
        payload, _float32_spec(expected_spec), expected_kind=MessageKind.STEP_SIZES, expected_round_id=expected_round_id,
        max_size=max_size,
    )  # fmt: skip
    return _dense_float32(message.tensors, "step sizes", positive=True)


def decode_hypergradient(
    payload: bytes | bytearray | memoryview,
    expected_spec: Mapping[str, tuple[tuple[int, ...], object]],
    *,
    expected_round_id: int | None = None,
    expected_device_id: str | None = None,
    max_size: int = DEFAULT_MAX_PAYLOAD,
) -> DecodedMessage:
    """A HYPERGRADIENT payload checked like :func:`decode_step_sizes` (any sign allowed) and for the sender's id."""
    message = decode_weights(
        payload, _float32_spec(expected_spec), expected_kind=MessageKind.HYPERGRADIENT,
        expected_round_id=expected_round_id, expected_device_id=expected_device_id, max_size=max_size,
    )  # fmt: skip
    _dense_float32(message.tensors, "hypergradient")
    return message


def _float32_spec(spec: Mapping[str, tuple[tuple[int, ...], object]]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The model's names and shapes with float32 values: step sizes and hypergradients are float32 whatever θ is."""
    return {name: (tuple(shape), np.dtype(np.float32)) for name, (shape, _dtype) in spec.items()}
