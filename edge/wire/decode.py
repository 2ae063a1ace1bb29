"""Wire protocol v1 decoder: check a payload in the order of ``docs/protocol.md`` and return owned arrays.

Decoding checks, in this order, and refuses with :class:`WireFormatError`:
type, size cap (on the received length, then on the declared length, before
the body is touched), magic, minimum length, version, declared length vs.
received length (truncated / trailing bytes), CRC32, header fields, then each
record (names, dtype, rank and shape, byte counts, zero padding, sparse
indices, NaN/Inf), and finally the optional expected spec. The cheap checks
come first so a late or hostile payload costs little.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge.wire.errors import WireFormatError
from edge.wire.layout import (
    _WIRE_DTYPES,
    CRC,
    DEFAULT_MAX_PAYLOAD,
    FLAG_INDEX16,
    FLAG_SPARSE,
    HEADER,
    MAGIC,
    MAX_DEVICE_ID_LEN,
    MAX_METRICS,
    MAX_NAME_LEN,
    MAX_RANK,
    MAX_TENSORS,
    MESSAGE_FLAGS,
    METRIC,
    SUPPORTED_VERSIONS,
    TENSOR,
    TENSOR_FLAGS,
    MessageKind,
    _check_finite_values,
    _dense_float32,
    check_device_id,
    index_itemsize,
    pad4,
)
from edge.wire.sparse import SparseTensor


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
