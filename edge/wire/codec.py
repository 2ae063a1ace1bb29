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

The implementation is split by job: :mod:`edge.wire.layout` (constants,
structs, dtype codes, name and id rules), :mod:`edge.wire.encode` and
:mod:`edge.wire.decode`. This module is the one name callers import; it
re-exports every public name of the three (and the few private helpers other
wire modules use), so ``from edge.wire.codec import ...`` keeps working.
"""

from __future__ import annotations

from edge.wire.decode import (
    DecodedMessage,
    Header,
    check_spec,
    decode_hypergradient,
    decode_step_sizes,
    decode_weights,
    read_header,
)
from edge.wire.encode import (
    encode_hypergradient,
    encode_model,
    encode_step_sizes,
    encode_weights,
    encoded_size,
)
from edge.wire.layout import (  # _WIRE_DTYPES and _is_name: edge.wire.control imports them from here
    _WIRE_DTYPES,
    CRC,
    DEFAULT_MAX_PAYLOAD,
    FLAG_INDEX16,
    FLAG_SPARSE,
    HEADER,
    INDEX16_MAX_ENTRIES,
    MAGIC,
    MAX_DEVICE_ID_LEN,
    MAX_METRICS,
    MAX_NAME_LEN,
    MAX_RANK,
    MAX_ROUND_ID,
    MAX_TENSORS,
    MESSAGE_FLAGS,
    METRIC,
    SUPPORTED_VERSIONS,
    TENSOR,
    TENSOR_FLAGS,
    VERSION,
    DType,
    MessageKind,
    _is_name,
    check_device_id,
    check_name,
    dtype_code,
    index_itemsize,
    pad4,
    wire_dtype,
)

__all__ = [
    "CRC", "DEFAULT_MAX_PAYLOAD", "FLAG_INDEX16", "FLAG_SPARSE", "HEADER", "INDEX16_MAX_ENTRIES", "MAGIC",
    "MAX_DEVICE_ID_LEN", "MAX_METRICS", "MAX_NAME_LEN", "MAX_RANK", "MAX_ROUND_ID", "MAX_TENSORS", "MESSAGE_FLAGS",
    "METRIC", "SUPPORTED_VERSIONS", "TENSOR", "TENSOR_FLAGS", "VERSION", "DType", "DecodedMessage", "Header",
    "MessageKind", "check_device_id", "check_name", "check_spec", "decode_hypergradient", "decode_step_sizes",
    "decode_weights", "dtype_code", "encode_hypergradient", "encode_model", "encode_step_sizes", "encode_weights",
    "encoded_size", "index_itemsize", "pad4", "read_header", "wire_dtype",
]
