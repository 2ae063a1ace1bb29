"""The device round in firmware C with the classifier (MLPClassifier, softmax cross-entropy on class labels) answers
as firmware_sim.mqtt_round.run_task does: whole-model and TinyMetaFed rounds (private output layer rebuilt by SGD from
the firmware's zero head, as firmware_sim.task_client_app.firmware_init ships it, or imprinted from class means,
edge/imprinting.py), dense and Top-P, on the same
feature vectors and labels; a label out of range is refused. Host and QEMU, as test_firmware_device_round.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.device import SimulatedDevice
from edge.firmware.build import build_elf
from edge.firmware.device import MLP_C, ROUND_C, TASK_C, UPDATE_C, build_host, c_bytes, c_floats, c_header, host_compiler
from edge.firmware.qemu import run_elf
from edge.mlp import init_mlp_weights
from edge.mlp_classifier import MLPClassifier
from edge.profiles import NANO_33_BLE_SENSE
from edge.validation import InvalidInputError
from edge.wire import MessageKind, SparseTensor, TaskAssignment, WireFormatError, decode_weights, encode_model
from firmware_sim.mqtt_round import run_task
from tests.edge.sparse_compare import assert_same_update_tensors

MAIN = Path(__file__).parent / "firmware_c" / "device_round.c"
SOURCES = [MAIN, MLP_C, UPDATE_C, TASK_C, ROUND_C]
N_FEATURES = 80  # wider than 64: the round once held a sample in 64-float stack buffers (keywords need more)
SIZES, ROUND, DEVICE_ID = (N_FEATURES, 12, 4), 2, "cls-7"
N_SAMPLES = 60
RTOL, ATOL = 1e-4, 1e-5
needs_cc = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler")
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)
META = {"private-names": "w1,b1", "reconstruction-samples": 8, "reconstruction-lr": 0.1}
ROUNDS = [  # label, hyperparameters, top_p, private
    ("dense", {"stream-samples": 10, "probe-samples": 4, "inner-learning-rate": 0.05}, None, ()),
    ("epochs", {"stream-samples": 8, "local-epochs": 3, "probe-samples": 3, "inner-learning-rate": 0.05}, None, ()),
    ("metafed", {**META, "stream-samples": 10, "probe-samples": 5, "inner-learning-rate": 0.05}, None, ("w1", "b1")),
    ("metafed-top-p", {**META, "stream-samples": 10, "probe-samples": 5}, 0.2, ("w1", "b1")),
    ("imprint", {**META, "reconstruction-rule": "imprint", "stream-samples": 10, "probe-samples": 5,
                 "inner-learning-rate": 0.05}, None, ("w1", "b1")),
    ("imprint-top-p", {**META, "reconstruction-rule": "imprint", "reconstruction-samples": 20, "stream-samples": 6}, 0.3,
     ("w1", "b1")),
    ("imprint-not-the-head", {**META, "reconstruction-rule": "imprint", "private-names": "w0,b0"}, None, ("w0", "b0")),
]
REFUSED = {"imprint-not-the-head": "bad-field"}  # check_imprintable: the output layer and nothing else


def samples(bad_at: int | None = None) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(21)
    centres = rng.normal(0, 1.5, size=(4, N_FEATURES))
    labels = rng.integers(0, 4, N_SAMPLES)
    out = [((centres[k] + rng.normal(0, 1, N_FEATURES)).astype(np.float32), int(k)) for k in labels]
    if bad_at is not None:
        out[bad_at] = (out[bad_at][0], 7)
    return out


def firmware_init() -> dict[str, np.ndarray]:
    weights = init_mlp_weights(SIZES, seed=77)
    return {k: np.zeros_like(v) if k in ("w1", "b1") else v for k, v in weights.items()}


def theta(private: tuple[str, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for k, v in init_mlp_weights(SIZES, 5).items() if k not in private}


def python_round(hyperparameters: dict, top_p: float | None, private: tuple[str, ...], stream: list):
    task = TaskAssignment(round_id=ROUND, deadline_s=30.0, hyperparameters=hyperparameters, top_p=top_p).to_json()
    model = encode_model(theta(private), round_id=ROUND)
    device = SimulatedDevice(device_id=DEVICE_ID, profile=NANO_33_BLE_SENSE, stream=iter(stream))
    device.deploy(MLPClassifier(SIZES))
    try:
        result = run_task(device, firmware_init(), task, model)
    except InvalidInputError:
        return task, model, "bad-label", None, None
    except WireFormatError as exc:
        return task, model, exc.code, None, None
    return task, model, "ok", result.update, result.reply


def write_rounds(out: Path, runs: list[tuple], stream: list) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    flat = np.concatenate([np.concatenate([x, [np.float32(label)]]) for x, label in stream]).astype(np.float32)
    arrays = [c_floats("LOCAL_INIT", np.concatenate([v.ravel() for v in firmware_init().values()])), c_floats("SAMPLES", flat)]
    table = []
    for i, (task, model, _, _, reply) in enumerate(runs):
        arrays += [c_bytes(f"TASK{i}", task), c_bytes(f"MODEL{i}", model)]
        time_s, energy = (np.float32(v if reply else 0.0).item().hex() for v in ((reply.time_s, reply.energy_j) if reply else (0.0, 0.0)))
        table.append(f"{{TASK{i}, TASK{i}_LEN, MODEL{i}, MODEL{i}_LEN, {time_s}f, {energy}f}}")
    arrays.append("typedef struct { const unsigned char *task; unsigned task_len; const unsigned char *model; "
                  "unsigned model_len; float time_s, energy_j; } round_t;")  # fmt: skip
    arrays.append(f"static const round_t ROUNDS[{len(table)}] = {{{', '.join(table)}}};")
    n_params = sum(v.size for v in firmware_init().values())
    c_header(out / "rounds.h", {"N_LAYERS": 2, "SIZES": "{" + ",".join(map(str, SIZES)) + "}", "N_PARAMS": n_params,
                                "N_SAMPLES": N_SAMPLES, "DEVICE_ID": f'"{DEVICE_ID}"', "N_ROUNDS": len(table), "N_IN": N_FEATURES, "N_Y": 1,
                                "CLASSIFY": ""}, arrays)  # fmt: skip
    return out


def compare(stdout: str, runs: list[tuple]) -> None:
    assert stdout.rstrip().endswith("done"), stdout[-300:]
    got = re.findall(r"^round (\d+) (\S+) consumed (\d+) steps (\d+) ticks (\d+) booked (\d+) (\d+) update ([0-9a-f]*)$", stdout, re.M)
    assert len(got) == len(runs)
    for (_, _, code, update, reply), (i, c_code, *_, c_hex) in zip(runs, got):
        assert c_code == code, i
        if code != "ok":
            continue
        mine = decode_weights(bytes.fromhex(c_hex), expected_kind=MessageKind.UPDATE, expected_device_id=DEVICE_ID)
        want = decode_weights(update)
        assert len(bytes.fromhex(c_hex)) == len(update)
        assert (mine.num_examples, list(mine.metrics), list(mine.tensors)) == (want.num_examples, list(want.metrics), list(want.tensors))
        for name, value in want.metrics.items():
            assert mine.metrics[name] == pytest.approx(value, rel=RTOL, abs=1e-6), name
        assert_same_update_tensors(mine.tensors, want.tensors, rtol=RTOL, atol=ATOL, label=str(i))
        assert max(np.max(np.abs(v.values if isinstance(v, SparseTensor) else v), initial=0) for v in want.tensors.values()) > 1e-3


def all_runs() -> tuple[list[tuple], list]:
    stream = samples()
    runs = [python_round(*spec[1:], stream) for spec in ROUNDS]
    bad = samples(bad_at=6)  # a label 7 for a 4-class head, among the shots
    return runs, stream, bad


@needs_cc
def test_host_classifier_rounds_answer_as_run_task(tmp_path: Path) -> None:
    runs, stream, bad = all_runs()
    assert [r[2] for r in runs] == [REFUSED.get(label, "ok") for label, *_ in ROUNDS]
    exe = build_host(SOURCES, [write_rounds(tmp_path / "v", runs, stream)], tmp_path / "device_round_cls")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    compare(done.stdout, runs)
    # the same rounds on a stream with a bad label: both sides refuse every round that reaches it
    bad_runs = [python_round(*spec[1:], bad) for spec in ROUNDS]
    assert "bad-label" in [r[2] for r in bad_runs]
    exe = build_host(SOURCES, [write_rounds(tmp_path / "b", bad_runs, bad)], tmp_path / "device_round_bad")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    compare(done.stdout, bad_runs)


@needs_arm
def test_qemu_classifier_rounds_answer_as_run_task(tmp_path: Path) -> None:
    runs, stream, _ = all_runs()
    elf = build_elf("mps2-an386", SOURCES, include_dirs=[write_rounds(tmp_path / "v", runs, stream), MLP_C.parent],
                    out_dir=tmp_path, name="device_round_cls")  # fmt: skip
    result = run_elf(elf, timeout=60, icount=True)
    assert result.exit_code == 0, result.stdout[-300:]
    compare(result.stdout, runs)
