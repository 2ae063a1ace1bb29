"""The three TinyML applications as federated few-shot task families, seen from the device.

A family answers the two questions a federation and its evaluation ask of a
device: *what does your stream look like in round r* (labelled feature
vectors, one at a time, for meta-training devices) and *give me a K-shot
episode* (for devices never seen in training: K labelled samples per class to
adapt on, then a query set to be scored on). Everything the device computes
is numpy, as on the board: pixels pooled to 14 × 14 for characters, the MFCC
front end (:class:`edge.features.FrontEnd`) pooled over time for keywords,
window features for presence, each standardised by constants the firmware
ships (computed once from training devices only).

The model every method trains is the whole :class:`edge.mlp_classifier.MLPClassifier`
(there is no pretrained backbone here: the comparison is about what the
federation learns, so nothing is learned outside it). Its output layer is the
private part under TinyMetaFed, because labels are a device's own: writer 7's
class 0 is some glyph, writer 9's class 0 another.

- **characters**: devices are writers holding ``n_way`` characters of the
  meta-training alphabets; unseen devices are new writers with characters of
  alphabets never used in training (the Omniglot protocol).
- **keywords**: devices are speakers in rooms, each spotting ``n_way`` of the
  ten Speech Commands keywords; unseen devices are new speakers in new rooms
  learning ``n_way`` words no training device ever spoke (``EXTRA_WORDS``).
- **presence**: devices are rooms (occupied or empty); unseen devices are new
  rooms, with their own layouts, schedules and sensor calibrations; scored by
  balanced accuracy on a later day than the shots came from.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from edge.adaptation import Sample
from edge.identity import TEST_SEED_BASE, VALIDATION_SEED_BASE  # noqa: F401  (re-exported)
from edge.features import FrontEnd
from firmware_sim.tasks import characters as chars
from firmware_sim.tasks import keywords as kws
from firmware_sim.tasks import presence as pres
from firmware_sim.tasks.episodes import Episode, episode_of, shuffled_support

DATASET_SEED = 0  # which generated world (glyphs, alphabets, buildings); devices are drawn inside it
# unseen devices: VALIDATION_SEED_BASE onwards choose settings, TEST_SEED_BASE onwards are reported on and never
# used for any choice; the same ranges as the sine fleet's, named once in edge.identity


@dataclass(frozen=True)
class TaskFamily:
    """One application, as the federation sees it; see the module docstring."""

    name: str
    n_way: int
    n_features: int
    hidden: tuple[int, ...]
    learning_rate: float  # per-sample SGD step, inner loop and on-device adaptation alike
    balanced: bool  # score by balanced accuracy (presence's classes are unequal)
    stream: Callable[[int, int], Iterator[Sample]]  # (device, stream_key) -> labelled features
    episode: Callable[[int, int, int], Episode]  # (device, k_shot, n_query) -> episode
    drifting: Callable[[int, int], Iterator[Sample]]  # (unseen device, drift start) -> its episode's classes, drifting
    drift: str  # what changes, in words

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_features, *self.hidden, self.n_way)

    @property
    def private_names(self) -> tuple[str, str]:
        """The output layer: what TinyMetaFed keeps on the device."""
        last = len(self.hidden)
        return (f"w{last}", f"b{last}")


DRIFT_RAMP_SAMPLES = 50  # a drift reaches full strength over this many samples


def drift_strength(sample: int, start: int) -> float:
    """0 before ``start``, then rising linearly to 1 over :data:`DRIFT_RAMP_SAMPLES`."""
    return float(np.clip((sample - start) / DRIFT_RAMP_SAMPLES, 0.0, 1.0))


def _shuffled(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(len(y))
    return x[order], y[order]


# --- characters ------------------------------------------------------------------------------------

CHARACTER_POOL = 2  # 28 × 28 -> 14 × 14: a quarter of the inputs, strokes still legible


def character_features(image: np.ndarray) -> np.ndarray:
    """28 × 28 ink in [0, 1] -> 196 pooled pixels, centred (what the device feeds its MLP)."""
    size = chars.IMAGE_SIZE // CHARACTER_POOL
    pooled = np.asarray(image, np.float32).reshape(size, CHARACTER_POOL, size, CHARACTER_POOL).mean(axis=(1, 3))
    return (pooled.reshape(-1) - 0.5) * 2.0


@functools.lru_cache(maxsize=1)
def _character_world() -> tuple[chars.CharacterSet, chars.ClassSplit]:
    return chars.CharacterSet(DATASET_SEED), chars.class_split(DATASET_SEED)


def _character_stream(device: int, stream_key: int, n_way: int) -> Iterator[Sample]:
    world, split = _character_world()
    task = chars.sample_task(DATASET_SEED, device, split.meta_train, n_way)
    for image, label in chars.CharacterStream(task, world, seed=(device, stream_key)):
        yield character_features(image), np.int64(label)


def _character_episode(device: int, k_shot: int, n_query: int, n_way: int) -> Episode:
    world, split = _character_world()
    task = chars.sample_task(DATASET_SEED, device, split.meta_test, n_way)

    def draw(class_id: int, count: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([character_features(chars.render(world.glyph(class_id), task.style, rng)) for _ in range(count)])

    rng = np.random.default_rng([device, k_shot, n_query, 1])
    return shuffled_support(episode_of(draw, task.classes, k_shot, n_query, rng), rng)


CHARACTER_DRIFT_SLANT = 0.8  # shear added to the writer's hand: an upright writer ends up writing in italics


def _character_drifting(device: int, start: int, n_way: int) -> Iterator[Sample]:
    """The unseen writer's episode characters, with their slant changing from sample ``start`` on."""
    world, split = _character_world()
    task = chars.sample_task(DATASET_SEED, device, split.meta_test, n_way)
    rng = np.random.default_rng([device, 5])  # not the start: a stream differs from its undrifted twin only by the drift
    for i in itertools.count():
        label = int(rng.integers(n_way))
        slant = CHARACTER_DRIFT_SLANT * drift_strength(i, start)
        yield character_features(chars.render(world.glyph(task.classes[label]), task.style, rng, slant)), np.int64(label)


def characters(n_way: int = 5) -> TaskFamily:
    n = (chars.IMAGE_SIZE // CHARACTER_POOL) ** 2
    return TaskFamily(
        name="characters", n_way=n_way, n_features=n, hidden=(64, 64), learning_rate=0.05, balanced=False,
        stream=lambda device, key: _character_stream(device, key, n_way),
        episode=lambda device, k, q: _character_episode(device, k, q, n_way),
        drifting=lambda device, start: _character_drifting(device, start, n_way),
        drift=f"the writer's slant grows by {CHARACTER_DRIFT_SLANT} (shear)",
    )  # fmt: skip


# --- keywords --------------------------------------------------------------------------------------

KEYWORD_FRAME_POOL = 4  # 49 MFCC frames -> 12 time steps of 10 coefficients


@functools.lru_cache(maxsize=1)
def _keyword_world() -> tuple[kws.KeywordCorpus, FrontEnd]:
    from firmware_sim.tasks.espeak import Synthesizer

    return kws.KeywordCorpus(Synthesizer()), FrontEnd()


def _pooled_mfcc(clip: np.ndarray) -> np.ndarray:
    _, front_end = _keyword_world()
    mfcc = front_end.mfcc(clip)
    steps = mfcc.shape[0] // KEYWORD_FRAME_POOL
    return mfcc[: steps * KEYWORD_FRAME_POOL].reshape(steps, KEYWORD_FRAME_POOL, -1).mean(axis=1).reshape(-1)


@functools.lru_cache(maxsize=1)
def _keyword_scaler() -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread per feature, from training speakers only: the constants the firmware ships."""
    corpus, _ = _keyword_world()
    rng = np.random.default_rng([DATASET_SEED, 7])
    feats = np.stack(
        [_pooled_mfcc(corpus.clip(kws.sample_task(DATASET_SEED, d), str(rng.choice(kws.KEYWORDS)), rng)) for d in range(64)]
    )
    return feats.mean(axis=0).astype(np.float32), (feats.std(axis=0) + 1e-3).astype(np.float32)


def keyword_features(clip: np.ndarray) -> np.ndarray:
    mean, spread = _keyword_scaler()
    return ((_pooled_mfcc(clip) - mean) / spread).astype(np.float32)


def _keyword_words(device: int, words: tuple[str, ...], n_way: int) -> tuple[str, ...]:
    rng = np.random.default_rng([DATASET_SEED, device, 11])
    return tuple(str(w) for w in rng.choice(np.asarray(words), size=n_way, replace=False))


def _keyword_stream(device: int, stream_key: int, n_way: int) -> Iterator[Sample]:
    corpus, _ = _keyword_world()
    task = kws.sample_task(DATASET_SEED, device, _keyword_words(device, kws.KEYWORDS, n_way))
    for clip, label in kws.KeywordStream(task, corpus, seed=(device, stream_key)):
        yield keyword_features(clip), np.int64(label)


def _keyword_episode(device: int, k_shot: int, n_query: int, n_way: int) -> Episode:
    corpus, _ = _keyword_world()
    task = kws.sample_task(DATASET_SEED, device, _keyword_words(device, kws.EXTRA_WORDS, n_way))

    def draw(label: int, count: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([keyword_features(corpus.clip(task, task.words[label], rng)) for _ in range(count)])

    rng = np.random.default_rng([device, k_shot, n_query, 2])
    return shuffled_support(episode_of(draw, range(n_way), k_shot, n_query, rng), rng)


KEYWORD_DRIFT_DB = 15.0  # the room gets this much noisier (speech-to-noise ratio falls)


def _keyword_drifting(device: int, start: int, n_way: int) -> Iterator[Sample]:
    corpus, _ = _keyword_world()
    task = kws.sample_task(DATASET_SEED, device, _keyword_words(device, kws.EXTRA_WORDS, n_way))
    rng = np.random.default_rng([device, 6])
    for i in itertools.count():
        label = int(rng.integers(n_way))
        clip = corpus.clip(task, task.words[label], rng, -KEYWORD_DRIFT_DB * drift_strength(i, start))
        yield keyword_features(clip), np.int64(label)


def keywords(n_way: int = 4) -> TaskFamily:
    return TaskFamily(
        name="keywords", n_way=n_way, n_features=12 * 10, hidden=(64, 64), learning_rate=0.02, balanced=False,
        stream=lambda device, key: _keyword_stream(device, key, n_way),
        episode=lambda device, k, q: _keyword_episode(device, k, q, n_way),
        drifting=lambda device, start: _keyword_drifting(device, start, n_way),
        drift=f"the room's noise rises by {KEYWORD_DRIFT_DB:g} dB",
    )  # fmt: skip


# --- presence --------------------------------------------------------------------------------------

PRESENCE_LOG_COLUMNS = tuple(pres.FEATURES.index(n) for n in ("light_mean", "light_range", "pir_count"))
PRESENCE_MAX_DAYS = 7  # a week always holds working days


def _presence_raw(task: pres.PresenceTask, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one day; the room's state starts settled, as after a night (days are independent draws)."""
    x, y = pres.window_features(pres.simulate_day(task, day, pres.initial_state(task)))
    x = x.copy()
    x[:, PRESENCE_LOG_COLUMNS] = np.log1p(np.maximum(x[:, PRESENCE_LOG_COLUMNS], 0.0))
    return x, y


@functools.lru_cache(maxsize=1)
def _presence_scaler() -> tuple[np.ndarray, np.ndarray]:
    feats = np.concatenate([_presence_raw(pres.sample_task(DATASET_SEED, d), 0)[0] for d in range(20)])
    return feats.mean(axis=0).astype(np.float32), (feats.std(axis=0) + 1e-3).astype(np.float32)


def presence_day(device: int, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised window features and labels of one day of room ``device``."""
    mean, spread = _presence_scaler()
    x, y = _presence_raw(pres.sample_task(DATASET_SEED, device), day)
    return ((x - mean) / spread).astype(np.float32), y


def _presence_stream(device: int, stream_key: int) -> Iterator[Sample]:
    """Windows of the room's days from ``stream_key`` on, each day's in random order.

    A device keeps a day's windows in a small ring and learns from them in
    random order: consecutive windows are nearly identical (an hour of
    "empty" in a row), which would drive one-pass SGD to the last label seen.
    """
    rng = np.random.default_rng([device, stream_key, 3])
    day = stream_key
    while True:
        x, y = presence_day(device, day)
        x, y = _shuffled(x, y, rng)
        yield from zip(x, y)
        day += 1


def _presence_episode(device: int, k_shot: int, n_query: int) -> Episode:
    """K windows of each class from the room's first days; query = every window of the next day with both classes.

    Days are scanned forward because a weekend day may have nobody in the room
    (``n_query`` is unused: the query is a whole day, scored by balanced accuracy).
    """
    rng = np.random.default_rng([device, k_shot, 4])
    days = [presence_day(device, day) for day in range(PRESENCE_MAX_DAYS)]
    both = [i for i, (_, y) in enumerate(days) if 0 < y.sum() < y.size]
    if len(both) < 2:
        raise ValueError(f"room {device} has fewer than two days with both occupied and empty windows")
    x0, y0 = days[both[0]]
    picks = np.concatenate(
        [rng.choice(np.flatnonzero(y0 == c), size=k_shot, replace=(y0 == c).sum() < k_shot) for c in (0, 1)]
    )
    sx, sy = _shuffled(x0[picks], y0[picks], rng)
    qx, qy = days[both[1]]
    return Episode(sx, sy, qx, qy, classes=(0, 1))


PRESENCE_DRIFT_CO2_PPM = 250.0  # a CO2 sensor whose baseline shifted (NDIR ageing, or a recalibration gone wrong)
PRESENCE_DRIFT_LIGHT_GAIN = 0.4  # the node moved away from the window / its lens dusted over
PRESENCE_DRIFT_PIR_SEEN = 0.0  # a cabinet now hides the desks from the PIR: it no longer sees anyone
_COLUMN = {name: i for i, name in enumerate(pres.FEATURES)}


def _presence_drifting(device: int, start: int) -> Iterator[Sample]:
    """The unseen room's windows, shuffled per day; from ``start`` its sensors drift (see ``presence().drift``)."""
    mean, spread = _presence_scaler()
    task = pres.sample_task(DATASET_SEED, device)
    rng = np.random.default_rng([device, 7])
    light = [_COLUMN["light_mean"], _COLUMN["light_range"]]
    i = 0
    for day in itertools.count():
        x, y = pres.window_features(pres.simulate_day(task, day, pres.initial_state(task)))
        x, y = _shuffled(x.copy(), y, rng)
        for row, label in zip(x, y):
            strength = drift_strength(i, start)
            row = row.copy()
            row[_COLUMN["co2_mean"]] += PRESENCE_DRIFT_CO2_PPM * strength
            row[light] *= 1.0 - (1.0 - PRESENCE_DRIFT_LIGHT_GAIN) * strength
            row[_COLUMN["pir_count"]] *= 1.0 - (1.0 - PRESENCE_DRIFT_PIR_SEEN) * strength
            row[list(PRESENCE_LOG_COLUMNS)] = np.log1p(np.maximum(row[list(PRESENCE_LOG_COLUMNS)], 0.0))
            yield ((row - mean) / spread).astype(np.float32), np.int64(label)
            i += 1


def presence() -> TaskFamily:
    return TaskFamily(
        name="presence", n_way=2, n_features=len(pres.FEATURES), hidden=(32, 32), learning_rate=0.05, balanced=True,
        stream=_presence_stream,
        episode=lambda device, k, q: _presence_episode(device, k, q),
        drifting=_presence_drifting,
        drift=(
            f"the PIR is blocked, the CO2 baseline rises {PRESENCE_DRIFT_CO2_PPM:g} ppm, "
            f"light reads x{PRESENCE_DRIFT_LIGHT_GAIN:g}"
        ),
    )  # fmt: skip


FAMILIES: dict[str, Callable[[], TaskFamily]] = {"characters": characters, "keywords": keywords, "presence": presence}


def task_family(name: str) -> TaskFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]()
