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
* time per sample on this machine with ai_edge_litert (one thread, batch of
  one): backbone inference (``FrozenBackbone.features``: quantise, invoke,
  dequantise) and the head's SGD step (``OnlineHead.learn_one``, with its
  input validation); their ratio is the head's overhead over inference. The
  same ratio on the device profile comes from MACs (int8 backbone MACs from
  the describer's facts, float head MACs from ``OnlineHead.compute_cost``).

Usage::

    python bench/task_models.py                 # default size, writes runs/bench/task_models.json
    python bench/task_models.py --small --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edge.tflite_learner import BackboneHeadLearner, FrozenBackbone
from firmware_sim.profiles import NANO_33_BLE_SENSE
from firmware_sim.tasks.keywords import EXTRA_WORDS, KEYWORDS, KeywordCorpus
from ontology.tflite_facts import read_facts
from server.models import characters, keywords, presence
from server.models.tinyml import TaskModel, online_accuracy, score, task_fit

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


def timing(model: TaskModel, x: np.ndarray, labels: np.ndarray, repeats: int = 300) -> dict[str, float]:
    """Median seconds per sample: backbone inference vs one head SGD step, with the real interpreter."""
    backbone = FrozenBackbone(model.int8_model, backend="ai_edge_litert", num_threads=1)
    learner = BackboneHeadLearner(backbone, model.head())
    lr = float(model.info["head_learning_rate"])
    xs = model.scaler(x)
    features = backbone.features(xs)
    for i in range(20):  # warm up
        backbone.features(xs[i % len(xs)].reshape(1, -1))
    infer, update = [], []
    for i in range(repeats):
        j = i % len(xs)
        sample = xs[j].reshape(1, -1)
        t0 = time.perf_counter()
        backbone.features(sample)
        t1 = time.perf_counter()
        learner.head.learn_one(features[j], int(labels[j]) % model.n_outputs, lr)
        t2 = time.perf_counter()
        infer.append(t1 - t0)
        update.append(t2 - t1)
    facts = read_facts(model.int8_model)
    head_cost = learner.head.compute_cost()
    device_infer = NANO_33_BLE_SENSE.compute_seconds(int8_macs=facts.macs)
    device_update = NANO_33_BLE_SENSE.compute_seconds(float_macs=head_cost.training_float_macs)
    return {
        "inference_s": float(np.median(infer)),
        "head_update_s": float(np.median(update)),
        "head_overhead_over_inference": float(np.median(update) / np.median(infer)),
        "backbone_int8_macs": facts.macs,
        "head_training_float_macs": head_cost.training_float_macs,
        "device_inference_s": device_infer,
        "device_head_update_s": device_update,
        "device_head_overhead_over_inference": device_update / device_infer,
    }


def bench_characters(small: bool) -> dict[str, object]:
    model = characters.build(small=small)
    lr = float(model.info["head_learning_rate"])
    backbone = FrozenBackbone(model.int8_model)
    n = 10 if small else 50
    shots = {}
    for k in (1, 5):
        episodes = characters.test_episodes(1, n, n_way=5, k_shot=k, n_query=5)
        accs = [online_accuracy(backbone, model.scaler, e.support_x, e.support_y, e.query_x, e.query_y, lr) for e in episodes]
        shots[f"5way_{k}shot"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "episodes": n}
    episodes = characters.test_episodes(1, 4)
    x = np.concatenate([e.query_x for e in episodes])
    y = np.concatenate([e.query_y for e in episodes])
    return _result(model, {"few_shot_held_out_classes_unseen_writers": shots, "chance": 0.2}, x, y)


def bench_keywords(small: bool) -> dict[str, object]:
    from firmware_sim.tasks.espeak import Synthesizer

    corpus = KeywordCorpus(Synthesizer())
    model = keywords.build(small=small, corpus=corpus)
    lr = float(model.info["head_learning_rate"])
    backbone = FrozenBackbone(model.int8_model)
    results = {}
    tasks = keywords.test_tasks(1, 4 if small else 12)
    for name, pool in (("trained_keywords", KEYWORDS), ("new_words", EXTRA_WORDS)):
        accs = []
        for i, task in enumerate(tasks):
            rng = np.random.default_rng([i, len(name)])
            words = [str(w) for w in rng.choice(pool, 4, replace=False)]
            sx, sy = keywords.device_clips(corpus, task, words, 5, rng)
            qx, qy = keywords.device_clips(corpus, task, words, 10, rng)
            accs.append(online_accuracy(backbone, model.scaler, sx, list(sy), qx, list(qy), lr))
        results[f"4way_5shot_{name}"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "devices": len(tasks)}
    x, y = keywords.device_clips(corpus, tasks[0], KEYWORDS, 4, np.random.default_rng(9))
    return _result(model, {"few_shot_unseen_devices": results, "chance": 0.25}, x, y)


def bench_presence(small: bool) -> dict[str, object]:
    model = presence.build(small=small)
    lr = float(model.info["head_learning_rate"])
    backbone = FrozenBackbone(model.int8_model)
    day = presence.WINDOWS_PER_DAY
    rows = {"shipped_head": [], "shipped_head_adapted_online": [], "empty_head_online": []}
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
    summary = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "rooms": len(v)} for k, v in rows.items()}
    x, y = presence.room_windows(rooms[0], 1)
    return _result(model, {"balanced_accuracy_unseen_rooms_day3_after_2_days": summary, "chance": 0.5}, x, y)


def _result(model: TaskModel, accuracy: dict[str, object], x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    return {
        "fit": task_fit(model).as_dict(),
        "feature_error_int8_vs_float": feature_error(model, x),
        "accuracy": accuracy,
        "timing": timing(model, x, y),
        "train": {
            "train_accuracy": model.train.train_accuracy,
            "train_seconds": model.train.seconds,
            **{k: v for k, v in model.info.items() if k != "pretraining_classes"},
        },
    }


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
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "processor": platform.machine()},
        "tasks": {},
    }
    for task in args.task or list(BENCHES):
        start = time.perf_counter()
        result = BENCHES[task](args.small)
        result["pipeline_seconds"] = time.perf_counter() - start
        report["tasks"][task] = result  # type: ignore[index]
        print(json.dumps({task: result}, indent=1, default=float), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
