"""docs/protocol.md stays true: its hexdump is what the encoder produces, and its C parser
sketch compiles, allocates nothing and agrees with the Python decoder."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from edge.wire import SparseTensor, WireFormatError, decode_weights, encode_model, encode_weights, top_p_sparsify

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def doc_block(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker}[^>]*-->\n```[a-z]*\n(.*?)\n```", text, re.S)
    assert match, f"no block after <!-- {marker} --> in {DOC}"
    return match.group(1)


def example_payload() -> bytes:
    return encode_weights(
        {"b": np.array([0.5, -1.0], np.float32)},
        round_id=7,
        device_id="mcu-01",
        num_examples=32,
        metrics={"loss": 0.125},
        sparse={"w": SparseTensor((2, 3), np.array([1, 4], np.uint32), np.array([0.25, -0.75], np.float32))},
    )


def doc_hexdump(marker: str) -> bytes:
    """The bytes of the ``hexdump -C`` block after ``marker``, its offsets checked."""
    data = bytearray()
    for line in doc_block(marker).splitlines():
        fields = line.split("|")[0].split()
        if len(fields) > 1:
            assert int(fields[0], 16) == len(data)
            data += bytes(int(b, 16) for b in fields[1:])
    return bytes(data)


def test_doc_hexdump_is_the_encoder_output() -> None:
    data = doc_hexdump("example-hexdump")
    payload = example_payload()
    assert bytes(data) == payload
    message = decode_weights(bytes(data))
    assert (message.round_id, message.device_id, message.num_examples, message.metrics) == (7, "mcu-01", 32, {"loss": 0.125})
    assert DOC.read_text().count(" ".join(f"{b:02x}" for b in payload[-4:])) >= 1  # CRC row of the table


HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>

static uint32_t crc_or_zero(const uint8_t *p, size_t n) { return p ? tfw_crc32(p, n) : 0u; }

static int print_tensor(const tfw_view_t *t, void *ctx) {
    (void)ctx;
    printf("T %.*s %u %u %u %u %u %u %u %u %08x %08x\n", (int)t->rec.name_len, t->name, t->rec.dtype, t->rec.flags,
           t->rec.ndim, t->rec.shape[0], t->rec.shape[1], t->rec.shape[2], t->rec.shape[3], t->rec.count,
           crc_or_zero(t->indices, (size_t)t->index_size * t->rec.count), tfw_crc32(t->values, (size_t)t->rec.count * TFW_ITEMSIZE[t->rec.dtype]));
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 2;
    uint32_t n;
    while (fread(&n, 4, 1, f) == 1) {
        /* the harness reads into an exactly-sized heap buffer so a sanitizer sees any overread */
        uint8_t *exact = malloc(n ? n : 1);
        if (!exact || fread(exact, 1, n, f) != n) return 3;
        tfw_header_t h;
        printf("BEGIN\n");
        tfw_status_t s = tfw_parse(exact, n, 65536, &h, print_tensor, NULL);
        if (s == TFW_OK) printf("OK %u %u %u %u %u\n", h.kind, h.round_id, h.num_examples, h.device_id_len, h.tensor_count);
        else printf("ERR %d\n", (int)s);
        free(exact);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_parser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    folder = tmp_path_factory.mktemp("wire_c")
    source = folder / "tfw.c"
    source.write_text(doc_block("c-parser") + "\n" + HARNESS)
    binary = folder / "tfw"
    base = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", str(source), "-o", str(binary)]
    sanitized = subprocess.run(base[:-3] + ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"] + base[-3:], capture_output=True, text=True)
    if sanitized.returncode != 0:
        subprocess.run(base, check=True, capture_output=True, text=True)
    # the parser itself must not allocate
    parser_only = doc_block("c-parser")
    assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", parser_only)
    return binary


def run_c(binary: Path, payloads: list[bytes], folder: Path) -> list[list[str]]:
    framed = folder / "payloads.bin"
    framed.write_bytes(b"".join(struct.pack("<I", len(p)) + p for p in payloads))
    out = subprocess.run([str(binary), str(framed)], capture_output=True, text=True, check=True).stdout
    results = [block.strip().splitlines() for block in out.split("BEGIN\n")[1:]]
    assert len(results) == len(payloads)
    return results


def python_view(payload: bytes) -> list[str]:
    message = decode_weights(payload)
    lines = []
    for name, value in message.tensors.items():
        sparse = isinstance(value, SparseTensor)
        values = value.values if sparse else value.reshape(-1)
        shape = list(value.shape) + [0] * (4 - len(value.shape))
        code = {"float32": 1, "float16": 2, "int8": 3, "uint8": 4, "int16": 5, "int32": 6}[values.dtype.name]
        index16 = sparse and value.size <= 65536  # uint16 indices (flag 0x02) up to 65,536 entries
        crc_idx = zlib.crc32(value.indices.astype("<u2" if index16 else "<u4").tobytes()) if sparse else 0
        crc_val = zlib.crc32(values.astype(values.dtype.newbyteorder("<")).tobytes())
        lines.append(f"T {name} {code} {int(sparse) | (2 if index16 else 0)} {len(value.shape)} {' '.join(map(str, shape))} {values.size} {crc_idx:08x} {crc_val:08x}")
    lines.append(f"OK {int(message.kind)} {message.round_id} {message.num_examples} {len(message.device_id)} {len(message.tensors)}")
    return lines


def corpus() -> list[bytes]:
    rng = np.random.default_rng(11)
    weights = {
        "f32": rng.normal(size=(3, 4)).astype(np.float32),
        "f16": rng.normal(size=(2, 2, 2)).astype(np.float16),
        "i8": rng.integers(-128, 127, size=5, dtype=np.int8),
        "u8": rng.integers(0, 255, size=(1, 3), dtype=np.uint8),
        "i16": rng.integers(-300, 300, size=(2, 1, 1, 3), dtype=np.int16),
        "i32": np.array(123456, np.int32),
        "empty": np.zeros((0, 4), np.float32),
    }
    return [
        example_payload(),
        encode_weights(weights, round_id=1, device_id="dev.x", metrics={"a": 1.0, "loss-after": 2.5}),
        encode_weights(None, round_id=2, sparse=top_p_sparsify({k: v for k, v in weights.items() if k != "empty"}, 0.3)),
        encode_model({"w": rng.normal(size=(40, 40)).astype(np.float32)}, round_id=3),
        # uint32 indices (> 65,536 entries) next to uint16 ones with an odd count (2 padding bytes)
        encode_weights(None, round_id=4, sparse={
            "big": SparseTensor((300, 300), np.array([3, 89_999], np.uint32), np.array([1.5, -2.0], np.float32)),
            "odd": SparseTensor((7,), np.array([0, 2, 6], np.uint32), np.array([1, 2, 3], np.int8)),
        }),
    ]


def test_c_parser_agrees_on_valid_payloads(c_parser, tmp_path) -> None:
    payloads = corpus()
    for payload, c_lines in zip(payloads, run_c(c_parser, payloads, tmp_path)):
        assert c_lines == python_view(payload)


def test_c_parser_refuses_corruptions_and_truncations(c_parser, tmp_path) -> None:
    rng = np.random.default_rng(12)
    bad = []
    for payload in corpus():
        for position in range(len(payload)):
            corrupted = bytearray(payload)
            corrupted[position] ^= int(rng.integers(1, 256))
            bad.append(bytes(corrupted))
        bad += [payload[:n] for n in range(0, len(payload), 3)] + [payload + b"\x00"]
    bad.append(b"\x00" * 70000)
    for lines in run_c(c_parser, bad, tmp_path):
        assert lines[-1].startswith("ERR"), lines


def test_c_parser_agrees_behind_a_valid_crc(c_parser, tmp_path) -> None:
    """Body corruptions with a recomputed CRC: whatever Python accepts, C accepts identically;
    C accepts what Python refuses only for the checks it leaves to the application."""
    rng = np.random.default_rng(13)
    mutated = []
    for payload in corpus():
        for _ in range(400):
            corrupted = bytearray(payload)
            for position in rng.integers(0, len(payload) - 4, size=int(rng.integers(1, 3))):
                corrupted[position] = int(rng.integers(0, 256))
            corrupted[-4:] = struct.pack("<I", zlib.crc32(bytes(corrupted[:-4])))
            mutated.append(bytes(corrupted))
    accepted = 0
    for payload, c_lines in zip(mutated, run_c(c_parser, mutated, tmp_path)):
        try:
            expected = python_view(payload)
        except WireFormatError as exc:
            if c_lines[-1].startswith("OK"):
                assert exc.code in (WireFormatError.DUPLICATE_NAME, WireFormatError.BAD_DEVICE_ID), (exc, c_lines)
            continue
        accepted += 1
        assert c_lines == expected
    assert accepted > 50
