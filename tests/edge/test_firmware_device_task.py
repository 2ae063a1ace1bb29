"""The device's TASK parser in firmware C (edge/firmware/device/task.c) reads a TASK as Python does.

For each task below, the C code is the ``WireFormatError.code`` that ``TaskAssignment.from_json``, then
``RoundRequest.from_hyperparameters`` (as ``firmware_sim.mqtt_round.request_of`` calls it) and
``edge.device_round.shared_spec`` give it, or "ok"; and an accepted task gives the request's fields (counts, rates
bit for bit as doubles, private names as tensor bits, Top-P, radio). Host and QEMU run the same main.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edge.device_round import shared_spec
from edge.firmware.build import build_elf
from edge.firmware.device import TASK_C, build_host, c_bytes, c_header, host_compiler
from edge.firmware.qemu import run_elf
from edge.mlp import NumpyMLP
from edge.wire import TaskAssignment, WireFormatError
from firmware_sim.mqtt_round import request_of

MAIN = Path(__file__).parent / "firmware_c" / "device_task.c"
NAMES = ["w0", "b0", "w1", "b1", "w2", "b2"]
needs_cc = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler")
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


def task(hyperparameters: dict | None = None, **fields: object) -> bytes:
    obj = {"v": 1, "type": "task", "round_id": 3, "deadline_s": 30.0, "hyperparameters": hyperparameters or {}}
    obj.update(fields)
    return json.dumps(obj).encode()


def compact(hyperparameters: dict) -> bytes:
    obj = {"v": 1, "type": "task", "round_id": 3, "deadline_s": 30.0, "hyperparameters": hyperparameters}
    return json.dumps(obj, separators=(",", ":")).encode()


def hp(**values: object) -> bytes:
    return task({k.replace("_", "-"): v for k, v in values.items()})


META = {"private-names": "w2,b2", "reconstruction-samples": 8, "reconstruction-lr": 0.05}
TASKS: list[bytes] = [
    task(),
    task({"inner-learning-rate": 0.01, "stream-samples": 64}, top_p=0.1),
    hp(stream_samples=12, local_epochs=3, probe_samples=5, inner_learning_rate=0.1, server_round=9),
    hp(stream_samples=12.0, local_epochs=2.0),  # whole numbers as floats count
    task(META),
    task({**META, "private-names": " w2 , b2 ,, "}),
    task({**META, "private-names": "w2\u00a0"}),  # str.strip strips a no-break space
    task({"private-names": ",", "reconstruction-samples": -1}),  # no private part: its count is not read
    task({"reconstruction-samples": -1}),
    task(META, top_p=1.0),  # Top-100% is dense
    task(META, top_p=None),
    task({"top-p": 0.25}),
    task({"top-p": 0.25}, top_p=0.5),  # the task's field wins
    hp(message_type="evaluate"),
    hp(message_type="train", radio=False),
    hp(step_size_base_rate=0.5, step_size_shots=3, step_size_query=2),  # measured in a whole-model training round
    hp(step_size_base_rate=0.5, step_size_shots=3, step_size_query=2, message_type="evaluate"),  # not when evaluating
    task({**META, "step-size-base-rate": 0.5, "step-size-shots": 3, "step-size-query": 2}),  # nor with a private part
    task({"extra-key": "anything", "other": True, "n": -3}),
    task({**META, "reconstruction-rule": "imprint"}),  # parsed; the round refuses it for a regressor (after the MODEL)
    task({"reconstruction-rule": "imprint"}),  # no private part: the rule is unused
    # refusals: the request's rules
    hp(local_epochs=0), hp(local_epochs=1.5), hp(stream_samples=-1), hp(stream_samples=True), hp(probe_samples="3"),
    hp(inner_learning_rate=10.5), hp(inner_learning_rate=-0.1), hp(inner_learning_rate=False), hp(server_round=-2),
    hp(reconstruction_lr=11), hp(message_type="test"), hp(message_type=1), hp(radio="yes"), hp(radio=1),
    task({"private-names": 3}), task({**META, "reconstruction-samples": 2.5}), task({**META, "private-names": "w2,w9"}),
    task({**META, "private-names": "w3"}),
    task({"reconstruction-rule": "magic"}), task({"top-p": 0}), task({"top-p": 1.5}), task({"top-p": "0.1"}),
    hp(step_size_base_rate=0.5), hp(step_size_shots=3, step_size_query=2), hp(step_size_base_rate=0, step_size_shots=1, step_size_query=1),
    hp(local_epochs=2**33),  # a whole number beyond the firmware's counters
    # refusals: the task's own fields
    task(top_p=0), task(top_p=1.5), task(top_p=True), task(v=2), task(v=1.0), task(v=True), task(type="model"),
    task(round_id=-1), task(round_id=2**32), task(round_id=3.0), task(round_id=True), task(deadline_s=0),
    task(deadline_s=86401), task(deadline_s="30"), task(hyperparameters=[1]), task(extra=1),
    b'{"v":1,"type":"task","round_id":3,"hyperparameters":{}}',
    task({f"k{i}": i for i in range(33)}), task({f"k{i}": i for i in range(32)}), task({"bad key": 1}), task({"": 1}),
    task({"x" * 33: 1}), task({"x" * 32: 1}), task({"k": "s" * 129}), task({"k": "é" * 128}), task({"k": None}),
    task({"k": [1]}), task({"k": {"a": 1}}), task({"k": 2**53}), task({"k": 2**53 + 1}), task({"k": -(2**53) - 1}),
    # strict JSON
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":1e400}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":NaN}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":Infinity,"hyperparameters":{}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"a":1,"a":2}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"a":1,"\\u0061":2}}',
    b'{"v":1,"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":{"x":1,"x":2}}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{}} x',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{}',
    b'{"v":1,"type":"task","round_id":03,"deadline_s":30,"hyperparameters":{}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30.,"hyperparameters":{}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":"\\x"}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":"a\nb"}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":"\xff"}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":"\xc0\xaf"}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":"\xe2\x82\xac"}}',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":"\\ud83d\\ude00"}}',
    b' \n{"v":1,"type":"task","round_id":3,"deadline_s":3e1,"hyperparameters":{"stream\\u002dsamples":7}}\t',
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"private-names":"w2,\\u00a0b2"}}',
    b'[1,2]', b'"task"', b'', b'{}', b'{"v":1}',
    task({"pad": "x" * 100, **{f"p{i}": "y" * 120 for i in range(30)}}),  # over the 4 KiB cap
]
# hostile tasks near the 4 KiB cap, for the parser's worst case (duplicate keys are checked by rescanning an object)
HOSTILE: list[bytes] = [
    compact({f"{i:x}": 0 for i in range(500)}),  # 500 keys: too-many, after every pair was checked for duplicates
    compact({f"{i:x}": {f"{j}": 0 for j in range(8)} for i in range(70)}),  # 70 objects of 8 keys each
    b'{"v":1,"type":"task","round_id":3,"deadline_s":30,"hyperparameters":{"k":' + b"[" * 14 + b"]" * 14 + b"}}",
]
assert all(len(h) <= 4096 for h in HOSTILE)
TASKS += HOSTILE


def f64(value: float) -> str:
    return struct.pack(">d", float(value)).hex()


def python_code(payload: bytes) -> tuple[str, str]:
    """(code, fields) as the C main prints them."""
    try:
        assignment = TaskAssignment.from_json(payload)
        request = request_of(assignment)
        shared_spec(NumpyMLP((1, 40, 40, 1)), request.private_names)
    except WireFormatError as exc:
        return exc.code, ""
    if request.epochs > 2**32 - 1:
        return "bad-field", ""  # beyond the firmware's counters (Python takes any whole number)
    mask = sum(1 << NAMES.index(n) for n in set(request.private_names))
    plan = request.step_sizes
    fields = (f"{assignment.round_id} {request.round_id} {int(request.evaluate)} {request.shots} {request.epochs} {request.probe} "
              f"{f64(request.learning_rate)} {mask} {request.reconstruction_samples} {f64(request.reconstruction_lr)} "
              f"{f64(request.top_p or 0.0)} {int(request.radio)} "
              f"{int(request.reconstruction_rule == 'imprint' and bool(request.private_names))} "
              f"{int(request.measures_step_sizes)} {f64(plan.base_rate if plan else 0.0)} {plan.shots if plan else 0} "
              f"{plan.query if plan else 0}")  # fmt: skip
    return "ok", fields


def write_tasks(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    arrays = [c_bytes(f"T{i}", t) for i, t in enumerate(TASKS)]
    arrays.append("typedef struct { const unsigned char *data; unsigned len; } task_t;")
    arrays.append(f"static const task_t TASKS[{len(TASKS)}] = {{{', '.join(f'{{T{i}, T{i}_LEN}}' for i in range(len(TASKS)))}}};")
    c_header(out / "tasks.h", {"N_TASKS": len(TASKS)}, arrays)
    return out


def check(stdout: str) -> None:
    assert stdout.rstrip().endswith("done"), stdout[-300:]
    got = re.findall(r"^task (\d+) (\S+) ?(.*)$", stdout, re.M)
    assert len(got) == len(TASKS)
    codes = set()
    for payload, (_, code, fields) in zip(TASKS, got):
        assert (code, fields) == python_code(payload), payload[:160]
        codes.add(code)
    assert codes == {"ok", "bad-field", "bad-json", "unsupported-version", "bad-name", "too-many", "non-finite",
                     "spec-mismatch", "oversized"}  # fmt: skip


@needs_cc
def test_host_task_parser_agrees_with_python(tmp_path: Path) -> None:
    exe = build_host([MAIN, TASK_C], [write_tasks(tmp_path / "v")], tmp_path / "device_task")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    check(done.stdout)


@needs_arm
def test_qemu_task_parser_agrees_with_python_and_its_worst_case_is_bounded(tmp_path: Path) -> None:
    elf = build_elf("mps2-an386", [MAIN, TASK_C], include_dirs=[write_tasks(tmp_path / "v"), TASK_C.parent],
                    out_dir=tmp_path, name="device_task")  # fmt: skip
    result = run_elf(elf, timeout=30, icount=True)
    assert result.exit_code == 0, result.stdout[-300:]
    check(result.stdout)
    counts = [int(n) for n in re.findall(r"^instructions \d+ (\d+)$", result.stdout, re.M)]
    typical, worst = counts[1], max(counts[-len(HOSTILE):])
    print(f"TASK parse: {typical:,} instructions for a typical task, {worst:,} for the worst hostile one")
    assert typical < 200_000 and worst < 4_000_000  # < 65 ms at the Nano's 64 MHz, even for a hostile task
