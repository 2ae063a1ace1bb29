"""Differential fuzzing of the device's MODEL and STEP_SIZES decoders and TASK parser (edge/firmware/device/update.c, task.c) against
the Python codecs: on seeded random mutations of valid payloads (flipped, inserted and deleted bytes, truncations,
with the CRC fixed or not; edited JSON), the C code is the ``WireFormatError.code`` Python gives, or "ok" for both.
Host only (one process reads every case from stdin)."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from edge.device_round import shared_spec
from edge.firmware.device import MLP_C, TASK_C, UPDATE_C, build_host, host_compiler
from edge.mlp import NumpyMLP
from edge.wire import MessageKind, TaskAssignment, WireFormatError, decode_step_sizes, decode_weights, encode_model
from edge.wire import encode_step_sizes
from firmware_sim.mqtt_round import request_of

MAIN = Path(__file__).parent / "firmware_c" / "device_fuzz.c"
NAMES = ["w0", "b0", "w1", "b1", "w2", "b2"]
ALL = 0b111111
pytestmark = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler")


def model_code(payload: bytes, cap: int, round_id: int, shared: int) -> str:
    spec = {n: ((1, 40) if n == "w0" else (40, 40) if n == "w1" else (40, 1) if n == "w2" else (40,) if n in ("b0", "b1") else (1,), np.float32)
            for i, n in enumerate(NAMES) if shared & (1 << i)}  # fmt: skip
    try:
        message = decode_weights(payload, spec, expected_kind=MessageKind.MODEL, expected_round_id=round_id, max_size=cap)
    except WireFormatError as exc:
        return exc.code
    return "ok" if len(message.dense) == len(spec) else "spec-mismatch"


def step_sizes_code(payload: bytes, cap: int, round_id: int) -> str:
    spec = {k: (v.shape, v.dtype) for k, v in NumpyMLP((1, 40, 40, 1)).get_weights().items()}
    try:
        decode_step_sizes(payload, spec, expected_round_id=round_id, max_size=cap)
    except WireFormatError as exc:
        return exc.code
    return "ok"


def task_code(payload: bytes) -> str:
    try:
        request = request_of(TaskAssignment.from_json(payload), measures_step_sizes=False)
        shared_spec(NumpyMLP((1, 40, 40, 1)), request.private_names)
    except WireFormatError as exc:
        return exc.code
    if max(request.shots, request.epochs, request.probe, request.round_id, request.reconstruction_samples) > 2**32 - 1:
        return "bad-field"  # the firmware's documented refusal (task.h); "imprint" is the round's to refuse
    return "ok"


def mutate(data: bytes, rng: random.Random, fix_crc: bool) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3])):
        op = rng.random()
        at = rng.randrange(len(out)) if out else 0
        if op < 0.5 and out:
            # mostly the structure: header and the first records
            at = rng.randrange(min(len(out), 160)) if rng.random() < 0.7 else at
            out[at] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF, out[at] ^ (1 << rng.randrange(8)), rng.randrange(256)])
        elif op < 0.65:
            out[at:at] = bytes([rng.randrange(256)])
        elif op < 0.8 and out:
            del out[at]
        else:
            out = out[: rng.randrange(len(out) + 1)]
    if fix_crc and len(out) >= 28:
        out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
        if len(out) >= 12 and rng.random() < 0.5:  # and the declared length, so the body is parsed
            out[8:12] = struct.pack("<I", len(out))
            out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
    return bytes(out)


def mutate_json(text: str, rng: random.Random) -> bytes:
    pieces = ['"', ",", ":", "{", "}", "[", "]", " ", "0", "-", "1.5", "e9", "true", "null", "NaN", "\\u0041", "\\", "é",
              "\x01", '"x"', '"stream-samples"', '"local-epochs":0', '"private-names":"w2,b2"', "1e400", "99999999999999999"]
    out = text
    for _ in range(rng.choice([1, 1, 2])):
        at = rng.randrange(len(out) + 1)
        op = rng.random()
        if op < 0.4:
            out = out[:at] + rng.choice(pieces) + out[at:]
        elif op < 0.7:
            out = out[:at] + out[at + rng.randrange(1, 4):]
        else:
            out = out[:at] + rng.choice(pieces) + out[at + 1:]
    return out.encode("utf-8", errors="surrogatepass") if rng.random() < 0.95 else out.encode() + b"\xff"


def cases(seed: int = 15) -> list[tuple[int, bytes, int, int, int, str]]:
    rng = random.Random(seed)
    weights = {k: v + np.float32(0.01) for k, v in NumpyMLP((1, 40, 40, 1), seed=2).get_weights().items()}
    full = encode_model(weights, round_id=9)
    shared = encode_model({k: v for k, v in weights.items() if k not in ("w2", "b2")}, round_id=9)
    out = []
    for i in range(400):
        base, mask = (full, ALL) if i % 3 else (shared, 0b001111)
        payload = mutate(base, rng, fix_crc=rng.random() < 0.8)
        cap = rng.choice([65536, 65536, 8192, len(base) - 1])
        out.append((1, payload, cap, 9, mask, model_code(payload, cap, 9, mask)))
    steps = encode_step_sizes({k: np.abs(v) + np.float32(0.5) for k, v in weights.items()}, round_id=9)
    for _ in range(300):  # mutated STEP_SIZES (a zeroed or negated value is non-positive, a flipped flag bad-flags)
        payload = mutate(steps, rng, fix_crc=rng.random() < 0.8)
        cap = rng.choice([65536, 65536, len(steps) - 1])
        out.append((3, payload, cap, 9, ALL, step_sizes_code(payload, cap, 9)))
    templates = [
        {"v": 1, "type": "task", "round_id": 9, "deadline_s": 30.0, "hyperparameters": {"stream-samples": 10, "probe-samples": 5}},
        {"v": 1, "type": "task", "round_id": 9, "deadline_s": 30.0, "top_p": 0.1,
         "hyperparameters": {"private-names": "w2,b2", "reconstruction-samples": 5, "reconstruction-lr": 0.02, "local-epochs": 2}},
        {"v": 1, "type": "task", "round_id": 9, "deadline_s": 1, "hyperparameters": {"message-type": "evaluate", "radio": False}},
    ]  # fmt: skip
    for i in range(600):
        payload = mutate_json(json.dumps(rng.choice(templates), separators=(",", ":") if i % 2 else (", ", ": ")), rng)
        out.append((2, payload, 0, 0, 0, task_code(payload)))
    return out


def test_c_codes_equal_python_codes_on_mutated_models_and_tasks(tmp_path: Path) -> None:
    exe = build_host([MAIN, MLP_C, UPDATE_C, TASK_C], [], tmp_path / "device_fuzz")
    all_cases = cases()
    stdin = b"".join(bytes([kind]) + struct.pack("<IIII", len(p), cap, r, mask) + p for kind, p, cap, r, mask, _ in all_cases)
    done = subprocess.run([str(exe)], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = done.stdout.decode().split()
    assert len(got) == len(all_cases)
    mismatches = [(kind, p[:200], want, mine) for (kind, p, *_, want), mine in zip(all_cases, got) if want != mine]
    assert mismatches == []
    codes = {want for *_, want in all_cases}
    assert len(codes) >= 12, codes  # the mutations reach deep into both parsers
    step_codes = {want for kind, *_, want in all_cases if kind == 3}
    assert {"ok", "non-positive", "bad-flags", "bad-crc", "wrong-round"} <= step_codes, step_codes
