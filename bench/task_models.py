"""Device-sized task models: memory on the Nano, int8 error, few-shot accuracy and head-update overhead.

For each task backbone of :mod:`server.models` (characters, keywords,
presence), built at its default size (or ``--small``), this measures:

* flash bytes, tensor-arena bytes and TinyOL head RAM, read through the
  registry's describer (:func:`server.models.tinyml.task_fit`), against the
  Nano 33 BLE Sense's usable 628 KB flash / 172 KB RAM;
* int8 vs float feature error on unseen devices: ``||int8 − float|| / ||float||``
  and the largest absolute error as a fraction of the float features' range;
* accuracy of the TinyOL head learning online (one SGD step per sample, one
  pass) on devices and classes never used in training: characters 5-way 1-
  and 5-shot on held-out alphabets (empty head grown with ``add_class``);
  keywords 4-way 5-shot with 4 trained keywords and with 4 words the backbone
  never heard; presence balanced accuracy on a third day of an unseen room
  after two days streamed (shipped head unadapted, shipped head adapted, and
  an empty head);
* the same episodes with the head *imprinted* instead
  (:meth:`edge.online_head.OnlineHead.imprint_one`: an empty head, each
  support sample folded into its class's mean, ``w_c = μ_c``,
  ``b_c = −½‖μ_c‖²``; a nearest-class-mean classifier), with the paired
  difference imprint − SGD per episode;
* the TinyOL head's SGD step against a backbone inference, the bar being
  "at most 15 % on top of inference" (``HEAD_UPDATE_BUDGET``), two ways:

  - **this machine**, ai_edge_litert, one thread, one sample at a time,
    interleaved in one loop so every side sees the same machine load. The
    **like-for-like ratio is C step / bare invoke**: a board runs the TinyOL
    update as compiled C next to TFLite Micro, so the head step is the
    firmware's C code (``edge/c/tinyol_head.c`` via :mod:`edge.c_head`,
    ``cc -O2``), timed by ``clock_gettime`` around a C loop of
    ``C_STEPS_PER_CALL`` steps over the task's feature vectors, against the
    interpreter's bare ``invoke()`` on the int8 backbone (timed with a
    ``perf_counter`` pair as before; it still carries ai_edge_litert's
    Python-side check and pybind call, which TFLite Micro does not have). A
    stricter reading, C step / (pybind ``Invoke`` − clock-pair overhead),
    is reported next to it. For reference, not like-for-like: the numpy
    ``OnlineHead.learn_one`` (validation included; a dozen numpy calls, each ~0.5 µs here)
    against ``FrozenBackbone.feature_vector`` (quantise, invoke, dequantise)
    and against the bare invoke; and the head step as a TFLite graph of
    builtin ops (:func:`server.models.tinyml.export_head_step`) invoked like
    the backbone, which pays the interpreter's per-invoke overhead twice
    (a large share of a small backbone's invoke).
    ``timing.what_each_side_includes`` in the JSON spells each figure out;
  - **the device profile** (Nano 33 BLE Sense), from MACs:
    :func:`server.models.tinyml.device_update_cost`.

  The imprint step is timed the same two ways: the firmware's C
  ``tinyol_imprint_one`` (a C-timed loop, interleaved with the rest) against
  the bare invoke, and its MACs (the forward pass for the loss plus
  ``2·n_features``) on the profile.

  ``summary`` at the top of the JSON lists, per task, every ratio (the
  like-for-like one first), whether each is within 15 %, and whether the
  model fits the Nano per the registry.

Usage::

    python bench/task_models.py                 # default size, writes runs/bench/task_models.json
    python bench/task_models.py --small --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edge.c_head import CHead
from edge.online_head import OnlineHead
from edge.tflite_learner import BackboneHeadLearner, FrozenBackbone
from edge.profiles import NANO_33_BLE_SENSE
from firmware_sim.tasks.keywords import EXTRA_WORDS, KEYWORDS, KeywordCorpus
from server.models import characters, keywords, presence
from server.models.tinyml import (
    HEAD_UPDATE_BUDGET,
    InterpretedHeadStep,
    TaskModel,
    device_update_cost,
    imprint_accuracy,
    online_accuracy,
    score,
    task_fit,
)

OUT = Path("runs/bench/task_models.json")


def feature_error(model: TaskModel, x: np.ndarray) -> dict[str, float]:
    int8, reference = FrozenBackbone(model.int8_model), FrozenBackbone(model.float_model)
    got, want = int8.features(model.scaler(x)), reference.features(model.scaler(x))
    span = float(want.max() - want.min()) or 1.0
    return {
        "relative_l2": float(np.linalg.norm(got - want) / np.linalg.norm(want)),
        "max_abs_over_range": float(np.abs(got - want).max() / span),
        "samples": len(x),
    }


def paired(imprinted: list[float], sgd: list[float]) -> dict[str, float]:
    """Mean and spread of imprinted accuracy, and imprint − SGD over the same episodes with its paired standard error."""
    difference = np.asarray(imprinted) - np.asarray(sgd)
    return {
        "mean": float(np.mean(imprinted)),
        "std": float(np.std(imprinted)),
        "minus_sgd": float(difference.mean()),
        "minus_sgd_paired_se": float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0,
    }


C_STEPS_PER_CALL = 64  # C steps per timed C loop: ~10-60 µs, short enough to dodge most preemptions on a shared machine


def timing(model: TaskModel, x: np.ndarray, labels: np.ndarray, repeats: int = 3000) -> dict[str, object]:
    """Median seconds per sample on this machine: backbone inference, bare invoke and one head SGD step
    (numpy, as a TFLite graph, and as the firmware's C code)."""
    backbone = FrozenBackbone(model.int8_model, backend="ai_edge_litert", num_threads=1)
    head = model.head()
    lr = float(model.info["head_learning_rate"])
    xs = model.scaler(x)
    targets = [int(label) % model.n_outputs for label in labels]
    interpreter = backbone._interpreter  # the same interpreter feature_vector just filled
    for i in range(50):  # warm up caches, allocator and the interpreter's one-sample shape
        head.learn_one(backbone.feature_vector(xs[i % len(xs)]), targets[i % len(xs)], lr)
    # the same step compiled: weights and sample go in once (a pure function; the time does not depend on them)
    compiled = InterpretedHeadStep(head.n_features, head.n_outputs, backend="ai_edge_litert", num_threads=1)
    compiled.load(backbone.feature_vector(xs[0]), targets[0], lr, head.get_weights())
    for _ in range(50):
        compiled.invoke()
    # the step as the firmware's C code, from the same shipped head, over the same features; timed by
    # clock_gettime around a C loop of C_STEPS_PER_CALL steps, so no Python or ctypes cost is inside
    c_head = CHead.from_head(model.head())
    c_features = np.stack([backbone.feature_vector(xs[j]) for j in range(len(xs))])
    c_labels = np.asarray(targets, np.int32)
    c_head.time_steps(c_features, c_labels, 50 * C_STEPS_PER_CALL, lr)
    # the imprint step in C over the same features, from the same shipped head (its columns become class means)
    c_imprint_head = CHead.from_head(model.head())
    c_imprint_head.time_imprints(c_features, c_labels, 50 * C_STEPS_PER_CALL)
    infer, invoke, update, compiled_update, batch_api, c_update, native, empty = [], [], [], [], [], [], [], []
    c_imprint: list[float] = []
    clock = time.perf_counter
    for i in range(repeats):
        j = i % len(xs)
        t0 = clock()
        features = backbone.feature_vector(xs[j])
        t1 = clock()
        head.learn_one(features, targets[j], lr)
        t2 = clock()
        interpreter.invoke()
        t3 = clock()
        interpreter._interpreter.Invoke()  # the pybind call invoke() makes after its Python-side check (no
        t4 = clock()  # reference to it may be held: the check counts references to the wrapper); right after
        t5 = clock()  # the bare invoke, with the interpreter's data hottest in cache: its lowest figure
        compiled.invoke()
        t6 = clock()
        infer.append(t1 - t0)
        update.append(t2 - t1)
        invoke.append(t3 - t2)
        native.append(t4 - t3)
        empty.append(t5 - t4)
        compiled_update.append(t6 - t5)
        c_update.append(c_head.time_steps(c_features, c_labels, C_STEPS_PER_CALL, lr) * 1e-9 / C_STEPS_PER_CALL)
        c_imprint.append(c_imprint_head.time_imprints(c_features, c_labels, C_STEPS_PER_CALL) * 1e-9 / C_STEPS_PER_CALL)
        if i % 10 == 0:  # the general batch API on a batch of one, for reference (what was timed before)
            t8 = clock()
            backbone.features(xs[j : j + 1])
            batch_api.append(clock() - t8)
    inference_s, invoke_s, update_s, compiled_s = (float(np.median(v)) for v in (infer, invoke, update, compiled_update))
    c_s, native_s, clock_s, c_imprint_s = (float(np.median(v)) for v in (c_update, native, empty, c_imprint))
    # the invoke with every Python-side cost we can strip taken out (its wrapper's check, the clock pair):
    # a lower bound on the C++ invoke, so C step / this is an upper bound on the like-for-like ratio
    native_net_s = max(native_s - clock_s, 1e-12)
    return {
        "backend": backbone.backend,
        "samples_timed": repeats,
        "inference_s": inference_s,
        "invoke_only_s": invoke_s,
        "head_update_s": update_s,
        "interpreted_head_update_s": compiled_s,
        "batch_api_inference_s": float(np.median(batch_api)),
        "head_update_over_inference": update_s / inference_s,
        "head_update_over_invoke": update_s / invoke_s,
        "interpreted_head_update_over_invoke": compiled_s / invoke_s,
        "c_head_update_s": c_s,
        "native_invoke_s": native_s,
        "clock_pair_overhead_s": clock_s,
        "c_steps_per_timed_call": C_STEPS_PER_CALL,
        "c_head_update_over_invoke": c_s / invoke_s,
        "c_head_update_over_native_invoke_net": c_s / native_net_s,
        "c_within_15_percent_of_invoke": c_s / invoke_s <= HEAD_UPDATE_BUDGET,
        "c_within_15_percent_of_native_invoke_net": c_s / native_net_s <= HEAD_UPDATE_BUDGET,
        "c_head_imprint_s": c_imprint_s,
        "c_head_imprint_over_invoke": c_imprint_s / invoke_s,
        "c_head_imprint_over_native_invoke_net": c_imprint_s / native_net_s,
        "c_head_imprint_over_c_head_update": c_imprint_s / c_s,
        "what_each_side_includes": {
            "c_head_update_s": "edge/c/tinyol_head.c tinyol_learn_one (cc -O2): logits, stable softmax, loss, "
            "rank-1 update into the spare block, squared-norm finiteness check, swap; clock_gettime(CLOCK_MONOTONIC) "
            f"around a C loop of {C_STEPS_PER_CALL} steps over the task's feature vectors, divided by the steps",
            "c_head_imprint_s": "edge/c/tinyol_head.c tinyol_imprint_one (cc -O2): logits, stable softmax, loss, the "
            "class mean's update into the spare block, its squared norm (finiteness check and bias), copy into the "
            "column; timed like c_head_update_s",
            "invoke_only_s": "ai_edge_litert Interpreter.invoke() on the int8 backbone, input already set: its "
            "Python-side safety check + the pybind call + the C++ invoke, plus one perf_counter pair",
            "native_invoke_s": "the pybind Invoke() that invoke() calls, without the Python-side check (two attribute "
            "lookups remain); plus one perf_counter pair (clock_pair_overhead_s, subtracted for c_head_update_over_native_invoke_net)",
            "head_update_s": "OnlineHead.learn_one (numpy) incl. validation, one perf_counter pair",
            "interpreted_head_update_s": "the head step as a TFLite graph (export_head_step) invoke(), one perf_counter pair",
            "inference_s": "FrozenBackbone.feature_vector: quantise, invoke, dequantise",
        },
        "within_15_percent_of_inference": update_s / inference_s <= HEAD_UPDATE_BUDGET,
        "within_15_percent_of_invoke": update_s / invoke_s <= HEAD_UPDATE_BUDGET,
        "interpreted_within_15_percent_of_invoke": compiled_s / invoke_s <= HEAD_UPDATE_BUDGET,
        "head": {"n_features": head.n_features, "n_outputs": head.n_outputs},
    }


def bench_characters(small: bool) -> dict[str, object]:
    model = characters.build(small=small)
    lr = float(model.info["head_learning_rate"])
    backbone = FrozenBackbone(model.int8_model)
    n = 10 if small else 50
    shots, imprinted = {}, {}
    for k in (1, 5):
        episodes = characters.test_episodes(1, n, n_way=5, k_shot=k, n_query=5)
        accs = [online_accuracy(backbone, model.scaler, e.support_x, e.support_y, e.query_x, e.query_y, lr) for e in episodes]
        shots[f"5way_{k}shot"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "episodes": n}
        means = [imprint_accuracy(backbone, model.scaler, e.support_x, e.support_y, e.query_x, e.query_y) for e in episodes]
        imprinted[f"5way_{k}shot"] = {**paired(means, accs), "episodes": n}
    episodes = characters.test_episodes(1, 4)
    x = np.concatenate([e.query_x for e in episodes])
    y = np.concatenate([e.query_y for e in episodes])
    accuracy = {"few_shot_held_out_classes_unseen_writers": shots,
                "few_shot_held_out_classes_unseen_writers_imprinted": imprinted, "chance": 0.2}  # fmt: skip
    return _result(model, accuracy, x, y)


def bench_keywords(small: bool) -> dict[str, object]:
    from firmware_sim.tasks.espeak import Synthesizer

    corpus = KeywordCorpus(Synthesizer())
    model = keywords.build(small=small, corpus=corpus)
    lr = float(model.info["head_learning_rate"])
    backbone = FrozenBackbone(model.int8_model)
    results, imprinted = {}, {}
    tasks = keywords.test_tasks(1, 4 if small else 12)
    for name, pool in (("trained_keywords", KEYWORDS), ("new_words", EXTRA_WORDS)):
        accs, means = [], []
        for i, task in enumerate(tasks):
            rng = np.random.default_rng([i, len(name)])
            words = [str(w) for w in rng.choice(pool, 4, replace=False)]
            sx, sy = keywords.device_clips(corpus, task, words, 5, rng)
            qx, qy = keywords.device_clips(corpus, task, words, 10, rng)
            accs.append(online_accuracy(backbone, model.scaler, sx, list(sy), qx, list(qy), lr))
            means.append(imprint_accuracy(backbone, model.scaler, sx, list(sy), qx, list(qy)))
        results[f"4way_5shot_{name}"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "devices": len(tasks)}
        imprinted[f"4way_5shot_{name}"] = {**paired(means, accs), "devices": len(tasks)}
    x, y = keywords.device_clips(corpus, tasks[0], KEYWORDS, 4, np.random.default_rng(9))
    accuracy = {"few_shot_unseen_devices": results, "few_shot_unseen_devices_imprinted": imprinted, "chance": 0.25}
    return _result(model, accuracy, x, y)


def bench_presence(small: bool) -> dict[str, object]:
    model = presence.build(small=small)
    lr = float(model.info["head_learning_rate"])
    backbone = FrozenBackbone(model.int8_model)
    day = presence.WINDOWS_PER_DAY
    rows = {"shipped_head": [], "shipped_head_adapted_online": [], "empty_head_online": [], "empty_head_imprinted": []}
    rooms = presence.test_rooms(1, 4 if small else 12)
    for room in rooms:
        x, y = presence.room_windows(room, 3)
        learn, held = slice(0, 2 * day), slice(2 * day, None)
        shipped = BackboneHeadLearner(backbone, model.head()).predict(model.scaler(x[held])).argmax(axis=1)
        rows["shipped_head"].append(score(list(shipped), list(y[held]), balanced=True))
        rows["shipped_head_adapted_online"].append(online_accuracy(
            backbone, model.scaler, x[learn], list(y[learn]), x[held], list(y[held]), lr,
            head=model.head(), balanced=True, shuffle_seed=None))  # fmt: skip
        rows["empty_head_online"].append(online_accuracy(
            backbone, model.scaler, x[learn], list(y[learn]), x[held], list(y[held]), lr,
            balanced=True, shuffle_seed=None))  # fmt: skip
        rows["empty_head_imprinted"].append(imprint_accuracy(
            backbone, model.scaler, x[learn], list(y[learn]), x[held], list(y[held]), balanced=True, shuffle_seed=None))  # fmt: skip
    summary = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "rooms": len(v)} for k, v in rows.items()}
    summary["empty_head_imprinted"].update(paired(rows["empty_head_imprinted"], rows["empty_head_online"]))
    x, y = presence.room_windows(rooms[0], 1)
    return _result(model, {"balanced_accuracy_unseen_rooms_day3_after_2_days": summary, "chance": 0.5}, x, y)


def _result(model: TaskModel, accuracy: dict[str, object], x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    return {
        "fit": task_fit(model).as_dict(),
        "feature_error_int8_vs_float": feature_error(model, x),
        "accuracy": accuracy,
        "timing": timing(model, x, y),
        "device_profile": device_profile(model),
        "train": {
            "train_accuracy": model.train.train_accuracy,
            "train_seconds": model.train.seconds,
            **{k: v for k, v in model.info.items() if k != "pretraining_classes"},
        },
    }


def device_profile(model: TaskModel) -> dict[str, object]:
    """:func:`device_update_cost` on the Nano, and the imprint step's cost the same way: its float MACs (the
    forward pass for the loss, the mean's update and its squared norm) against one int8 backbone inference."""
    cost = device_update_cost(model, profile=NANO_33_BLE_SENSE)
    head = OnlineHead(model.n_features, model.n_outputs, "classification")
    imprint_macs = head.compute_cost().inference_float_macs + 2 * model.n_features
    imprint_s = NANO_33_BLE_SENSE.compute_seconds(float_macs=imprint_macs)
    return {**cost.as_dict(), "imprint_float_macs": imprint_macs, "imprint_s": imprint_s,
            "imprint_over_inference": imprint_s / cost.inference_seconds}  # fmt: skip


def summary(tasks: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per task: head update / inference on this machine (the C step vs the bare invoke, the like-for-like
    one; then the numpy and TFLite-graph steps) and on the device profile, whether each is within 15 %, and
    whether the model fits the Nano per the registry."""
    rows = {}
    for task, result in tasks.items():
        machine, device, fit = result["timing"], result["device_profile"], result["fit"]  # type: ignore[index]
        rows[task] = {
            "like_for_like": "this_machine_c_update_over_invoke",
            "this_machine_c_update_over_invoke": machine["c_head_update_over_invoke"],
            "this_machine_c_update_over_native_invoke_net": machine["c_head_update_over_native_invoke_net"],
            "this_machine_update_over_inference": machine["head_update_over_inference"],
            "this_machine_update_over_invoke": machine["head_update_over_invoke"],
            "this_machine_interpreted_update_over_invoke": machine["interpreted_head_update_over_invoke"],
            "device_update_over_inference": device["head_update_over_inference"],
            "this_machine_c_imprint_over_invoke": machine["c_head_imprint_over_invoke"],
            "device_imprint_over_inference": device["imprint_over_inference"],
            "few_shot_imprinted_vs_sgd": imprint_vs_sgd(result["accuracy"]),  # type: ignore[arg-type]
            "within_15_percent": {
                "this_machine_c_vs_invoke": machine["c_within_15_percent_of_invoke"],
                "this_machine_c_vs_native_invoke_net": machine["c_within_15_percent_of_native_invoke_net"],
                "this_machine_vs_inference": machine["within_15_percent_of_inference"],
                "this_machine_vs_invoke": machine["within_15_percent_of_invoke"],
                "this_machine_interpreted_vs_invoke": machine["interpreted_within_15_percent_of_invoke"],
                "device_profile": device["within_15_percent"],
            },
            "fits_nano": fit["fits"],
        }
    return rows


def imprint_vs_sgd(accuracy: dict[str, object]) -> dict[str, dict[str, float]]:
    """Per episode set: the SGD head's mean accuracy, the imprinted head's, and imprint − SGD (paired SE)."""
    rows = {}
    for name, block in accuracy.items():
        if not isinstance(block, dict):
            continue
        if name.endswith("_imprinted"):
            pairs = [(episodes, accuracy[name.removesuffix("_imprinted")][episodes], row) for episodes, row in block.items()]  # type: ignore[index]
        elif "empty_head_imprinted" in block:
            pairs = [("empty_head", block["empty_head_online"], block["empty_head_imprinted"])]
        else:
            continue
        for episodes, sgd, imprinted in pairs:
            rows[episodes] = {"sgd": sgd["mean"], "imprinted": imprinted["mean"], "minus_sgd": imprinted["minus_sgd"],
                              "paired_se": imprinted["minus_sgd_paired_se"]}  # fmt: skip
    return rows


def format_summary(rows: dict[str, dict[str, object]]) -> str:
    lines = [
        "head update / inference (≤ 15 % is the bar)",
        "this machine (ai_edge_litert, 1 thread). Like-for-like: C/invoke = the firmware's C step (C-timed loop)",
        "  / the interpreter's bare invoke(); C/Invoke-net = C step / (pybind Invoke − clock overhead), stricter.",
        "  Reference only: numpy step / (quantise+invoke+dequantise), numpy step / invoke, TFLite-graph step / invoke.",
        "device: Nano 33 BLE Sense profile from MACs",
        f"{'task':<11} {'C/invoke':>9} {'C/Invoke-net':>13} {'numpy/infer':>12} {'numpy/invoke':>13} "
        f"{'graph/invoke':>13} {'device':>8}  fits nano",
    ]
    for task, row in rows.items():
        def mark(value: float, ok: bool) -> str:
            return f"{value:.1%}{'' if ok else ' ✗'}"

        ok = row["within_15_percent"]
        lines.append(
            f"{task:<11} {mark(row['this_machine_c_update_over_invoke'], ok['this_machine_c_vs_invoke']):>9} "
            f"{mark(row['this_machine_c_update_over_native_invoke_net'], ok['this_machine_c_vs_native_invoke_net']):>13} "
            f"{mark(row['this_machine_update_over_inference'], ok['this_machine_vs_inference']):>12} "
            f"{mark(row['this_machine_update_over_invoke'], ok['this_machine_vs_invoke']):>13} "
            f"{mark(row['this_machine_interpreted_update_over_invoke'], ok['this_machine_interpreted_vs_invoke']):>13} "
            f"{mark(row['device_update_over_inference'], ok['device_profile']):>8}  {row['fits_nano']}"
        )
    lines += ["", "imprint step / inference: C imprint / bare invoke (this machine), MACs (Nano profile)",
              f"{'task':<11} {'C/invoke':>9} {'device':>8}"]  # fmt: skip
    lines += [f"{task:<11} {row['this_machine_c_imprint_over_invoke']:>9.1%} {row['device_imprint_over_inference']:>8.1%}"
              for task, row in rows.items()]  # fmt: skip
    lines += ["", "few-shot accuracy, same episodes: one SGD step per sample vs imprinted (imprint − SGD ± paired SE)"]
    for task, row in rows.items():
        for episodes, pair in row["few_shot_imprinted_vs_sgd"].items():  # type: ignore[union-attr]
            lines.append(f"{task:<11} {episodes:<28} SGD {pair['sgd']:.3f}  imprinted {pair['imprinted']:.3f}  "
                         f"({pair['minus_sgd']:+.3f} ± {pair['paired_se']:.3f})")  # fmt: skip
    return "\n".join(lines)


BENCHES = {"characters": bench_characters, "keywords": bench_keywords, "presence": bench_presence}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small models (seconds), for a smoke run")
    parser.add_argument("--task", choices=sorted(BENCHES), action="append", help="only these tasks (repeatable)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    report: dict[str, object] = {
        "size": "small" if args.small else "default",
        "device": NANO_33_BLE_SENSE.name,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),  # timings are medians, but a shared machine still shows
        },
        "tasks": {},
    }
    for task in args.task or list(BENCHES):
        start = time.perf_counter()
        result = BENCHES[task](args.small)
        result["pipeline_seconds"] = time.perf_counter() - start
        report["tasks"][task] = result  # type: ignore[index]
        print(json.dumps({task: result}, indent=1, default=float), flush=True)
    report["summary"] = summary(report["tasks"])  # type: ignore[arg-type]
    report = {"summary": report.pop("summary"), **report}
    print(format_summary(report["summary"]))  # type: ignore[arg-type]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
