"""A whole device round in firmware C (edge/firmware/device/round.c) answers as firmware_sim.mqtt_round.run_task does.

Both get the same TASK and MODEL bytes and the same (x, y) sample sequence (embedded in the test image); the C UPDATE
decodes with ``edge.wire.decode_weights`` to the same header (round, device id, num_examples), the same metric names
in the same order, the same tensors (names, order, shapes; Top-P: the same indices) and the same length as Python's,
with values within float32 tolerance (see test_firmware_device_mlp.py for why not bit-identity); the device's time
and energy are its own books, so the test hands the C device Python's figures to make the bytes comparable. A task or
MODEL Python refuses, C refuses with the same code. Covers FedAvg-style dense rounds with local epochs, TinyMetaFed
reconstruction of a private head, Top-P sparse replies, evaluation rounds, rounds without a probe; host and QEMU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.firmware.build import build_elf, image_size
from edge.firmware.device import MLP_C, ROUND_C, TASK_C, UPDATE_C, build_host, c_bytes, c_floats, c_header, host_compiler
from edge.firmware.qemu import run_elf
from edge.mlp import NumpyMLP
from edge.wire import MessageKind, SparseTensor, TaskAssignment, WireFormatError, decode_weights, encode_model
from firmware_sim.fleet import local_init, sine_device
from firmware_sim.mqtt_round import run_task
from tests.edge.sparse_compare import assert_same_update_tensors

MAIN = Path(__file__).parent / "firmware_c" / "device_round.c"
SOURCES = [MAIN, MLP_C, UPDATE_C, TASK_C, ROUND_C]
SIZES, SEED, ROUND = (1, 40, 40, 1), 4, 3
N_SAMPLES = 64
RTOL, ATOL = 1e-4, 1e-5  # φ within float32 noise; δ = φ − θ then differs by a few 1e-7 absolute (checked: < 1e-5)
needs_cc = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler")
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


def theta(private: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    weights = NumpyMLP(SIZES, seed=SEED + 100).get_weights()
    return {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in weights.items() if k not in private}


META = {"private-names": "w2,b2", "reconstruction-samples": 8, "reconstruction-lr": 0.05}
ROUNDS: list[tuple[str, dict, float | None, tuple[str, ...], int]] = [  # label, hyperparameters, top_p, private, model round
    ("dense", {"stream-samples": 10, "probe-samples": 5, "inner-learning-rate": 0.02, "server-round": 3}, None, (), 3),
    ("epochs", {"stream-samples": 12, "local-epochs": 3, "probe-samples": 4, "inner-learning-rate": 0.01}, None, (), 3),
    ("metafed", {**META, "stream-samples": 10, "probe-samples": 5}, None, ("w2", "b2"), 3),
    ("metafed-top-p", {**META, "stream-samples": 10, "probe-samples": 5, "local-epochs": 2}, 0.1, ("w2", "b2"), 3),
    ("top-p", {"stream-samples": 20, "inner-learning-rate": 0.03}, 0.05, (), 3),
    ("evaluate", {"message-type": "evaluate", "probe-samples": 6, "stream-samples": 5}, None, (), 3),
    ("no-probe", {"stream-samples": 5, "radio": False}, None, (), 3),
    ("no-shots", {"stream-samples": 0, "probe-samples": 3}, None, (), 3),
    ("wrong-round", {"stream-samples": 5}, None, (), 4),
    ("private-sent", {**META}, None, (), 3),  # the MODEL carries the private head: spec-mismatch
    ("bad-epochs", {"local-epochs": 0}, None, (), 3),
    ("unknown-private", {**META, "private-names": "w7"}, None, ("w2", "b2"), 3),
    ("stream-ended", {"stream-samples": N_SAMPLES + 1}, None, (), 3),
    ("imprint-regressor", {**META, "reconstruction-rule": "imprint"}, None, ("w2", "b2"), 3),  # no classes: bad-field
    ("imprint-bad-model", {**META, "reconstruction-rule": "imprint"}, None, (), 3),  # the MODEL's fault comes first
]  # fmt: skip


def samples() -> list[tuple[np.ndarray, np.ndarray]]:
    return sine_device(SEED, stream_key=ROUND).stream.take(N_SAMPLES)


def python_round(hyperparameters: dict, top_p: float | None, private: tuple[str, ...], model_round: int):
    """(task bytes, model bytes, code, UPDATE or None, reply, samples consumed)."""
    task = TaskAssignment(round_id=ROUND, deadline_s=30.0, hyperparameters=hyperparameters, top_p=top_p).to_json()
    model = encode_model(theta(private), round_id=model_round)
    device = sine_device(SEED, stream_key=ROUND)
    device.deploy(NumpyMLP(SIZES))
    stream = iter(samples())
    consumed = [0]

    def counted():
        for sample in stream:
            consumed[0] += 1
            yield sample

    device.stream = counted()
    try:
        result = run_task(device, local_init(SEED, SIZES), task, model)
    except WireFormatError as exc:
        return task, model, exc.code, None, None, consumed[0]
    except StopIteration:
        return task, model, "stream-ended", None, None, consumed[0]
    except RuntimeError as exc:  # a generator's StopIteration inside run_task surfaces as RuntimeError
        assert "StopIteration" in str(exc)
        return task, model, "stream-ended", None, None, consumed[0]
    return task, model, "ok", result.update, result.reply, consumed[0]


def expected() -> list[tuple]:
    return [python_round(*spec[1:]) for spec in ROUNDS]


def write_rounds(out: Path, runs: list[tuple]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    arrays = [c_floats("LOCAL_INIT", np.concatenate([v.ravel() for v in local_init(SEED, SIZES).values()])),
              c_floats("SAMPLES", np.array([[x[0], y[0]] for x, y in samples()], np.float32))]  # fmt: skip
    table = []
    for i, (task, model, _, _, reply, _) in enumerate(runs):
        arrays += [c_bytes(f"TASK{i}", task), c_bytes(f"MODEL{i}", model)]
        time_s = np.float32(reply.time_s if reply else 0.0).item().hex()
        energy = np.float32(reply.energy_j if reply else 0.0).item().hex()
        table.append(f"{{TASK{i}, TASK{i}_LEN, MODEL{i}, MODEL{i}_LEN, {time_s}f, {energy}f}}")
    arrays.append("typedef struct { const unsigned char *task; unsigned task_len; const unsigned char *model; "
                  "unsigned model_len; float time_s, energy_j; } round_t;")  # fmt: skip
    arrays.append(f"static const round_t ROUNDS[{len(table)}] = {{{', '.join(table)}}};")
    device_id = sine_device(SEED, stream_key=ROUND).device_id
    c_header(out / "rounds.h", {"N_LAYERS": 3, "SIZES": "{1,40,40,1}", "N_PARAMS": 1761, "N_SAMPLES": N_SAMPLES,
                                "DEVICE_ID": f'"{device_id}"', "N_ROUNDS": len(table)}, arrays)  # fmt: skip
    return out


def compare(stdout: str, runs: list[tuple]) -> list[int]:
    """Assert every round agrees; the ticks of each round."""
    assert stdout.rstrip().endswith("done"), stdout[-300:]
    got = re.findall(r"^round (\d+) (\S+) consumed (\d+) steps (\d+) ticks (\d+) booked (\d+) (\d+) update ([0-9a-f]*)$", stdout, re.M)
    assert len(got) == len(runs)
    device_id = sine_device(SEED, stream_key=ROUND).device_id
    worst = 0.0
    for (label, *_), (_, _, code, update, reply, consumed), (_, c_code, c_consumed, _, _, sent, received, c_hex) in zip(ROUNDS, runs, got):
        assert c_code == code, label
        if code != "ok":
            assert c_hex == "", label
            continue
        assert int(c_consumed) == consumed, label  # the same samples, in the same roles
        c_update = bytes.fromhex(c_hex)
        assert len(c_update) == len(update), label
        # the device books what Python's does: these payloads' lengths, none when it learns alone (radio false)
        assert (int(sent), int(received)) == (reply.bytes_sent, reply.bytes_received), label
        mine = decode_weights(c_update, expected_kind=MessageKind.UPDATE, expected_round_id=ROUND, expected_device_id=device_id)
        want = decode_weights(update)
        assert (mine.num_examples, list(mine.metrics), list(mine.tensors)) == (want.num_examples, list(want.metrics), list(want.tensors)), label
        for name, value in want.metrics.items():
            exact = name in ("device-time-s", "device-energy-j")
            assert mine.metrics[name] == pytest.approx(value, rel=0 if exact else RTOL, abs=0 if exact else 1e-6), (label, name)
        worst = max(worst, assert_same_update_tensors(mine.tensors, want.tensors, rtol=RTOL, atol=ATOL, label=label))
        if not label.startswith("evaluate"):
            assert any(np.max(np.abs(v.values if isinstance(v, SparseTensor) else v), initial=0) > 1e-3 for v in want.tensors.values()) or label == "no-shots"
    print(f"largest |δ_C − δ_numpy| over the rounds: {worst:.2e}")
    return [int(g[4]) for g in got]


@needs_cc
def test_host_rounds_answer_as_run_task(tmp_path: Path) -> None:
    runs = expected()
    assert {r[2] for r in runs} == {"ok", "wrong-round", "spec-mismatch", "bad-field", "stream-ended"}
    exe = build_host(SOURCES, [write_rounds(tmp_path / "v", runs)], tmp_path / "device_round")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    compare(done.stdout, runs)


@needs_arm
def test_qemu_rounds_answer_as_run_task_and_their_instruction_counts(tmp_path: Path) -> None:
    runs = expected()
    elf = build_elf("mps2-an386", SOURCES, include_dirs=[write_rounds(tmp_path / "v", runs), MLP_C.parent],
                    out_dir=tmp_path, name="device_round")  # fmt: skip
    result = run_elf(elf, timeout=60, icount=True)
    assert result.exit_code == 0, result.stdout[-300:]
    ticks = compare(result.stdout, runs)
    steps = [int(s) for s in re.findall(r"^round \d+ \S+ consumed \d+ steps (\d+)", result.stdout, re.M)]
    for (label, *_), t, s in zip(ROUNDS, ticks, steps):
        print(f"round {label}: {t * 40:,} instructions, {s} SGD steps")
    print(f"image {image_size(elf)}")
    dense = ticks[0] * 40
    assert 10 * 60_000 < dense < 50 * 200_000  # 10 steps + 10 probe passes + MODEL check (CRC) + UPDATE encode
