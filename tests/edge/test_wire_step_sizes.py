"""STEP_SIZES and HYPERGRADIENT payloads (wire kinds 3 and 4): round trips, refusals, the documented bytes,
the C parser sketch, and frames without step sizes unchanged."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from edge.wire import MessageKind, SparseTensor, WireFormatError, decode_hypergradient, decode_step_sizes
from edge.wire import decode_weights, encode_hypergradient, encode_model, encode_step_sizes, encode_weights, read_header
from tests.edge.test_wire_c import c_parser, doc_hexdump, python_view, run_c  # noqa: F401 (c_parser is a fixture)

SHAPES = {"w0": (1, 40), "b0": (40,), "w1": (40, 1), "b1": (1,)}
SPEC = {name: (shape, np.dtype(np.float32)) for name, shape in SHAPES.items()}


def scales(value: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: (value * np.exp(rng.normal(scale=0.3, size=shape))).astype(np.float32) for name, shape in SHAPES.items()}


def with_crc(payload: bytes | bytearray) -> bytes:
    body = bytes(payload[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def first_value_offset(payload: bytes) -> int:
    """Where the first tensor's values start (no device id, no metrics, dense: header + record + name)."""
    name_len = payload[24]
    return 24 + 24 + ((name_len + 3) & ~3)


def test_step_sizes_round_trip_like_a_model_with_another_kind():
    sent = scales()
    payload = encode_step_sizes(sent, round_id=7)
    header = read_header(payload)
    assert (header.kind, header.round_id, header.device_id_len, header.num_examples) == (MessageKind.STEP_SIZES, 7, 0, 0)
    received = decode_step_sizes(payload, SPEC, expected_round_id=7)
    assert list(received) == list(sent)
    for name in sent:
        np.testing.assert_array_equal(received[name], sent[name])
        assert received[name].dtype == np.float32
    # the same bytes as a MODEL of the same arrays but for the kind byte (and so the CRC)
    model = encode_model(sent, round_id=7)
    assert len(payload) == len(model) and payload[5] == 3 and model[5] == 1 and payload[6:-4] == model[6:-4]


def test_step_sizes_of_a_float16_model_are_still_float32():
    spec = {"w": ((2,), np.dtype(np.float16))}
    payload = encode_step_sizes({"w": np.array([0.5, 2.0], np.float32)}, round_id=1)
    assert decode_step_sizes(payload, spec)["w"].dtype == np.float32


def test_hypergradient_round_trip():
    gradient = {name: -v + 0.5 for name, v in scales().items()}  # any sign
    payload = encode_hypergradient(gradient, round_id=9, device_id="sine-5", num_examples=26,
                                   metrics={"step-size-query-loss": 3.25})  # fmt: skip
    message = decode_hypergradient(payload, SPEC, expected_round_id=9, expected_device_id="sine-5")
    assert (message.kind, message.device_id, message.num_examples) == (MessageKind.HYPERGRADIENT, "sine-5", 26)
    assert message.metrics == {"step-size-query-loss": 3.25}
    for name in gradient:
        np.testing.assert_array_equal(message.tensors[name], gradient[name])


def refused(code: str, call, *args, **kwargs) -> str:
    with pytest.raises(WireFormatError) as info:
        call(*args, **kwargs)
    assert info.value.code == code, str(info.value)
    return str(info.value)


def test_the_encoders_refuse_what_a_receiver_would():
    bad = scales()
    bad["b0"][3] = 0.0
    assert "'b0' value #3 is 0.0" in refused(WireFormatError.NON_POSITIVE, encode_step_sizes, bad, round_id=1)
    bad["b0"][3] = -1.0
    refused(WireFormatError.NON_POSITIVE, encode_step_sizes, bad, round_id=1)
    refused(WireFormatError.SPEC_MISMATCH, encode_step_sizes, {"w": np.ones(2)}, round_id=1)  # float64
    refused(WireFormatError.NON_FINITE, encode_step_sizes, {"w": np.array([1.0, np.nan], np.float32)}, round_id=1)
    sparse = {"w": SparseTensor((4,), np.array([1], np.uint32), np.array([1.0], np.float32))}
    refused(WireFormatError.BAD_FLAGS, encode_step_sizes, sparse, round_id=1)
    gradient = {"w": np.array([1.0, -np.inf], np.float32)}
    refused(WireFormatError.NON_FINITE, encode_hypergradient, gradient, round_id=1, device_id="d", num_examples=1)
    ok = {"w": np.array([1.0, -1.0], np.float32)}
    refused(WireFormatError.BAD_DEVICE_ID, encode_hypergradient, ok, round_id=1, device_id="", num_examples=1)


@pytest.mark.parametrize(
    "case, code, text",
    [
        ("non-positive", WireFormatError.NON_POSITIVE, "step sizes must be > 0"),
        ("nan", WireFormatError.NON_FINITE, "NaN/Inf"),
        ("shape", WireFormatError.SPEC_MISMATCH, "'w1' has shape (40, 2); expected (40, 1)"),
        ("missing", WireFormatError.SPEC_MISMATCH, "missing ['b1']"),
        ("dtype", WireFormatError.SPEC_MISMATCH, "'b1' has dtype float16; expected float32"),
        ("sparse", WireFormatError.BAD_FLAGS, "sent dense"),
        ("model", WireFormatError.BAD_KIND, "kind is MODEL, expected STEP_SIZES"),
        ("round", WireFormatError.WRONG_ROUND, "for round 3, expected round 4"),
    ],
)
def test_a_device_refuses_bad_step_sizes_naming_the_fault(case, code, text):
    good = scales()
    if case == "non-positive":  # bytes a buggy server could send: patch a value behind a valid CRC
        payload = bytearray(encode_step_sizes(good, round_id=3))
        payload[first_value_offset(payload) : first_value_offset(payload) + 4] = struct.pack("<f", -0.5)
        payload = with_crc(payload)
    elif case == "nan":
        payload = bytearray(encode_step_sizes(good, round_id=3))
        payload[first_value_offset(payload) : first_value_offset(payload) + 4] = struct.pack("<f", float("nan"))
        payload = with_crc(payload)
    elif case == "shape":
        payload = encode_step_sizes({**good, "w1": np.ones((40, 2), np.float32)}, round_id=3)
    elif case == "missing":
        payload = encode_step_sizes({k: v for k, v in good.items() if k != "b1"}, round_id=3)
    elif case == "dtype":
        payload = encode_weights({**good, "b1": good["b1"].astype(np.float16)}, round_id=3, kind=MessageKind.STEP_SIZES)
    elif case == "sparse":
        dense = {k: v for k, v in good.items() if k != "b0"}
        all_entries = SparseTensor((40,), np.arange(40, dtype=np.uint32), good["b0"])
        payload = encode_weights(dense, sparse={"b0": all_entries}, round_id=3, kind=MessageKind.STEP_SIZES)
    elif case == "model":
        payload = encode_model(good, round_id=3)
    else:
        payload = encode_step_sizes(good, round_id=3)
    expected_round = 4 if case == "round" else 3
    assert text in refused(code, decode_step_sizes, payload, SPEC, expected_round_id=expected_round)


def test_a_server_refuses_bad_hypergradients_naming_the_fault():
    gradient = scales(-1.0)
    payload = encode_hypergradient(gradient, round_id=5, device_id="sine-5", num_examples=9)
    refused(WireFormatError.FOREIGN_DEVICE, decode_hypergradient, payload, SPEC, expected_device_id="sine-6")
    refused(WireFormatError.WRONG_ROUND, decode_hypergradient, payload, SPEC, expected_round_id=6)
    refused(WireFormatError.SPEC_MISMATCH, decode_hypergradient, payload, {**SPEC, "w1": ((40, 2), np.float32)})
    update = encode_weights(gradient, round_id=5, device_id="sine-5")
    refused(WireFormatError.BAD_KIND, decode_hypergradient, update, SPEC, expected_device_id="sine-5")
    nan = bytearray(payload)
    nan[-8:-4] = struct.pack("<f", float("nan"))  # the last value of the last tensor
    refused(WireFormatError.NON_FINITE, decode_hypergradient, with_crc(nan), SPEC, expected_device_id="sine-5")


def test_frames_without_step_sizes_are_byte_for_byte_what_they_were():
    """A MODEL produced before kinds 3 and 4 existed (encoder at commit 2dc544c): unchanged bytes."""
    before = bytes.fromhex(
        "54465750010100007400000007000000000000000200000001010002020000000300000000000000000000000600000077000000"
        "000000000000803f0000004000004040000080400000a040010100010200000000000000000000000000000002000000620000"
        "000000003f000080bf3043a1a6"
    )
    weights = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([0.5, -1.0], np.float32)}
    assert encode_model(weights, round_id=7) == before
    assert decode_weights(before).kind is MessageKind.MODEL


def test_doc_hexdump_of_step_sizes_is_the_encoder_output():
    data = doc_hexdump("step-sizes-hexdump")
    assert data == encode_step_sizes({"b": np.array([0.5, 2.0], np.float32)}, round_id=7)
    assert decode_step_sizes(data, {"b": ((2,), np.float32)}, expected_round_id=7)["b"].tolist() == [0.5, 2.0]


def test_c_parser_reads_kinds_3_and_4_like_python_and_refuses_kind_5(c_parser, tmp_path):  # noqa: F811
    step_sizes = encode_step_sizes(scales(), round_id=3)
    hypergradient = encode_hypergradient(scales(-1.0), round_id=3, device_id="sine-5", num_examples=9,
                                         metrics={"step-size-query-loss": 1.5})  # fmt: skip
    unknown = bytearray(step_sizes)
    unknown[5] = 5
    results = run_c(c_parser, [step_sizes, hypergradient, with_crc(unknown)], tmp_path)
    assert results[0] == python_view(step_sizes) and results[0][-1].startswith("OK 3 3 0 0 4")
    assert results[1] == python_view(hypergradient) and results[1][-1].startswith("OK 4 3 9 6 4")
    assert results[2][-1].startswith("ERR")
