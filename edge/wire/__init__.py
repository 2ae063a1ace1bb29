"""TinyFleet wire protocol v1, shared by the server, Linux devices and simulated firmware.

- :mod:`edge.wire.codec`: binary tensor payload (header, named dense/sparse tensors, CRC32, size cap);
  MODEL/UPDATE and, for meta-learned step sizes, STEP_SIZES/HYPERGRADIENT
- :mod:`edge.wire.sparse`: Top-P% sparsification and sparse application of updates
- :mod:`edge.wire.topics`: MQTT topic layout, Last Will, subscriptions, broker ACL patterns
- :mod:`edge.wire.control`: strict JSON control messages (task assignment, telemetry, announce)

The specification is ``docs/protocol.md``. Only numpy and the standard library are used.
"""

from edge.wire.codec import (
    DEFAULT_MAX_PAYLOAD,
    MAGIC,
    MAX_DEVICE_ID_LEN,
    MAX_METRICS,
    MAX_NAME_LEN,
    MAX_RANK,
    MAX_TENSORS,
    VERSION,
    DecodedMessage,
    DType,
    Header,
    MessageKind,
    check_device_id,
    check_spec,
    decode_hypergradient,
    decode_step_sizes,
    decode_weights,
    dtype_code,
    encode_hypergradient,
    encode_model,
    encode_step_sizes,
    encode_weights,
    encoded_size,
    read_header,
    wire_dtype,
)
from edge.wire.control import TaskAssignment, encode_telemetry, parse_announce, parse_telemetry
from edge.wire.errors import ControlMessageError, WireFormatError
from edge.wire.sparse import SparseTensor, densify, top_p_count, top_p_sparsify
from edge.wire.topics import (
    PREFIX,
    Channel,
    LastWill,
    device_subscriptions,
    device_topic,
    last_will,
    parse_device_topic,
    parse_status,
    server_subscriptions,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD", "MAGIC", "MAX_DEVICE_ID_LEN", "MAX_METRICS", "MAX_NAME_LEN", "MAX_RANK", "MAX_TENSORS",
    "VERSION", "DecodedMessage", "DType", "Header", "MessageKind", "check_device_id", "check_spec", "decode_hypergradient",
    "decode_step_sizes", "decode_weights", "dtype_code", "encode_hypergradient", "encode_model", "encode_step_sizes",
    "encode_weights", "encoded_size", "read_header", "wire_dtype",
    "TaskAssignment", "encode_telemetry", "parse_announce", "parse_telemetry",
    "ControlMessageError", "WireFormatError",
    "SparseTensor", "densify", "top_p_count", "top_p_sparsify",
    "PREFIX", "Channel", "LastWill", "device_subscriptions", "device_topic", "last_will", "parse_device_topic",
    "parse_status", "server_subscriptions",
]
