"""Serial binding v1: the Python codec, and the C codec giving the same bytes on the host (cc) and under QEMU."""

from __future__ import annotations

import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from edge.serial_link import (
    DEVICE_TO_HOST,
    HOST_TO_DEVICE,
    MAX_PAYLOAD,
    BadCrc,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GarbageFrame,
    OversizedFrame,
    SerialFrameError,
    Topic,
    TruncatedFrame,
    UnknownTopic,
    UnsupportedVersion,
    cobs_decode,
    cobs_encode,
    decode_frame,
    encode_frame,
    max_encoded_size,
)
from edge.wire.topics import Channel

FIRMWARE = Path(__file__).resolve().parents[2] / "edge" / "firmware"
HARNESS = Path(__file__).parent / "firmware_c" / "serial_link_vectors.c"
HOST_CC = shutil.which("cc") or shutil.which("gcc")
VEC_MAX_PAYLOAD = 600


def raw_frame(version: int, topic: int, sequence: int, payload: bytes, crc: int | None = None) -> bytes:
    """A frame with any header (even an invalid one), COBS-encoded and delimited."""
    body = bytes((version, topic)) + sequence.to_bytes(2, "little") + payload
    crc = zlib.crc32(body) if crc is None else crc
    return cobs_encode(body + crc.to_bytes(4, "little")) + b"\x00"


# ------------------------------------------------------------------ Python codec


def test_topics_are_the_device_mqtt_channels_with_direction() -> None:
    assert {t.channel for t in Topic} == set(Channel)
    assert all(t.channel.from_device == t.from_device for t in Topic)
    assert DEVICE_TO_HOST | HOST_TO_DEVICE == frozenset(Topic) and not DEVICE_TO_HOST & HOST_TO_DEVICE
    assert Topic.of_channel("model") is Topic.MODEL


@pytest.mark.parametrize("size", [0, 1, 253, 254, 255, 508, 509, 5000])
def test_cobs_round_trips_and_never_emits_zero(size: int) -> None:
    rng = random.Random(size)
    for data in (rng.randbytes(size), bytes(size), bytes(rng.choice((0, 1, 255)) for _ in range(size)), b"\x07" * size):
        encoded = cobs_encode(data)
        assert 0 not in encoded
        assert cobs_decode(encoded) == data
        assert len(encoded) <= len(data) + len(data) // 254 + 1


def test_frame_layout_is_version_topic_sequence_payload_crc() -> None:
    frame = encode_frame(Topic.UPDATE, 0x1234, b"\x00ab")
    assert frame.endswith(b"\x00") and 0 not in frame[:-1]
    raw = cobs_decode(frame[:-1])
    assert raw[:4] == b"\x01\x04\x34\x12" and raw[4:7] == b"\x00ab"
    assert int.from_bytes(raw[7:], "little") == zlib.crc32(raw[:7])
    assert decode_frame(frame[:-1]) == Frame(Topic.UPDATE, 0x1234, b"\x00ab")


def test_each_fault_is_its_own_error_type_with_a_code() -> None:
    dec = lambda b, **kw: decode_frame(b[:-1] if b.endswith(b"\x00") else b, **kw)  # noqa: E731
    good = encode_frame(Topic.TASK, 1, b"payload")
    raw = bytearray(cobs_decode(good[:-1]))
    raw[5] ^= 0x40
    cases = {
        GarbageFrame: b"\x05ab",  # block of 4 with 2 bytes left
        TruncatedFrame: cobs_encode(b"\x01\x81\x00"),
        BadCrc: cobs_encode(bytes(raw)),
        OversizedFrame: encode_frame(Topic.MODEL, 0, bytes(101)),
        UnsupportedVersion: raw_frame(2, Topic.TASK, 0, b"v2"),
        UnknownTopic: raw_frame(1, 0x55, 0, b"?"),
    }
    for error, frame in cases.items():
        with pytest.raises(error) as info:
            dec(frame, max_payload=100)
        assert isinstance(info.value, SerialFrameError) and isinstance(info.value, ValueError)
        assert info.value.code == error.CODE and str(info.value).startswith(error.CODE + ": ")
    with pytest.raises(UnknownTopic, match="does not flow"):
        dec(encode_frame(Topic.STATUS, 0, b"online"), accept=HOST_TO_DEVICE)
    with pytest.raises(OversizedFrame):
        encode_frame(Topic.MODEL, 0, bytes(MAX_PAYLOAD + 1))
    assert len(encode_frame(Topic.MODEL, 0, bytes(MAX_PAYLOAD))) <= max_encoded_size(MAX_PAYLOAD)


def test_decoder_resynchronises_and_loses_no_good_frame() -> None:
    enc = FrameEncoder()
    good = [enc.encode(Topic.TASK, b'{"v":1}'), enc.encode(Topic.MODEL, bytes(range(256)) * 3), enc.encode(Topic.TASK, b"")]
    stream = (
        b"\x00\x00noise before boot\x00" + good[0] + good[1][: len(good[1]) // 2] + b"\x00"
        + b"\xff" * 5000 + b"\x00" + good[1] + raw_frame(3, Topic.TASK, 9, b"x") + good[2]
    )
    rng = random.Random(0)
    for chunking in ("whole", "bytes", "random"):
        dec = FrameDecoder(max_payload=1000, accept=HOST_TO_DEVICE)
        if chunking == "whole":
            events = dec.feed(stream)
        elif chunking == "bytes":
            events = [e for i in range(len(stream)) for e in dec.feed(stream[i : i + 1])]
        else:
            events, i = [], 0
            while i < len(stream):
                n = rng.randint(1, 700)
                events += dec.feed(stream[i : i + n])
                i += n
        frames = [e for e in events if isinstance(e, Frame)]
        assert [f.sequence for f in frames] == [0, 1, 2]
        assert frames[1].payload == bytes(range(256)) * 3
        assert [type(e) for e in events if not isinstance(e, Frame)] == [GarbageFrame, GarbageFrame, OversizedFrame, UnsupportedVersion]
        assert dec.pending == 0


def test_oversized_frames_are_not_buffered_and_stream_end_is_truncated() -> None:
    dec = FrameDecoder(max_payload=64)
    assert dec.feed(b"\x01" * 1_000_000) == []
    assert dec.pending == 1_000_000 and len(dec._buffer) < 100
    assert [type(e) for e in dec.feed(b"\x00")] == [OversizedFrame]
    assert dec.feed(encode_frame(Topic.STATUS, 3, b"online")[:-3]) == []
    assert [type(e) for e in dec.flush()] == [TruncatedFrame]
    assert dec.flush() == []


def test_encoder_numbers_frames_and_wraps_at_u16() -> None:
    enc = FrameEncoder(first_sequence=0xFFFE)
    seqs = [decode_frame(enc.encode(Topic.TELEMETRY, b"{}")[:-1]).sequence for _ in range(3)]
    assert seqs == [0xFFFE, 0xFFFF, 0]


# ------------------------------------------------------------------ C codec == Python codec


def c_array(name: str, ctype: str, values: list[int] | bytes) -> str:
    values = list(values) or [0]
    return f"static const {ctype} {name}[] = {{{', '.join(map(str, values))}}};\n"


def write_vectors(directory: Path, stream: bytes, encode: list[tuple[int, int, bytes]], accept: str) -> None:
    offsets, data = [], b""
    for _, _, payload in encode:
        offsets.append(len(data))
        data += payload
    text = "#include <stddef.h>\n#include <stdint.h>\n"
    text += f"#define VEC_MAX_PAYLOAD {VEC_MAX_PAYLOAD}\n#define VEC_ENC_MAX {max([len(p) for *_, p in encode] + [1])}\n"
    text += f"#define VEC_ACCEPT {accept}\n#define ENC_COUNT {len(encode)}\n#define STREAM_LEN {len(stream)}\n"
    text += 'static const uint8_t CRC_INPUT[] = "TinyFleet serial link";\n'
    text += c_array("STREAM", "uint8_t", stream)
    text += c_array("ENC_TOPIC", "uint8_t", [t for t, _, _ in encode])
    text += c_array("ENC_SEQ", "uint16_t", [s for _, s, _ in encode])
    text += c_array("ENC_OFF", "uint32_t", offsets)
    text += c_array("ENC_LEN", "uint32_t", [len(p) for *_, p in encode])
    text += c_array("ENC_DATA", "uint8_t", data)
    (directory / "serial_link_vectors.h").write_text(text)


def expected_lines(stream: bytes, encode: list[tuple[int, int, bytes]], accept: frozenset[Topic]) -> list[str]:
    lines = [f"C {zlib.crc32(b'TinyFleet serial link'):08x}"]
    dec = FrameDecoder(max_payload=VEC_MAX_PAYLOAD, accept=accept)
    for event in dec.feed(stream) + dec.flush():
        if isinstance(event, Frame):
            lines.append(f"F {event.topic.value} {event.sequence} {len(event.payload)} {zlib.crc32(event.payload):08x}")
        else:
            lines.append(f"E {event.code}")
    lines += [f"X {encode_frame(t, s, p).hex()}" for t, s, p in encode]
    return lines + ["END"]


def vector_case() -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """Every fault once, between good frames, plus payloads that exercise COBS's 254-byte blocks."""
    rng = random.Random(15)
    good = lambda t, s, p: encode_frame(t, s, p)  # noqa: E731
    flipped = bytearray(cobs_decode(good(Topic.MODEL, 5, b"weights")[:-1]))
    flipped[6] ^= 1
    stream = b"".join([
        b"\x00",
        good(Topic.TASK, 0, b'{"round_id":1,"type":"task","v":1}'),
        bytes(rng.randint(1, 255) for _ in range(40)) + b"\x00",  # garbage
        good(Topic.MODEL, 1, bytes(rng.randint(1, 255) for _ in range(254))),  # exactly one full block
        cobs_encode(b"\x01\x81\x02") + b"\x00",  # truncated
        cobs_encode(bytes(flipped)) + b"\x00",  # bad CRC
        encode_frame(Topic.MODEL, 2, rng.randbytes(VEC_MAX_PAYLOAD + 1)),  # oversized
        raw_frame(1, 0x42, 3, b"what"),  # unknown topic
        raw_frame(2, Topic.TASK, 4, b"from the future"),  # unsupported version
        good(Topic.STATUS, 5, b"online"),  # wrong direction for a device
        good(Topic.MODEL, 6, bytes(VEC_MAX_PAYLOAD)),  # largest accepted, all zeros
        good(Topic.TASK, 7, b""),
        good(Topic.MODEL, 8, rng.randbytes(VEC_MAX_PAYLOAD)),
        good(Topic.TASK, 9, b"cut")[:5],  # stream ends inside a frame
    ])
    encode = [
        (Topic.STATUS, 0, b"online"),
        (Topic.ANNOUNCE, 1, b'{"id":"qemu-0"}'),
        (Topic.UPDATE, 0xFFFF, rng.randbytes(1000)),
        (Topic.TELEMETRY, 3, b""),
        (Topic.UPDATE, 4, bytes(600)),
        (Topic.UPDATE, 5, b"\x11" * 254),
        (Topic.UPDATE, 6, b"\x11" * 508 + b"\x00"),
    ]
    return stream, encode


def fuzz_case(seed: int) -> bytes:
    """Good frames mutated at random: flipped, dropped and inserted bytes, cut frames, stray delimiters."""
    rng = random.Random(seed)
    out = bytearray()
    for seq in range(200):
        topic = rng.choice(list(Topic) + [0x42])
        version = 1 if rng.random() < 0.9 else rng.randint(0, 255)
        frame = bytearray(raw_frame(version, topic, seq, rng.randbytes(rng.choice((0, 3, 100, 300, 700)))))
        mutation = rng.random()
        if mutation < 0.15:
            frame[rng.randrange(len(frame) - 1)] ^= 1 << rng.randrange(8)
        elif mutation < 0.25:
            del frame[rng.randrange(len(frame) - 1)]
        elif mutation < 0.35:
            frame.insert(rng.randrange(len(frame)), rng.choice((0, rng.randint(1, 255))))
        elif mutation < 0.4:
            frame = frame[: rng.randrange(1, len(frame))]
        out += frame
    return bytes(out)


def run_host(tmp_path: Path, stream: bytes, encode: list, accept: str) -> list[str]:
    write_vectors(tmp_path, stream, encode, accept)
    exe = tmp_path / "vectors"
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    cmd = [HOST_CC, *flags, f"-I{FIRMWARE}", f"-I{tmp_path}", str(HARNESS), str(FIRMWARE / "serial_link.c"), "-o", str(exe)]
    if subprocess.run([*cmd[:1], *sanitize, *cmd[1:]], capture_output=True).returncode != 0:
        subprocess.run(cmd, check=True, capture_output=True)  # no sanitizer runtime here: plain build
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(HOST_CC is None, reason="needs a host C compiler")
def test_c_codec_on_the_host_equals_python_both_ways(tmp_path: Path) -> None:
    stream, encode = vector_case()
    expected = expected_lines(stream, encode, HOST_TO_DEVICE)
    assert run_host(tmp_path, stream, encode, "SL_ACCEPT_HOST_TO_DEVICE") == expected
    codes = {line[2:] for line in expected if line.startswith("E ")}
    assert codes == {"bad-cobs", "truncated", "bad-crc", "oversized", "unknown-topic", "unsupported-version"}
    assert sum(line.startswith("F ") for line in expected) == 5


@pytest.mark.skipif(HOST_CC is None, reason="needs a host C compiler")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_c_decoder_agrees_with_python_on_mutated_streams(tmp_path: Path, seed: int) -> None:
    stream = fuzz_case(seed)
    expected = expected_lines(stream, [], DEVICE_TO_HOST)
    assert run_host(tmp_path, stream, [], "SL_ACCEPT_DEVICE_TO_HOST") == expected
    assert sum(line.startswith("F ") for line in expected) > 30
    assert {line for line in expected if line.startswith("E ")} >= {f"E {c}" for c in ("bad-cobs", "bad-crc", "oversized", "unknown-topic", "unsupported-version")}


@pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)
def test_c_codec_under_qemu_equals_python_both_ways(tmp_path: Path) -> None:
    from edge.firmware.build import SERIAL_LINK_C, build_elf
    from edge.firmware.qemu import run_elf

    stream, encode = vector_case()
    write_vectors(tmp_path, stream, encode, "SL_ACCEPT_HOST_TO_DEVICE")
    elf = build_elf("mps2-an386", [HARNESS, SERIAL_LINK_C], include_dirs=[tmp_path], out_dir=tmp_path)
    result = run_elf(elf, timeout=20)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == expected_lines(stream, encode, HOST_TO_DEVICE)
