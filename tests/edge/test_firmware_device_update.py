"""The device's wire codec in firmware C (edge/firmware/device/update.c) agrees with edge.wire byte for byte.

* An UPDATE the C encoder builds (dense or sparse) is exactly ``edge.wire.encode_weights``'s output for the same
  tensors, metrics, round and device id, CRC32 included.
* The C decoder accepts ``edge.wire.encode_model``'s MODEL for the device's weight table (optionally without the
  private tensors) and writes exactly its floats; every corrupted payload is refused with the code Python's
  ``decode_weights(payload, spec, expected_kind=MODEL, expected_round_id=...)`` gives it (truncated, bad CRC, wrong
  shape, NaN, ...), distinct per fault, and a refusal leaves the weights untouched.

Host (cc -std=c99 -O2) and QEMU (mps2-an386) run the same test main on the same generated cases.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from edge.firmware.build import build_elf
from edge.firmware.device import MLP_C, UPDATE_C, build_host, c_bytes, c_floats, c_header, host_compiler
from edge.firmware.qemu import run_elf
from edge.mlp import NumpyMLP
from edge.wire import MessageKind, SparseTensor, WireFormatError, decode_weights, encode_model, encode_weights

MAIN = Path(__file__).parent / "firmware_c" / "device_update.c"
SIZES = (1, 40, 40, 1)
NAMES = ["w0", "b0", "w1", "b1", "w2", "b2"]
ROUND = 5
ALL, SHARED_NO_HEAD = 0b111111, 0b001111  # tensor bit masks: everything / w2, b2 private
needs_cc = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler")
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


def theta() -> dict[str, np.ndarray]:
    weights = NumpyMLP(SIZES, seed=3).get_weights()
    rng = np.random.default_rng(1)
    return {k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for k, v in weights.items()}  # biases non-zero


def recrc(payload: bytes | bytearray) -> bytes:
    body = bytes(payload[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def patched(payload: bytes, offset: int, new: bytes) -> bytes:
    out = bytearray(payload)
    out[offset : offset + len(new)] = new
    return recrc(out)


def values_offset(payload: bytes, name: str) -> int:
    """Offset of the first value of dense tensor ``name`` in a MODEL (no device id, no metrics)."""
    pos = 24
    for _ in range(struct.unpack_from("<H", payload, 20)[0]):
        name_len, count = payload[pos], struct.unpack_from("<I", payload, pos + 20)[0]
        found = payload[pos + 24 : pos + 24 + name_len].decode()
        pos += 24 + (name_len + 3) // 4 * 4
        if found == name:
            return pos
        pos += count * 4
    raise KeyError(name)


def cases() -> list[tuple[str, bytes, int, int, int]]:
    """(label, payload, cap, round_id, shared mask)."""
    t = theta()
    good = encode_model(t, round_id=ROUND)
    shared = {k: v for k, v in t.items() if k not in ("w2", "b2")}
    nan = patched(good, values_offset(good, "w1") + 4 * 17, struct.pack("<f", float("nan")))
    inf = patched(good, values_offset(good, "b0"), struct.pack("<f", float("-inf")))
    wrong_shape = encode_model({**t, "w1": np.zeros((40, 39), np.float32)}, round_id=ROUND)
    transposed = encode_model({**t, "w0": t["w0"].T.copy()}, round_id=ROUND)
    float16 = encode_model({**t, "b1": t["b1"].astype(np.float16)}, round_id=ROUND)
    sparse = encode_weights({k: v for k, v in t.items() if k != "b2"}, round_id=ROUND, kind=MessageKind.MODEL,
                            sparse={"b2": SparseTensor((1,), np.array([0], np.uint32), np.array([0.5], np.float32))})  # fmt: skip
    b0_at = good.index(b"b0\x00\x00")
    name_pad = good.index(b"w0\x00\x00") + 2
    return [
        ("good", good, 65536, ROUND, ALL),
        ("good-shared-part", encode_model(shared, round_id=ROUND), 65536, ROUND, SHARED_NO_HEAD),
        ("good-other-order", encode_model(dict(reversed(list(t.items()))), round_id=ROUND), 65536, ROUND, ALL),
        ("truncated", good[:-10], 65536, ROUND, ALL),
        ("truncated-header", good[:20], 65536, ROUND, ALL),
        ("trailing", good + b"\x00", 65536, ROUND, ALL),
        ("bad-crc", good[:1000] + bytes([good[1000] ^ 0x40]) + good[1001:], 65536, ROUND, ALL),
        ("bad-crc-trailer", good[:-1] + bytes([good[-1] ^ 1]), 65536, ROUND, ALL),
        ("bad-magic", b"TFWQ" + good[4:], 65536, ROUND, ALL),
        ("version-2", patched(good, 4, b"\x02"), 65536, ROUND, ALL),
        ("oversized", good, 4096, ROUND, ALL),
        ("update-kind", patched(good, 5, b"\x02"), 65536, ROUND, ALL),
        ("kind-9", patched(good, 5, b"\x09"), 65536, ROUND, ALL),
        ("message-flags", patched(good, 6, b"\x01"), 65536, ROUND, ALL),
        ("reserved", patched(good, 23, b"\x01"), 65536, ROUND, ALL),
        ("wrong-round", good, 65536, ROUND + 1, ALL),
        ("nan", nan, 65536, ROUND, ALL),
        ("inf", inf, 65536, ROUND, ALL),
        ("wrong-shape", wrong_shape, 65536, ROUND, ALL),
        ("transposed", transposed, 65536, ROUND, ALL),
        ("missing-tensor", encode_model({k: v for k, v in t.items() if k != "b2"}, round_id=ROUND), 65536, ROUND, ALL),
        ("extra-tensor", encode_model({**t, "w9": np.zeros(2, np.float32)}, round_id=ROUND), 65536, ROUND, ALL),
        ("private-sent", good, 65536, ROUND, SHARED_NO_HEAD),
        ("float16", float16, 65536, ROUND, ALL),
        ("sparse-tensor", sparse, 65536, ROUND, ALL),
        ("duplicate-name", patched(good, b0_at, b"w0"), 65536, ROUND, ALL),
        ("bad-name", patched(good, b0_at, b"b "), 65536, ROUND, ALL),
        ("bad-padding", patched(good, name_pad, b"\x01"), 65536, ROUND, ALL),
        ("dtype-9", patched(good, 24 + 1, b"\x09"), 65536, ROUND, ALL),
        ("rank-5", patched(good, 24 + 3, b"\x05"), 65536, ROUND, ALL),
        ("count", patched(good, 24 + 20, struct.pack("<I", 41)), 65536, ROUND, ALL),
        ("index16-dense", patched(good, 24 + 2, b"\x02"), 65536, ROUND, ALL),
    ]  # fmt: skip


def python_code(payload: bytes, cap: int, round_id: int, shared: int) -> str:
    spec = {n: (theta()[n].shape, np.float32) for i, n in enumerate(NAMES) if shared & (1 << i)}
    try:
        message = decode_weights(payload, spec, expected_kind=MessageKind.MODEL, expected_round_id=round_id, max_size=cap)
    except WireFormatError as exc:
        return exc.code
    if len(message.dense) != len(spec):
        return "spec-mismatch"  # a sparse tensor: what edge.device_round.check_theta refuses
    return "ok"


def sparse_update() -> tuple[np.ndarray, np.ndarray]:
    return np.array([1, 5, 100, 1599], np.uint32), np.array([0.25, -1.5, 3.0e-5, 7.0], np.float32)


def write_cases(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    arrays, table = [], []
    for i, (_, payload, cap, round_id, shared) in enumerate(cases()):
        arrays.append(c_bytes(f"CASE{i}", payload))
        table.append(f"{{CASE{i}, CASE{i}_LEN, {cap}u, {round_id}u, {shared}u}}")
    indices, values = sparse_update()
    arrays += [
        "typedef struct { const unsigned char *data; unsigned len, cap, round_id, shared; } case_t;",
        f"static const case_t CASES[{len(table)}] = {{{', '.join(table)}}};",
        c_floats("ENC_PARAMS", np.concatenate([v.ravel() for v in theta().values()])),
        f"static const uint32_t SP_INDICES[{len(indices)}] = {{{', '.join(f'{i}u' for i in indices)}}};",
        c_floats("SP_VALUES", values),
    ]
    defines = {"N_LAYERS": 3, "SIZES": "{1,40,40,1}", "N_PARAMS": 1761, "N_CASES": len(table), "ENC_ROUND": 7,
               "ENC_EXAMPLES": 32, "ENC_DEVICE": '"mcu-01"', "ENC_M0": "0x1p-1f", "ENC_M1": "0.1f", "SP_COUNT": len(indices)}  # fmt: skip
    c_header(out / "cases.h", defines, arrays)
    return out


def check_output(stdout: str) -> None:
    assert stdout.rstrip().endswith("done"), stdout[-300:]
    got = re.findall(r"^case (\d+) (\S+) kept (\d)$", stdout, re.M)
    decoded = iter(re.findall(r"^w((?: [0-9a-f]{8})+)$", stdout, re.M))
    all_cases = cases()
    assert len(got) == len(all_cases)
    t = theta()
    codes = set()
    for (label, payload, cap, round_id, shared), (_, code, kept) in zip(all_cases, got):
        assert code == python_code(payload, cap, round_id, shared), label
        codes.add(code)
        if code == "ok":
            params = np.array([int(b, 16) for b in next(decoded).split()], np.uint32).view(np.float32)
            want = np.concatenate([t[n].ravel() if shared & (1 << i) else np.full(t[n].size, -7.0, np.float32)
                                   for i, n in enumerate(NAMES)])  # fmt: skip
            assert np.array_equal(params, want), label  # bit for bit; private tensors untouched
        else:
            assert kept == "1", label
    # the faults are told apart: one code per kind of fault, as the Python decoder names them
    assert codes >= {"ok", "truncated", "trailing-bytes", "bad-crc", "bad-magic", "unsupported-version", "oversized",
                     "unknown-kind", "bad-flags", "bad-field", "wrong-round", "non-finite", "spec-mismatch",
                     "duplicate-name", "bad-name", "bad-padding", "unknown-dtype", "bad-shape"}  # fmt: skip

    dense = bytes.fromhex(re.search(r"^dense \d+ ([0-9a-f]+)$", stdout, re.M).group(1))
    want = encode_weights(theta(), round_id=7, device_id="mcu-01", num_examples=32,
                          metrics={"loss-before": 0.5, "loss-after": 0.1})  # fmt: skip
    assert dense == want
    indices, values = sparse_update()
    sparse = bytes.fromhex(re.search(r"^sparse \d+ ([0-9a-f]+)$", stdout, re.M).group(1))
    want = encode_weights(None, round_id=7, device_id="mcu-01", num_examples=32, sparse={
        "w1": SparseTensor((40, 40), indices, values), "b0": SparseTensor((40,), np.array([], np.uint32), np.array([], np.float32))})  # fmt: skip
    assert sparse == want
    assert "refuse_nan non-finite 0" in stdout
    assert "refuse_id bad-device-id" in stdout
    assert "refuse_room oversized 0" in stdout


@needs_cc
def test_host_codec_equals_edge_wire(tmp_path: Path) -> None:
    exe = build_host([MAIN, MLP_C, UPDATE_C], [write_cases(tmp_path / "v")], tmp_path / "device_update")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    check_output(done.stdout)


@needs_arm
def test_qemu_codec_equals_edge_wire(tmp_path: Path) -> None:
    elf = build_elf("mps2-an386", [MAIN, MLP_C, UPDATE_C], include_dirs=[write_cases(tmp_path / "v"), MLP_C.parent],
                    out_dir=tmp_path, name="device_update")  # fmt: skip
    result = run_elf(elf, timeout=30)
    assert result.exit_code == 0, result.stdout[-300:]
    check_output(result.stdout)
