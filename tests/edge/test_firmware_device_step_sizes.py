"""STEP_SIZES in, HYPERGRADIENT out: the device round in firmware C (tf_round_run_step_sizes) answers as
firmware_sim.mqtt_round.run_task does with a STEP_SIZES payload.

Both get the same TASK, MODEL and STEP_SIZES bytes (Python's encoders) and the same sample sequence. The C device
decodes the step sizes, runs the round, measures d(query loss after K online steps from θ at base rate × step
size)/d(log step size) on its next K + Q samples (edge/step_sizes.py, Hessian-vector products by central
differences), and writes a HYPERGRADIENT to send before its UPDATE. Checked:

- the C HYPERGRADIENT decodes with edge.wire.decode_hypergradient (kind, round, device id, the model's names and
  shapes), and is byte for byte what edge.wire.encode_hypergradient writes for its own values and query loss
  (constructed bit-identity: the same values through both encoders);
- its values and query loss equal Python's within the tolerance below, and the UPDATE too;
- the bytes booked (received: TASK + MODEL + STEP_SIZES; sent: UPDATE + HYPERGRADIENT) are Python's;
- refusals carry Python's codes: no STEP_SIZES, wrong round, a zero step size (non-positive), a sparse one
  (bad-flags), a missing tensor (spec-mismatch), a MODEL sent as STEP_SIZES (unknown-kind); evaluation and
  TinyMetaFed rounds ignore step sizes; a hypergradient that is not finite is dropped and the UPDATE goes alone.

Tolerance, and why looser than the SGD step's: each Hessian-vector product is (g(φ + h·u) − g(φ − h·u)) / 2h with
h·|u| = 1e-3, so the float32 rounding of the two gradients (~1e-7 of their size, and numpy's BLAS sums differ
from C's fixed order) is divided by 2h: relative noise ~1e-4 per product, carried through K = 5 products. Measured
here: max |hyper_C − hyper_numpy| / max |hyper_numpy| is 1.4e-4 on the host (x86-64, printed by the test); the test
allows 2e-3 of the largest entry (atol 2e-3·max|hyper|, 14x that), while scaling the base rate by 1.01 moves the hypergradient by
more than that (asserted), so a slip in the algorithm cannot hide in it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.firmware.build import build_elf
from edge.firmware.device import MLP_C, ROUND_C, TASK_C, UPDATE_C, build_host, c_bytes, c_floats, c_header, host_compiler
from edge.firmware.qemu import run_elf
from edge.mlp import NumpyMLP
from edge.wire import MessageKind, SparseTensor, TaskAssignment, WireFormatError, decode_hypergradient, decode_weights
from edge.wire import encode_hypergradient, encode_model, encode_step_sizes, encode_weights
from firmware_sim.fleet import local_init, sine_device
from firmware_sim.mqtt_round import run_task

MAIN = Path(__file__).parent / "firmware_c" / "device_round.c"
SOURCES = [MAIN, MLP_C, UPDATE_C, TASK_C, ROUND_C]
SIZES, SEED, ROUND, N_PARAMS = (1, 40, 40, 1), 4, 3, 1761
N_SAMPLES = 80
RTOL, ATOL = 1e-4, 1e-5  # the UPDATE, as test_firmware_device_round.py
HYPER_RTOL = 2e-3  # of the largest |entry|; see the module docstring
needs_cc = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler")
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)
STEPS = {"step-size-base-rate": 0.02, "step-size-shots": 5, "step-size-query": 20}
META = {"private-names": "w2,b2", "reconstruction-samples": 8, "reconstruction-lr": 0.05}


def theta() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    return {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in NumpyMLP(SIZES, seed=SEED + 100).get_weights().items()}


def scales(spread: float = 0.5, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: np.exp(rng.normal(0, spread, v.shape)).astype(np.float32) for k, v in theta().items()}


def step_sizes_payload(kind: str) -> bytes | None:
    good = scales()
    if kind == "good":
        return encode_step_sizes(good, round_id=ROUND)
    if kind == "none":
        return None
    if kind == "wrong-round":
        return encode_step_sizes(good, round_id=ROUND + 1)
    if kind == "zero":  # encode_step_sizes refuses it; a server bug or line noise could still send it
        bad = {k: v.copy() for k, v in good.items()}
        bad["w1"][3, 7] = 0.0
        return encode_weights(bad, round_id=ROUND, kind=MessageKind.STEP_SIZES)
    if kind == "sparse":
        dense = {k: v for k, v in good.items() if k != "b1"}
        sparse = {"b1": SparseTensor((40,), np.arange(40, dtype=np.uint32), good["b1"])}
        return encode_weights(dense, sparse=sparse, round_id=ROUND, kind=MessageKind.STEP_SIZES)
    if kind == "missing":
        return encode_weights({k: v for k, v in good.items() if k != "b2"}, round_id=ROUND, kind=MessageKind.STEP_SIZES)
    if kind == "model":
        return encode_model(good, round_id=ROUND)
    if kind == "huge":  # rates overflow float32 in the K steps: no finite hypergradient
        return encode_step_sizes({k: np.full_like(v, 3e38) for k, v in good.items()}, round_id=ROUND)
    raise ValueError(kind)


ROUNDS: list[tuple[str, dict, float | None, str, tuple[str, ...]]] = [  # label, hyperparameters, top_p, STEP_SIZES, private
    ("dense", {"stream-samples": 10, "probe-samples": 5, **STEPS}, None, "good", ()),
    ("top-p-epochs", {"stream-samples": 8, "local-epochs": 2, "probe-samples": 3, **STEPS, "step-size-shots": 3,
                      "step-size-query": 7}, 0.1, "good", ()),
    ("no-radio", {"stream-samples": 6, "radio": False, **STEPS}, None, "good", ()),
    ("evaluate", {"message-type": "evaluate", "probe-samples": 4, "stream-samples": 5, **STEPS}, None, "good", ()),
    ("metafed", {**META, "stream-samples": 10, "probe-samples": 5, **STEPS}, None, "none", ("w2", "b2")),
    ("dropped", {"stream-samples": 5, **STEPS, "step-size-base-rate": 10.0}, None, "huge", ()),
    ("none-came", {"stream-samples": 5, **STEPS}, None, "none", ()),
    ("wrong-round", {"stream-samples": 5, **STEPS}, None, "wrong-round", ()),
    ("zero", {"stream-samples": 5, **STEPS}, None, "zero", ()),
    ("sparse", {"stream-samples": 5, **STEPS}, None, "sparse", ()),
    ("missing", {"stream-samples": 5, **STEPS}, None, "missing", ()),
    ("model-kind", {"stream-samples": 5, **STEPS}, None, "model", ()),
    ("stream-ended", {"stream-samples": 30, **STEPS, "step-size-query": 50}, None, "good", ()),  # 85 > N_SAMPLES
    ("beyond-scratch", {"stream-samples": 5, **STEPS, "step-size-shots": 6}, None, "good", ()),
]  # fmt: skip
FIRMWARE_REFUSES = {"beyond-scratch": "too-many"}  # 6 weight sets do not fit the test image's scratch (K <= 5): refused


def samples() -> list[tuple[np.ndarray, np.ndarray]]:
    return sine_device(SEED, stream_key=ROUND).stream.take(N_SAMPLES)


def python_round(hyperparameters: dict, top_p: float | None, steps: str, private: tuple[str, ...]):
    """(task, model, step sizes, code, UPDATE, HYPERGRADIENT, reply)."""
    task = TaskAssignment(round_id=ROUND, deadline_s=30.0, hyperparameters=hyperparameters, top_p=top_p).to_json()
    model = encode_model({k: v for k, v in theta().items() if k not in private}, round_id=ROUND)
    step_sizes = step_sizes_payload(steps)
    device = sine_device(SEED, stream_key=ROUND)
    device.deploy(NumpyMLP(SIZES))
    device.stream = iter(samples())
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # the "dropped" round overflows on purpose
            result = run_task(device, local_init(SEED, SIZES), task, model, step_sizes)
    except WireFormatError as exc:
        return task, model, step_sizes, exc.code, None, None, None
    except RuntimeError as exc:  # the generator's StopIteration inside run_task
        assert "StopIteration" in str(exc)
        return task, model, step_sizes, "stream-ended", None, None, None
    except StopIteration:
        return task, model, step_sizes, "stream-ended", None, None, None
    return task, model, step_sizes, "ok", result.update, result.hypergradient, result.reply


def write_rounds(out: Path, runs: list[tuple]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    arrays = [c_floats("LOCAL_INIT", np.concatenate([v.ravel() for v in local_init(SEED, SIZES).values()])),
              c_floats("SAMPLES", np.array([[x[0], y[0]] for x, y in samples()], np.float32))]  # fmt: skip
    table = []
    for i, (task, model, steps, _, _, _, reply) in enumerate(runs):
        arrays += [c_bytes(f"TASK{i}", task), c_bytes(f"MODEL{i}", model), c_bytes(f"STEPS{i}", steps or b"")]
        time_s = np.float32(reply.time_s if reply else 0.0).item().hex()
        energy = np.float32(reply.energy_j if reply else 0.0).item().hex()
        step_ref = f"STEPS{i}, STEPS{i}_LEN" if steps is not None else "NULL, 0"
        table.append(f"{{TASK{i}, TASK{i}_LEN, MODEL{i}, MODEL{i}_LEN, {time_s}f, {energy}f, {step_ref}}}")
    arrays.append("typedef struct { const unsigned char *task; unsigned task_len; const unsigned char *model; "
                  "unsigned model_len; float time_s, energy_j; const unsigned char *step_sizes; unsigned step_sizes_len; } round_t;")
    arrays.append(f"static const round_t ROUNDS[{len(table)}] = {{{', '.join(table)}}};")
    device_id = sine_device(SEED, stream_key=ROUND).device_id
    scratch = N_PARAMS + 60 * 2 + (5 + 4) * N_PARAMS  # tf_round_step_size_floats for K <= 5, K + Q <= 60: 64 KB
    c_header(out / "rounds.h", {"N_LAYERS": 3, "SIZES": "{1,40,40,1}", "N_PARAMS": N_PARAMS, "N_SAMPLES": N_SAMPLES,
                                "DEVICE_ID": f'"{device_id}"', "N_ROUNDS": len(table), "STEP_SIZE_ROUNDS": 1,
                                "STEP_SCRATCH_FLOATS": scratch}, arrays)  # fmt: skip
    return out


def hypergradient_values(payload: bytes, device_id: str) -> tuple[dict[str, np.ndarray], float, int]:
    spec = {k: (v.shape, v.dtype) for k, v in theta().items()}
    message = decode_hypergradient(payload, spec, expected_round_id=ROUND, expected_device_id=device_id)
    assert list(message.metrics) == ["step-size-query-loss"] and list(message.tensors) == list(spec)
    return message.dense, message.metrics["step-size-query-loss"], message.num_examples


def compare(stdout: str, runs: list[tuple]) -> float:
    """Assert every round agrees with Python; the worst relative hypergradient difference."""
    assert stdout.rstrip().endswith("done"), stdout[-300:]
    got = re.findall(r"^round (\d+) (\S+) consumed (\d+) steps (\d+) ticks (\d+) booked (\d+) (\d+) update ([0-9a-f]*)$", stdout, re.M)
    hyper = re.findall(r"^hypergradient (\d+) dropped (\d) ([0-9a-f]*)$", stdout, re.M)
    assert len(got) == len(hyper) == len(runs)
    device_id = sine_device(SEED, stream_key=ROUND).device_id
    worst = 0.0
    for (label, *_), run, (_, c_code, _, _, _, sent, received, c_update), (_, dropped, c_hyper) in zip(ROUNDS, runs, got, hyper):
        _, _, _, code, update, hypergradient, reply = run
        assert c_code == FIRMWARE_REFUSES.get(label, code), label
        code = c_code
        if code != "ok":
            assert c_update == c_hyper == "", label
            continue
        assert (int(sent), int(received)) == (reply.bytes_sent, reply.bytes_received), label
        mine = decode_weights(bytes.fromhex(c_update), expected_kind=MessageKind.UPDATE, expected_device_id=device_id)
        want = decode_weights(update)
        assert len(bytes.fromhex(c_update)) == len(update) and list(mine.tensors) == list(want.tensors), label
        for name, value in want.tensors.items():
            c_value = mine.tensors[name]
            if isinstance(value, SparseTensor):
                np.testing.assert_array_equal(c_value.indices, value.indices, err_msg=f"{label} {name}")
                c_value, value = c_value.values, value.values
            np.testing.assert_allclose(c_value, value, rtol=RTOL, atol=ATOL, err_msg=f"{label} {name}")
        assert (c_hyper != "") == (hypergradient is not None), label
        assert int(dropped) == (label == "dropped"), label
        if hypergradient is None:
            continue
        c_bytes_ = bytes.fromhex(c_hyper)
        values, loss, examples = hypergradient_values(c_bytes_, device_id)
        # byte for byte what the Python codec writes for these values (the same bits through both encoders)
        assert c_bytes_ == encode_hypergradient(values, round_id=ROUND, device_id=device_id, num_examples=examples,
                                                metrics={"step-size-query-loss": loss}), label  # fmt: skip
        want_values, want_loss, want_examples = hypergradient_values(hypergradient, device_id)
        assert len(c_bytes_) == len(hypergradient) and examples == want_examples, label
        assert loss == pytest.approx(want_loss, rel=1e-4), label
        top = max(float(np.abs(v).max()) for v in want_values.values())
        assert top > 1e-4, label  # a hypergradient worth comparing
        for name, value in want_values.items():
            np.testing.assert_allclose(values[name], value, rtol=0, atol=HYPER_RTOL * top, err_msg=f"{label} {name}")
            worst = max(worst, float(np.abs(values[name] - value).max()) / top)
    print(f"largest |hyper_C − hyper_numpy| / max |hyper_numpy| over the rounds: {worst:.1e}")
    return worst


def all_runs() -> list[tuple]:
    runs = [python_round(*spec[1:]) for spec in ROUNDS]
    assert [r[3] for r in runs] == ["ok"] * 6 + ["bad-field", "wrong-round", "non-positive", "bad-flags", "spec-mismatch",
                                                  "unknown-kind", "stream-ended", "ok"]  # fmt: skip
    return runs


@needs_cc
def test_host_step_size_rounds_answer_as_run_task(tmp_path: Path) -> None:
    runs = all_runs()
    exe = build_host(SOURCES, [write_rounds(tmp_path / "v", runs)], tmp_path / "device_round_steps")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    compare(done.stdout, runs)


@needs_cc
def test_the_tolerance_tells_a_one_percent_base_rate_change_apart() -> None:
    """The hypergradient tolerance is tighter than a 1 % change of the base rate moves it."""
    from edge.mlp import regression_gradients
    from edge.step_sizes import stream_hypergradient

    gradient = regression_gradients(SIZES)
    a, _ = stream_hypergradient(theta(), scales(), 0.02, iter(samples()), 5, 20, gradient)
    b, _ = stream_hypergradient(theta(), scales(), 0.02 * 1.01, iter(samples()), 5, 20, gradient)
    top = max(float(np.abs(v).max()) for v in a.values())
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) > HYPER_RTOL * top


@needs_arm
def test_qemu_step_size_rounds_answer_as_run_task(tmp_path: Path) -> None:
    runs = all_runs()
    elf = build_elf("mps2-an386", SOURCES, include_dirs=[write_rounds(tmp_path / "v", runs), MLP_C.parent],
                    out_dir=tmp_path, name="device_round_steps")  # fmt: skip
    result = run_elf(elf, timeout=120, icount=True)
    assert result.exit_code == 0, result.stdout[-300:]
    compare(result.stdout, runs)
    ticks = re.findall(r"^round \d+ (\S+) consumed \d+ steps \d+ ticks (\d+)", result.stdout, re.M)
    print(f"dense round with the hypergradient (K=5, Q=20) under QEMU -icount shift=0: {int(ticks[0][1]) * 40:,} instructions")
