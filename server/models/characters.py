"""Handwritten characters: a small int8 CNN backbone for N-way K-shot learning on a device.

The backbone is pretrained as a classifier over many *meta-training* classes
of :mod:`firmware_sim.tasks.characters` (whole alphabets; the held-out
alphabets are never drawn here), then its classifier is dropped: the device
keeps the 64-d penultimate features and learns its own characters with a
TinyOL head that starts empty and grows one output per new character
(:class:`server.models.tinyml.GrowingClassifier`).

Architecture (input 28 × 28 × 1, ink 1.0 on 0.0, so no input scaling)::

    conv 3×3×16 → maxpool 2 → conv 3×3×32 → maxpool 2 → conv 3×3×32 → maxpool 2 → dense 64 (features)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from firmware_sim.tasks.characters import IMAGE_SHAPE, CharacterSet, class_split
from firmware_sim.tasks.episodes import Episode, sample_episode
from server.models.tinyml import (
    Architecture,
    Conv,
    Dense,
    MaxPool,
    TaskModel,
    TrainConfig,
    build_task_model,
    float_features,
    head_learning_rate,
    identity_scaler,
)

TASK = "characters"
ARCH = Architecture(IMAGE_SHAPE, (Conv(16), MaxPool(2), Conv(32), MaxPool(2), Conv(32), MaxPool(2), Dense(64)))
N_WAY = 5
TRAIN_WRITERS = range(0, 200)  # writers (devices) whose handwriting pretrains the backbone
TEST_WRITER_BASE = 100_000  # unseen devices for evaluation: writers TEST_WRITER_BASE + i

# (pretraining classes, samples per class, epochs); the architecture never changes with the size
SIZES = {"default": (480, 10, 12), "small": (40, 6, 3)}


def pretraining_data(seed: int, n_classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Images (n, 28, 28, 1) and labels 0..n_classes-1 of ``n_classes`` meta-training classes."""
    split = class_split(seed)
    rng = np.random.default_rng([seed, 1])
    chosen = tuple(int(c) for c in rng.choice(np.asarray(split.meta_train), size=n_classes, replace=False))
    draw = CharacterSet(seed).drawer(TRAIN_WRITERS)
    x = np.concatenate([draw(c, per_class, rng) for c in chosen])
    y = np.repeat(np.arange(n_classes), per_class)
    return x, y, chosen


def build(seed: int = 0, small: bool = False) -> TaskModel:
    """Pretrain on meta-training classes, export int8; the initial head is an empty N_WAY-way head (zeros)."""
    n_classes, per_class, epochs = SIZES["small" if small else "default"]
    x, y, chosen = pretraining_data(seed, n_classes, per_class)
    model = build_task_model(
        TASK,
        ARCH,
        x,
        y,
        [str(c) for c in chosen],
        identity_scaler(),
        TrainConfig(epochs=epochs, batch_size=64, learning_rate=3e-3, seed=seed),
        info={"pretraining_classes": list(chosen), "seed": seed, "size": "small" if small else "default"},
    )
    model.info["head_learning_rate"] = head_learning_rate(float_features(ARCH, model.train.backbone, x[:500]))
    return dataclasses.replace(
        model,
        initial_head={"head_w": np.zeros((ARCH.n_features, N_WAY), np.float32), "head_b": np.zeros(N_WAY, np.float32)},
        classes=tuple(f"way-{i}" for i in range(N_WAY)),
    )


def test_episodes(seed: int, n_episodes: int, n_way: int = N_WAY, k_shot: int = 5, n_query: int = 5) -> list[Episode]:
    """Episodes over held-out (meta-test) alphabets, each written by one unseen writer."""
    split = class_split(seed)
    characters = CharacterSet(seed)
    episodes = []
    for i in range(n_episodes):
        rng = np.random.default_rng([seed, 2, i])
        draw = characters.drawer([TEST_WRITER_BASE + i])
        episodes.append(sample_episode(draw, split.meta_test, n_way, k_shot, n_query, rng))
    return episodes
