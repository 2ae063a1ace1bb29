"""Keyword spotting: a small int8 DS-CNN backbone on 49 × 10 MFCC images, for a TinyOL head.

The backbone is trained as a classifier of the ten Speech Commands keywords
spoken by the *training* devices of :mod:`firmware_sim.tasks.keywords`
(espeak-ng speakers in simulated rooms); its classifier becomes the initial
head and its 64-d penultimate layer the feature vector. Devices never seen in
training (other speakers, other rooms) then adapt the head online, or start
an empty head and grow one output per word they are taught, including words
the backbone never heard (:data:`firmware_sim.tasks.keywords.EXTRA_WORDS`).

Input: the numpy front end's MFCCs (:class:`edge.features.FrontEnd`, 49
frames × 10 coefficients), standardised per coefficient by the model's
:class:`~server.models.tinyml.InputScaler` on the device before int8
quantisation. Architecture (DS-CNN, Zhang et al. 2017, shrunk)::

    conv 10×4×32 stride 2 → [depthwise 3×3 → conv 1×1×32] × 2 → global average pool → dense 64 (features)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.features import FrontEnd
from firmware_sim.tasks.espeak import Synthesizer
from firmware_sim.tasks.keywords import KEYWORDS, KeywordCorpus, KeywordTask, sample_task
from server.models.tinyml import (
    Architecture,
    Conv,
    Dense,
    DepthwiseConv,
    GlobalAveragePool,
    InputScaler,
    TaskModel,
    TrainConfig,
    build_task_model,
    float_features,
    head_learning_rate,
)

TASK = "keywords"
FRAMES, COEFFICIENTS = 49, 10
ARCH = Architecture(
    (FRAMES, COEFFICIENTS, 1),
    (
        Conv(32, (10, 4), (2, 2)),
        DepthwiseConv(), Conv(32, (1, 1)),
        DepthwiseConv(), Conv(32, (1, 1)),
        GlobalAveragePool(),
        Dense(64),
    ),
)  # fmt: skip
TRAIN_DEVICES = range(0, 400)
BACKBONE_TEST_SPEAKER_BASE = 10_000  # speakers the keyword backbone is tested on; not a device seed range (see edge.identity)

# (clips per keyword, epochs); the architecture never changes with the size
SIZES = {"default": (160, 30), "small": (40, 10)}


def mfcc_clips(
    corpus: KeywordCorpus, tasks: Sequence[KeywordTask], words: Sequence[str], per_word: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """MFCCs (n, 49, 10) of ``per_word`` clips of each word, each by a device picked from ``tasks``; labels index ``words``."""
    front_end = FrontEnd()
    draw = corpus.drawer(tasks, words)
    clips = np.concatenate([draw(i, per_word, rng) for i in range(len(words))])
    return np.stack([front_end.mfcc(c) for c in clips]), np.repeat(np.arange(len(words)), per_word)


def device_clips(
    corpus: KeywordCorpus, task: KeywordTask, words: Sequence[str], per_word: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """MFCCs of one device (speaker in a room) saying each word ``per_word`` times."""
    return mfcc_clips(corpus, [task], words, per_word, rng)


def build(seed: int = 0, small: bool = False, corpus: KeywordCorpus | None = None) -> TaskModel:
    """Train on the training devices' keywords, export int8; the initial head is the trained 10-way classifier."""
    per_word, epochs = SIZES["small" if small else "default"]
    corpus = corpus or KeywordCorpus(Synthesizer())
    tasks = [sample_task(seed, d) for d in TRAIN_DEVICES]
    x, y = mfcc_clips(corpus, tasks, KEYWORDS, per_word, np.random.default_rng([seed, 1]))
    scaler = InputScaler.fit(x, axis=(0, 1))  # one mean and scale per MFCC coefficient
    model = build_task_model(
        TASK,
        ARCH,
        x,
        y,
        KEYWORDS,
        scaler,
        TrainConfig(epochs=epochs, batch_size=32, learning_rate=3e-3, seed=seed),
        info={"seed": seed, "size": "small" if small else "default", "train_devices": len(tasks)},
    )
    model.info["head_learning_rate"] = head_learning_rate(float_features(ARCH, model.train.backbone, scaler(x[:500])))
    return model


def test_tasks(seed: int, n_devices: int) -> list[KeywordTask]:
    """Unseen devices: speakers and rooms drawn from ids the training never used."""
    return [sample_task(seed, BACKBONE_TEST_SPEAKER_BASE + i) for i in range(n_devices)]
