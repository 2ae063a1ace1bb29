"""Binary tensor payload: round trips, size formula, every refusal, fuzzing."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from edge.wire import (
    DEFAULT_MAX_PAYLOAD,
    MAX_DEVICE_ID_LEN,
    MAX_METRICS,
    MAX_NAME_LEN,
    MAX_TENSORS,
    DType,
    MessageKind,
    SparseTensor,
    WireFormatError,
    decode_weights,
    dtype_code,
    encode_model,
    encode_weights,
    encoded_size,
    read_header,
    top_p_sparsify,
)
from edge.wire.codec import CRC, HEADER, METRIC, TENSOR, pad4

ALL_DTYPES = [np.float32, np.float16, np.int8, np.uint8, np.int16, np.int32]
SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4), (1, 2, 3, 4), (5, 1, 1, 2)]


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.normal(0, 3, size=shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


def refit(payload: bytes | bytearray, **fields: int) -> bytes:
    """Rewrite header fields and the CRC, to reach checks that come after the CRC."""
    out = bytearray(payload)
    names = ["magic", "version", "kind", "flags", "dev_len", "total", "round_id", "num_examples", "tensors", "metrics", "reserved"]
    values = dict(zip(names, HEADER.unpack_from(out, 0)))
    values.update(fields)
    HEADER.pack_into(out, 0, *[values[n] for n in names])
    return fix_crc(out)


def fix_crc(payload: bytes | bytearray) -> bytes:
    out = bytearray(payload)
    CRC.pack_into(out, len(out) - 4, zlib.crc32(bytes(out[:-4])))
    return bytes(out)


def tensor_offset(payload: bytes, index: int = 0) -> int:
    """Byte offset of tensor record #index (walks the header, device id and metrics)."""
    _, _, _, _, dev_len, _, _, _, _, n_metrics, _ = HEADER.unpack_from(payload, 0)
    pos = HEADER.size + pad4(dev_len)
    for _ in range(n_metrics):
        pos += METRIC.size + pad4(payload[pos])
    for _ in range(index):
        name_len, code, flags, ndim, *dims, count = TENSOR.unpack_from(payload, pos)
        itemsize = {1: 4, 2: 2, 3: 1, 4: 1, 5: 2, 6: 4}[code]
        index_bytes = pad4((2 if flags & 2 else 4) * count) if flags & 1 else 0  # flag 0x02: uint16 indices
        pos += TENSOR.size + pad4(name_len) + index_bytes + pad4(count * itemsize)
    return pos


def patch(payload: bytes, offset: int, data: bytes) -> bytes:
    out = bytearray(payload)
    out[offset : offset + len(data)] = data
    return fix_crc(out)


def refusal(payload, code: str, *match: str, **kwargs) -> WireFormatError:
    with pytest.raises(WireFormatError) as info:
        decode_weights(payload, **kwargs)
    assert info.value.code == code, str(info.value)
    for text in match:
        assert text in str(info.value), str(info.value)
    return info.value


@pytest.fixture
def mlp_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {"w0": (1, 40), "b0": (40,), "w1": (40, 40), "b1": (40,), "w2": (40, 1), "b2": (1,)}
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dense_round_trip_every_dtype_and_rank(dtype, shape) -> None:
    rng = np.random.default_rng(1)
    weights = {"t": random_array(rng, shape, dtype), "scalar": np.asarray(rng.normal(), dtype=dtype)}
    payload = encode_weights(weights, round_id=7, device_id="dev-1", num_examples=12)
    message = decode_weights(payload, {k: (v.shape, v.dtype) for k, v in weights.items()})
    assert message.round_id == 7 and message.device_id == "dev-1" and message.num_examples == 12
    assert message.kind is MessageKind.UPDATE and message.version == 1 and message.nbytes == len(payload)
    assert list(message.tensors) == ["t", "scalar"]
    for name, array in weights.items():
        got = message.tensors[name]
        assert got.dtype == array.dtype and got.shape == array.shape
        assert np.array_equal(got, array)
        assert got.flags.writeable  # a copy, not a read-only view of the payload
    assert len(payload) == encoded_size(weights, device_id="dev-1")


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_sparse_round_trip_every_dtype(dtype) -> None:
    rng = np.random.default_rng(2)
    dense = random_array(rng, (4, 5), dtype)
    indices = np.array([0, 3, 7, 19], dtype=np.uint32)
    st = SparseTensor((4, 5), indices, dense.reshape(-1)[indices])
    empty = SparseTensor((3, 0, 2), np.zeros(0, np.uint32), np.zeros(0, dtype))
    none_kept = SparseTensor((6,), np.zeros(0, np.uint32), np.zeros(0, dtype))
    payload = encode_weights({"dense": dense}, round_id=1, sparse={"s": st, "e": empty, "z": none_kept})
    message = decode_weights(payload, {"dense": ((4, 5), dtype), "s": ((4, 5), dtype), "e": ((3, 0, 2), dtype), "z": ((6,), dtype)})
    assert message.sparse == {"s": st, "e": empty, "z": none_kept}
    assert list(message.dense) == ["dense"]
    dense_view = message.to_dense()
    expected = np.zeros(20, dtype=dtype)
    expected[indices] = dense.reshape(-1)[indices]
    assert np.array_equal(dense_view["s"], expected.reshape(4, 5))
    assert np.array_equal(dense_view["z"], np.zeros(6, dtype))
    assert len(payload) == encoded_size({"dense": dense}, sparse={"s": st, "e": empty, "z": none_kept})


def test_top_p_update_round_trip_and_reencoding_is_byte_identical(mlp_weights) -> None:
    sparse = top_p_sparsify(mlp_weights, 0.1)
    payload = encode_weights(None, round_id=4, device_id="sine-3", num_examples=50, metrics={"loss-after": 0.25}, sparse=sparse)
    message = decode_weights(payload, {k: (v.shape, v.dtype) for k, v in mlp_weights.items()}, expected_kind=MessageKind.UPDATE)
    assert message.sparse == sparse and message.metrics == {"loss-after": 0.25}
    again = encode_weights(message.tensors, round_id=4, device_id="sine-3", num_examples=50, metrics=message.metrics)
    assert again == payload
    dense = encode_weights(mlp_weights, round_id=4, device_id="sine-3", num_examples=50, metrics={"loss-after": 0.25})
    assert len(dense) >= 5 * len(payload)  # uint16 indices: 6 bytes per kept entry -> Top-10% is >= 5x smaller


def test_model_message_kind(mlp_weights) -> None:
    payload = encode_model(mlp_weights, round_id=9)
    message = decode_weights(payload, expected_kind=MessageKind.MODEL)
    assert message.kind is MessageKind.MODEL and message.device_id == ""
    refusal(payload, WireFormatError.BAD_KIND, "MODEL", "expected UPDATE", expected_kind=MessageKind.UPDATE)


def test_accepts_bytearray_memoryview_and_big_endian_input() -> None:
    weights = {"w": np.arange(6, dtype=">f4").reshape(2, 3), "i": np.arange(3, dtype=">i2")}
    payload = encode_weights(weights, round_id=0)
    for form in (bytearray(payload), memoryview(payload)):
        message = decode_weights(form)
        assert np.array_equal(message.tensors["w"], weights["w"]) and message.tensors["w"].dtype == np.float32
    assert payload == encode_weights({k: v.astype(v.dtype.newbyteorder("=")) for k, v in weights.items()}, round_id=0)


def test_max_limits_are_accepted() -> None:
    weights = {f"{'n' * (MAX_NAME_LEN - 3)}{i:03d}": np.zeros(1, np.uint8) for i in range(MAX_TENSORS)}
    metrics = {f"m{i}": float(i) for i in range(MAX_METRICS)}
    device_id = "d" * MAX_DEVICE_ID_LEN
    payload = encode_weights(weights, round_id=2**32 - 1, num_examples=2**32 - 1, device_id=device_id, metrics=metrics)
    message = decode_weights(payload)
    assert message.round_id == 2**32 - 1 and message.device_id == device_id and len(message.tensors) == MAX_TENSORS


# ------------------------------------------------------------------ size accounting


def test_size_formula_matches_the_documented_layout() -> None:
    rng = np.random.default_rng(3)
    for trial in range(40):
        weights, sparse = {}, {}
        for i in range(rng.integers(0, 6)):
            dtype = ALL_DTYPES[rng.integers(len(ALL_DTYPES))]
            shape = tuple(int(d) for d in rng.integers(0, 5, size=rng.integers(0, 5)))
            name = "x" * int(rng.integers(1, MAX_NAME_LEN + 1)) + str(i)
            name = name[-MAX_NAME_LEN:]
            array = random_array(rng, shape, dtype)
            if rng.random() < 0.5 and array.size:
                keep = np.sort(rng.choice(array.size, size=int(rng.integers(0, array.size + 1)), replace=False)).astype(np.uint32)
                sparse[name] = SparseTensor(shape, keep, array.reshape(-1)[keep])
            else:
                weights[name] = array
        device_id = "d" * int(rng.integers(0, 10))
        metrics = {"m" * int(k): 1.0 for k in range(1, rng.integers(1, 5))}
        payload = encode_weights(weights, round_id=trial, device_id=device_id, metrics=metrics, sparse=sparse)
        expected = 24 + pad4(len(device_id)) + sum(8 + pad4(len(m)) for m in metrics) + 4
        for name, a in weights.items():
            expected += 24 + pad4(len(name)) + pad4(a.size * a.itemsize)
        for name, st in sparse.items():
            index_bytes = 2 if st.size <= 65536 else 4  # uint16 indices up to 65,536 entries
            expected += 24 + pad4(len(name)) + pad4(index_bytes * st.nnz) + pad4(st.nnz * st.values.itemsize)
        assert len(payload) == expected == encoded_size(weights, sparse=sparse, device_id=device_id, metrics=metrics)
        assert len(payload) % 4 == 0
        assert decode_weights(payload).nbytes == len(payload)


def test_every_array_starts_4_byte_aligned(mlp_weights) -> None:
    payload = encode_weights(None, round_id=0, device_id="abc", metrics={"l": 1.0}, sparse=top_p_sparsify(mlp_weights, 0.2))
    for i in range(len(mlp_weights)):
        assert tensor_offset(payload, i) % 4 == 0


def test_mlp_dense_payload_size(mlp_weights) -> None:
    # 1761 float32 values = 7044 bytes; overhead: 24 header + 6 * (24 + 4) records + 4 CRC = 196
    assert len(encode_weights(mlp_weights, round_id=0)) == 7044 + 196


# ------------------------------------------------------------------ refusals: framing


def test_refuses_non_bytes() -> None:
    refusal("TFWP", WireFormatError.BAD_TYPE, "must be bytes")


def test_refuses_oversized_before_looking_at_the_body(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=0)
    refusal(payload, WireFormatError.OVERSIZED, f"{len(payload)} bytes", "cap is 1000", max_size=1000)
    # a huge buffer of garbage is refused on its length alone, not parsed
    refusal(b"\xff" * (DEFAULT_MAX_PAYLOAD + 1), WireFormatError.OVERSIZED, "cap is 65536")
    # the declared length is checked against the cap before anything after the header
    header_only = refit(payload, total=DEFAULT_MAX_PAYLOAD + 8)
    refusal(header_only, WireFormatError.OVERSIZED, "header declares 65544 bytes")


def test_encoder_refuses_oversized() -> None:
    with pytest.raises(WireFormatError, match="oversized: payload would be") as info:
        encode_weights({"w": np.zeros(20_000, np.float32)}, round_id=0)
    assert info.value.code == WireFormatError.OVERSIZED
    assert len(encode_weights({"w": np.zeros(20_000, np.float32)}, round_id=0, max_size=100_000)) == 80_056


def test_refuses_bad_magic(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=0)
    refusal(b"XFWP" + payload[4:], WireFormatError.BAD_MAGIC, "b'XFWP'")
    refusal(b"{}", WireFormatError.BAD_MAGIC)  # e.g. JSON published on a binary topic
    refusal(b"", WireFormatError.TRUNCATED)


def test_refuses_unsupported_version(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=0)
    refusal(refit(payload, version=2), WireFormatError.BAD_VERSION, "version 2")


@pytest.mark.parametrize("cut", [1, 4, 23, 27, 100])
def test_refuses_truncated(mlp_weights, cut) -> None:
    payload = encode_weights(mlp_weights, round_id=0)
    refusal(payload[:-cut], WireFormatError.TRUNCATED, f"payload is {len(payload) - cut} bytes but its header declares {len(payload)}")
    refusal(payload[:cut], WireFormatError.TRUNCATED, f"payload is {cut} bytes")


def test_refuses_trailing_bytes(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=0)
    refusal(payload + b"\x00", WireFormatError.TRAILING_BYTES, f"declares {len(payload)}")


def test_refuses_wrong_crc(mlp_weights) -> None:
    payload = bytearray(encode_weights(mlp_weights, round_id=0))
    payload[100] ^= 0x01
    refusal(bytes(payload), WireFormatError.BAD_CRC, "CRC32 is 0x")


def test_crc_is_standard_crc32_over_everything_but_the_trailer(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=0)
    assert struct.unpack("<I", payload[-4:])[0] == zlib.crc32(payload[:-4])
    import binascii

    assert binascii.crc32(payload[:-4]) == zlib.crc32(payload[:-4])  # IEEE 802.3, as in most C crc32()


def test_refuses_header_fields(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=0)
    refusal(refit(payload, kind=5), WireFormatError.BAD_KIND, "unknown message kind 5")
    refusal(refit(payload, flags=0x80), WireFormatError.BAD_FLAGS, "0x80")
    refusal(refit(payload, reserved=1), WireFormatError.BAD_FIELD, "reserved")
    refusal(refit(payload, tensors=MAX_TENSORS + 1), WireFormatError.TOO_MANY, "65 tensors")
    refusal(refit(payload, metrics=MAX_METRICS + 1), WireFormatError.TOO_MANY, "17 metrics")
    refusal(refit(payload, dev_len=MAX_DEVICE_ID_LEN + 1), WireFormatError.BAD_DEVICE_ID, "length 65")
    refusal(refit(payload, tensors=7), WireFormatError.BAD_SHAPE, "tensor #6 record needs 24 bytes but only 0 remain")
    refusal(refit(payload, tensors=5), WireFormatError.TRAILING_BYTES, "unparsed bytes after the last tensor")


def test_refuses_bad_device_id_bytes() -> None:
    payload = encode_weights({"w": np.zeros(2, np.float32)}, round_id=0, device_id="dev1")
    refusal(patch(payload, 24, b"de/1"), WireFormatError.BAD_DEVICE_ID, "de/1")
    refusal(patch(payload, 24, b"d\xffv1"), WireFormatError.BAD_DEVICE_ID)


def test_refuses_foreign_device_and_wrong_round(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=5, device_id="sine-1")
    assert decode_weights(payload, expected_device_id="sine-1", expected_round_id=5).device_id == "sine-1"
    refusal(payload, WireFormatError.FOREIGN_DEVICE, "from device 'sine-1', expected 'sine-2'", expected_device_id="sine-2")
    refusal(encode_weights(mlp_weights, round_id=5), WireFormatError.FOREIGN_DEVICE, "from device ''", expected_device_id="sine-1")
    refusal(payload, WireFormatError.WRONG_ROUND, "for round 5, expected round 6", expected_round_id=6)
    with pytest.raises(WireFormatError, match="wrong-round"):
        read_header(payload, expected_round_id=4)


def test_read_header_is_cheap_routing(mlp_weights) -> None:
    payload = encode_weights(mlp_weights, round_id=12, device_id="sine-9", num_examples=3)
    header = read_header(payload)
    assert (header.round_id, header.kind, header.tensor_count, header.total_len) == (12, MessageKind.UPDATE, 6, len(payload))


# ------------------------------------------------------------------ refusals: tensor records


def dense_payload(dtype=np.float32, shape=(2, 3), name="w") -> bytes:
    return encode_weights({name: np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)}, round_id=0)


def sparse_payload(indices=(1, 4, 5), shape=(2, 3)) -> bytes:
    idx = np.array(indices, np.uint32)
    return encode_weights(None, round_id=0, sparse={"s": SparseTensor(shape, idx, np.ones(len(idx), np.float32))})


def test_refuses_unknown_dtype() -> None:
    payload = dense_payload()
    for code in (0, 7, 255):
        refusal(patch(payload, 24 + 1, bytes([code])), WireFormatError.BAD_DTYPE, f"unknown dtype code {code}")


def test_refuses_undefined_tensor_flags() -> None:
    refusal(patch(dense_payload(), 24 + 2, b"\x02"), WireFormatError.BAD_FLAGS, "tensor 'w' flags 0x02")


def test_refuses_rank_and_unused_dimensions() -> None:
    payload = dense_payload()
    refusal(patch(payload, 24 + 3, b"\x05"), WireFormatError.BAD_SHAPE, "rank 5 > 4")
    refusal(patch(payload, 24 + 4 + 8, struct.pack("<I", 1)), WireFormatError.BAD_SHAPE, "non-zero unused dimensions")


def test_refuses_shape_byte_count_mismatch() -> None:
    payload = dense_payload()
    # shape (2, 3) -> (2, 4): 8 values declared by the shape, 6 by the count
    refusal(patch(payload, 24 + 8, struct.pack("<I", 4)), WireFormatError.BAD_SHAPE, "declares 6 values but shape (2, 4) has 8")
    # count and shape agree on (2, 4) but only 24 value bytes are present
    bigger = patch(patch(payload, 24 + 8, struct.pack("<I", 4)), 24 + 20, struct.pack("<I", 8))
    refusal(bigger, WireFormatError.BAD_SHAPE, "values (8 x float32, shape (2, 4)) needs 32 bytes but only 24 remain")
    # (2, 2): fewer values than bytes present
    smaller = patch(patch(payload, 24 + 8, struct.pack("<I", 2)), 24 + 20, struct.pack("<I", 4))
    refusal(smaller, WireFormatError.TRAILING_BYTES, "8 unparsed bytes")
    # a dtype change changes the byte count too
    refusal(patch(payload, 24 + 1, bytes([DType.INT16])), WireFormatError.TRAILING_BYTES)


def test_refuses_bad_names() -> None:
    payload = encode_weights({"ab": np.zeros(1, np.float32), "cd": np.zeros(1, np.float32)}, round_id=0)
    refusal(patch(payload, 24 + 24, b"a "), WireFormatError.BAD_NAME, "b'a '")
    refusal(patch(payload, 24 + 24 + 2, b"\x01"), WireFormatError.BAD_PADDING, "padding after tensor #0 name")
    refusal(patch(payload, 24 + 24 + 4 + 4 + 24, b"ab"), WireFormatError.DUPLICATE_NAME, "'ab' appears twice")
    refusal(patch(payload, 24, b"\x00"), WireFormatError.BAD_NAME)


def test_refuses_non_zero_value_padding() -> None:
    payload = encode_weights({"u": np.arange(3, dtype=np.uint8)}, round_id=0)
    refusal(patch(payload, 24 + 24 + 4 + 3, b"\x01"), WireFormatError.BAD_PADDING, "padding after tensor 'u' values")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_refuses_non_finite_values(bad, dtype) -> None:
    payload = dense_payload(dtype)
    value = np.array([bad], dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    offset = 24 + 24 + 4 + 2 * np.dtype(dtype).itemsize
    refusal(patch(payload, offset, value), WireFormatError.NON_FINITE, "tensor 'w' has 1 NaN/Inf value(s), first at value #2")
    with pytest.raises(WireFormatError, match="NaN/Inf") as info:
        encode_weights({"w": np.array([1.0, bad], dtype=dtype)}, round_id=0)
    assert info.value.code == WireFormatError.NON_FINITE


def test_refuses_non_finite_sparse_values_and_metrics() -> None:
    payload = sparse_payload()
    # three uint16 indices take 6 bytes, padded to 8, before the values
    refusal(patch(payload, 24 + 24 + 4 + 8, np.array([np.nan], "<f4").tobytes()), WireFormatError.NON_FINITE)
    with_metric = encode_weights({"w": np.zeros(1, np.float32)}, round_id=0, metrics={"loss": 1.0})
    refusal(patch(with_metric, 24 + 4, np.array([np.inf], "<f4").tobytes()), WireFormatError.NON_FINITE, "metric 'loss'")
    with pytest.raises(WireFormatError, match="not a finite float32"):
        encode_weights({}, round_id=0, metrics={"loss": 1e39})


def test_refuses_sparse_index_faults() -> None:
    base = 24 + 24 + 4  # first index (uint16: the tensor has 6 entries)
    payload = sparse_payload((1, 4, 5))
    refusal(patch(payload, base + 4, struct.pack("<H", 6)), WireFormatError.BAD_INDICES, "index 6 at #2 is out of range for 6 entries")
    refusal(patch(payload, base + 4, struct.pack("<H", 2**16 - 1)), WireFormatError.BAD_INDICES, "out of range")
    refusal(patch(payload, base + 2, struct.pack("<H", 0)), WireFormatError.BAD_INDICES, "unsorted at #1 (1 then 0)")
    refusal(patch(payload, base + 2, struct.pack("<H", 1)), WireFormatError.BAD_INDICES, "duplicated at #1 (1 then 1)")
    refusal(patch(payload, base + 6, b"\x01"), WireFormatError.BAD_PADDING, "padding after tensor 's' indices")
    # more entries declared than the dense shape has
    refusal(patch(payload, 24 + 4, struct.pack("<II", 1, 2)), WireFormatError.BAD_INDICES, "declares 3 entries but shape (1, 2) has 2")


def test_index_width_follows_the_tensor_size_and_is_checked() -> None:
    small = sparse_payload((1, 4, 5))
    assert small[24 + 2] == 0x03  # SPARSE | INDEX16
    refusal(patch(small, 24 + 2, b"\x01"), WireFormatError.BAD_FLAGS, "with 6 entries its indices must be uint16 (flag 0x02 set)")
    big_shape = (65537,)
    idx = np.array([0, 65536], np.uint32)
    big = encode_weights(None, round_id=0, sparse={"s": SparseTensor(big_shape, idx, np.ones(2, np.float32))})
    assert big[24 + 2] == 0x01 and len(big) == 24 + 24 + 4 + 8 + 8 + 4  # uint32 indices above 65,536 entries
    assert np.array_equal(decode_weights(big).tensors["s"].indices, idx)
    refusal(patch(big, 24 + 2, b"\x03"), WireFormatError.BAD_FLAGS, "with 65537 entries its indices must be uint32 (flag 0x02 clear)")
    # exactly 65,536 entries still fits uint16 (largest index 65,535)
    edge = encode_weights(None, round_id=0, sparse={"s": SparseTensor((256, 256), np.array([65535], np.uint32), np.ones(1, np.float32))})
    assert edge[24 + 2] == 0x03 and decode_weights(edge).tensors["s"].indices.tolist() == [65535]


def test_top_10_percent_of_the_sine_mlp_is_at_least_5x_smaller(mlp_weights) -> None:
    """The decision behind uint16 indices: >= 5x uplink reduction at Top-10% on the 1,761-weight MLP."""
    delta = {k: np.random.default_rng(0).normal(size=v.shape).astype(np.float32) for k, v in mlp_weights.items()}
    sparse = encode_weights(None, round_id=1, device_id="sine-1234", num_examples=10, sparse=top_p_sparsify(delta, 0.1))
    dense = encode_weights(delta, round_id=1, device_id="sine-1234", num_examples=10)
    assert sum(v.size for v in mlp_weights.values()) == 1761
    assert len(dense) / len(sparse) >= 5.0


def test_refuses_spec_mismatch(mlp_weights) -> None:
    spec = {k: (v.shape, v.dtype) for k, v in mlp_weights.items()}
    payload = encode_weights(mlp_weights, round_id=0)
    decode_weights(payload, spec)
    missing = dict(spec)
    missing["head"] = ((3,), np.float32)
    refusal(payload, WireFormatError.SPEC_MISMATCH, "missing ['head']", expected_spec=missing)
    fewer = {k: v for k, v in spec.items() if k != "b2"}
    refusal(payload, WireFormatError.SPEC_MISMATCH, "unexpected ['b2']", expected_spec=fewer)
    reshaped = dict(spec, w1=((40, 41), np.float32))
    refusal(payload, WireFormatError.SPEC_MISMATCH, "'w1' has shape (40, 40); expected (40, 41)", expected_spec=reshaped)
    retyped = dict(spec, b0=((40,), np.int8))
    refusal(payload, WireFormatError.SPEC_MISMATCH, "'b0' has dtype float32; expected int8", expected_spec=retyped)
    sparse = encode_weights(None, round_id=0, sparse=top_p_sparsify(mlp_weights, 0.05))
    decode_weights(sparse, spec)  # sparse tensors are checked against their dense shape
    refusal(sparse, WireFormatError.SPEC_MISMATCH, expected_spec=reshaped)


# ------------------------------------------------------------------ encoder refusals


@pytest.mark.parametrize(
    "kwargs, code, text",
    [
        ({"weights": {"w": np.zeros(2, np.float64)}}, WireFormatError.BAD_DTYPE, "float64 has no wire code"),
        ({"weights": {"w": np.zeros(2, bool)}}, WireFormatError.BAD_DTYPE, "bool"),
        ({"weights": {"w": np.zeros((1,) * 5, np.float32)}}, WireFormatError.BAD_SHAPE, "rank 5"),
        ({"weights": {"": np.zeros(1, np.float32)}}, WireFormatError.BAD_NAME, "1..32"),
        ({"weights": {"a b": np.zeros(1, np.float32)}}, WireFormatError.BAD_NAME, "'a b'"),
        ({"weights": {"x" * 33: np.zeros(1, np.float32)}}, WireFormatError.BAD_NAME, ""),
        ({"weights": {f"w{i}": np.zeros(1, np.int8) for i in range(65)}}, WireFormatError.TOO_MANY, "65 tensors"),
        ({"weights": {"w": np.zeros(1, np.float32)}, "round_id": -1}, WireFormatError.BAD_FIELD, "round_id"),
        ({"weights": {"w": np.zeros(1, np.float32)}, "round_id": 2**32}, WireFormatError.BAD_FIELD, "round_id"),
        ({"weights": {"w": np.zeros(1, np.float32)}, "num_examples": True}, WireFormatError.BAD_FIELD, "num_examples"),
        ({"weights": {"w": np.zeros(1, np.float32)}, "device_id": "a/b"}, WireFormatError.BAD_DEVICE_ID, "'/'"),
        ({"weights": {"w": np.zeros(1, np.float32)}, "kind": 9}, WireFormatError.BAD_KIND, "9"),
        ({"weights": {"w": np.zeros(1)}, "sparse": {"w": None}}, WireFormatError.DUPLICATE_NAME, "['w']"),
        ({"weights": {}, "sparse": {"w": np.zeros(1)}}, WireFormatError.BAD_TYPE, "SparseTensor"),
        ({"weights": {}, "metrics": {f"m{i}": 0.0 for i in range(17)}}, WireFormatError.TOO_MANY, "17 metrics"),
        ({"weights": {}, "metrics": {"m": "x"}}, WireFormatError.BAD_FIELD, "must be a number"),
    ],
)
def test_encoder_refusals(kwargs, code, text) -> None:
    kwargs = {"round_id": 0, **kwargs}
    with pytest.raises(WireFormatError) as info:
        encode_weights(kwargs.pop("weights"), **kwargs)
    assert info.value.code == code and text in str(info.value), str(info.value)


def test_dtype_codes() -> None:
    assert [dtype_code(d) for d in ALL_DTYPES] == [1, 2, 3, 4, 5, 6]


# ------------------------------------------------------------------ fuzzing


def fuzz_corpus() -> list[bytes]:
    rng = np.random.default_rng(5)
    weights = {f"t{i}": random_array(rng, shape, dtype) for i, (shape, dtype) in enumerate(zip(SHAPES, ALL_DTYPES * 2))}
    delta = {"w": rng.normal(size=(8, 8)).astype(np.float32), "b": rng.normal(size=8).astype(np.float16)}
    return [
        encode_weights(weights, round_id=3, device_id="fuzz-1", num_examples=9, metrics={"loss": 0.5}),
        encode_weights(None, round_id=4, sparse=top_p_sparsify(delta, 0.3), metrics={"a": 1.0, "bb": 2.0}),
        encode_model({"s": np.float32(1.5), "e": np.zeros((0, 3), np.int8)}, round_id=5),
    ]


def test_every_single_byte_corruption_is_refused() -> None:
    rng = np.random.default_rng(6)
    for payload in fuzz_corpus():
        for position in range(len(payload)):
            corrupted = bytearray(payload)
            corrupted[position] ^= int(rng.integers(1, 256))
            with pytest.raises(WireFormatError):
                decode_weights(bytes(corrupted))


def test_every_truncation_and_extension_is_refused() -> None:
    for payload in fuzz_corpus():
        for length in range(len(payload)):
            with pytest.raises(WireFormatError):
                decode_weights(payload[:length])
        for extra in (b"\x00", b"\x00" * 4, payload):
            with pytest.raises(WireFormatError):
                decode_weights(payload + extra)


def test_random_multi_byte_corruptions_are_refused() -> None:
    rng = np.random.default_rng(7)
    for payload in fuzz_corpus():
        for _ in range(500):
            corrupted = bytearray(payload)
            for position in rng.integers(0, len(payload), size=int(rng.integers(2, 9))):
                corrupted[position] = int(rng.integers(0, 256))
            if bytes(corrupted) == payload:
                continue
            with pytest.raises(WireFormatError):
                decode_weights(bytes(corrupted))


def test_corruptions_behind_a_valid_crc_raise_only_wire_errors_or_decode_faithfully() -> None:
    """A sender with a broken encoder (valid CRC, bad body) never gets another exception type,
    and whatever is accepted is exactly what the bytes say (re-encoding reproduces them)."""
    rng = np.random.default_rng(8)
    accepted = refused = 0
    for payload in fuzz_corpus():
        for _ in range(1500):
            corrupted = bytearray(payload)
            for position in rng.integers(0, len(payload) - 4, size=int(rng.integers(1, 4))):
                corrupted[position] = int(rng.integers(0, 256))
            corrupted = fix_crc(corrupted)
            try:
                message = decode_weights(corrupted)
            except WireFormatError:
                refused += 1
                continue
            accepted += 1
            again = encode_weights(
                message.tensors,
                round_id=message.round_id,
                kind=message.kind,
                device_id=message.device_id,
                num_examples=message.num_examples,
                metrics=message.metrics,
            )
            assert again == corrupted
    assert accepted > 100 and refused > 100


def test_random_garbage_is_refused() -> None:
    rng = np.random.default_rng(9)
    for _ in range(2000):
        garbage = rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        if rng.random() < 0.5:
            garbage = b"TFWP\x01" + garbage
        with pytest.raises(WireFormatError):
            decode_weights(garbage)


def test_edge_wire_imports_without_tensorflow_or_flower() -> None:
    code = (
        "import sys, edge.wire, edge.wire.control, edge.wire.topics;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'flwr', 'ai_edge_litert', 'tflite_runtime', 'pydantic')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
