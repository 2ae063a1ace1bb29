"""Wire protocol v1 encoder: named dense or sparse tensors and metrics into one checked payload.

Refuses, with :class:`WireFormatError`, anything the decoder would refuse, so a
device or server never sends bytes its peer drops; :func:`encoded_size` is the
length formula of ``docs/protocol.md``, used to book bytes without encoding.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

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
    MAX_METRICS,
    MAX_RANK,
    MAX_ROUND_ID,
    MAX_TENSORS,
    MESSAGE_FLAGS,
    METRIC,
    TENSOR,
    VERSION,
    MessageKind,
    _check_finite_values,
    _dense_float32,
    check_device_id,
    check_name,
    dtype_code,
    index_itemsize,
    pad4,
)
from edge.wire.sparse import SparseTensor


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
