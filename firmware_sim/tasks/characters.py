"""Handwriting-like characters: hundreds of stroke glyph classes, written by many writers.

An offline stand-in for Omniglot (same 28 × 28 size, same few-shot protocol).
A glyph class is a few pen strokes (chains of cubic Béziers) drawn from its
alphabet's style (how many strokes, how curvy); a writer renders any glyph with
their own stroke width, slant, rotation, scale, elastic wobble and sensor
noise, and no two renderings by one writer are identical. Devices are writers.

Classes are split by alphabet, as Omniglot's background/evaluation sets are,
so meta-test characters (and their alphabets) are never seen in meta-training.
Everything is a pure function of the seeds: the same seed gives the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from firmware_sim.tasks.episodes import ClassDrawer
from firmware_sim.tasks.strokes import cubic_bezier, rasterise, smooth_warp

IMAGE_SIZE = 28
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # channel-last, ink = 1.0 on background 0.0
N_ALPHABETS = 40
CHARACTERS_PER_ALPHABET = 24
N_CLASSES = N_ALPHABETS * CHARACTERS_PER_ALPHABET  # 960, about 60 % of Omniglot's 1,623
META_TEST_ALPHABETS = 10
_MARGIN = 4.0  # pixels of the 28 × 28 canvas kept free so distortions stay on it

# rng stream tags, so a class, a writer and a sample with equal ids never share random numbers
_ALPHABET, _GLYPH, _WRITER, _SAMPLE, _SPLIT, _TASK = range(6)


@dataclass(frozen=True)
class AlphabetStyle:
    """What the characters of one script have in common."""

    min_strokes: int
    max_strokes: int
    curviness: float  # 0 = straight pen moves, ~0.5 = loopy
    step: float  # typical pen move, fraction of the canvas


@dataclass(frozen=True, eq=False)  # holds arrays: compare them explicitly
class Glyph:
    """One character class: strokes as dense polylines in the unit square (x right, y down)."""

    class_id: int
    strokes: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class WriterStyle:
    """How one writer renders every glyph; devices differ by this."""

    stroke_width: float  # pixels at 28 × 28
    slant: float  # horizontal shear
    rotation: float  # radians
    scale: tuple[float, float]
    elastic: float  # amplitude of the smooth warp, unit-square units
    jitter: float  # per-sample variation on top of the writer's habits
    noise: float  # pixel noise std


def alphabet_style(seed: int, alphabet: int) -> AlphabetStyle:
    rng = np.random.default_rng([seed, _ALPHABET, alphabet])
    low = int(rng.integers(1, 3))
    return AlphabetStyle(
        min_strokes=low,
        max_strokes=low + int(rng.integers(1, 3)),
        curviness=float(rng.uniform(0.0, 0.6)),
        step=float(rng.uniform(0.25, 0.5)),
    )


def glyph(seed: int, class_id: int) -> Glyph:
    """The character with this class id; the same (seed, class_id) always gives the same strokes."""
    if not 0 <= class_id < N_CLASSES:
        raise ValueError(f"class_id must be in [0, {N_CLASSES}), got {class_id}")
    style = alphabet_style(seed, class_id // CHARACTERS_PER_ALPHABET)
    rng = np.random.default_rng([seed, _GLYPH, class_id])
    strokes = []
    for _ in range(int(rng.integers(style.min_strokes, style.max_strokes + 1))):
        point = rng.uniform(0.15, 0.85, size=2)
        pieces = []
        for _ in range(int(rng.integers(1, 4))):
            angle = rng.uniform(0.0, 2 * np.pi)
            end = np.clip(point + style.step * rng.uniform(0.6, 1.4) * np.array([np.cos(angle), np.sin(angle)]), 0.05, 0.95)
            normal = np.array([-(end - point)[1], (end - point)[0]])
            bend = rng.normal(0.0, style.curviness, size=2)
            control = np.stack([point, point + (end - point) / 3 + bend[0] * normal, point + 2 * (end - point) / 3 + bend[1] * normal, end])
            pieces.append(cubic_bezier(control) if not pieces else cubic_bezier(control)[1:])
            point = end
        strokes.append(np.concatenate(pieces))
    return Glyph(class_id, _fill_box(strokes))


def _fill_box(strokes: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Centre the glyph and scale its longer side to the unit square, as characters are written to fill a box."""
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = 0.9 / max(float((high - low).max()), 0.2)
    return tuple(((s - (low + high) / 2) * scale + 0.5) for s in strokes)


def writer_style(seed: int, writer: int) -> WriterStyle:
    rng = np.random.default_rng([seed, _WRITER, writer])
    return WriterStyle(
        stroke_width=float(rng.uniform(1.2, 2.6)),
        slant=float(rng.normal(0.0, 0.2)),
        rotation=float(rng.normal(0.0, 0.1)),
        scale=(float(rng.uniform(0.8, 1.05)), float(rng.uniform(0.8, 1.05))),
        elastic=float(rng.uniform(0.01, 0.04)),
        jitter=float(rng.uniform(0.03, 0.06)),
        noise=float(rng.uniform(0.0, 0.08)),
    )


def render(g: Glyph, writer: WriterStyle, rng: np.random.Generator, slant_offset: float = 0.0) -> np.ndarray:
    """One handwritten instance of ``g`` by ``writer``: ``IMAGE_SHAPE`` float32 in [0, 1]."""
    slant = writer.slant + slant_offset + rng.normal(0.0, writer.jitter * 2)
    angle = writer.rotation + rng.normal(0.0, writer.jitter * 2)
    sx, sy = np.array(writer.scale) * (1.0 + rng.normal(0.0, writer.jitter, size=2))
    cos, sin = np.cos(angle), np.sin(angle)
    linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, slant], [0.0, 1.0]]) @ np.diag([sx, sy])
    shift = rng.normal(0.0, writer.jitter, size=2)
    warp_rng = np.random.default_rng(rng.integers(2**63))
    strokes = []
    for stroke in g.strokes:
        local = stroke - 0.5
        # a per-sample warp with a shared amplitude: the writer's habit plus this instance's wobble
        local = smooth_warp(local, warp_rng, writer.elastic + writer.jitter)
        canvas = (local @ linear.T + 0.5 + shift) * (IMAGE_SIZE - 2 * _MARGIN) + _MARGIN
        strokes.append(canvas)
    width = writer.stroke_width * (1.0 + rng.normal(0.0, 0.1))
    image = rasterise(strokes, IMAGE_SIZE, max(width, 0.8))
    if writer.noise:
        image = np.clip(image + rng.normal(0.0, writer.noise, size=image.shape), 0.0, 1.0)
    return image.astype(np.float32).reshape(IMAGE_SHAPE)


@dataclass(frozen=True)
class ClassSplit:
    """Class ids for meta-training and meta-testing; disjoint by construction (whole alphabets)."""

    meta_train: tuple[int, ...]
    meta_test: tuple[int, ...]


def class_split(seed: int, n_test_alphabets: int = META_TEST_ALPHABETS) -> ClassSplit:
    if not 0 < n_test_alphabets < N_ALPHABETS:
        raise ValueError(f"n_test_alphabets must be in (0, {N_ALPHABETS})")
    alphabets = np.random.default_rng([seed, _SPLIT]).permutation(N_ALPHABETS)
    test = set(int(a) for a in alphabets[:n_test_alphabets])
    per = CHARACTERS_PER_ALPHABET
    return ClassSplit(
        meta_train=tuple(c for c in range(N_CLASSES) if c // per not in test),
        meta_test=tuple(c for c in range(N_CLASSES) if c // per in test),
    )


class CharacterSet:
    """All glyphs of one seed, cached after first use; draws examples for the episode sampler."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._glyphs: dict[int, Glyph] = {}

    def glyph(self, class_id: int) -> Glyph:
        if class_id not in self._glyphs:
            self._glyphs[class_id] = glyph(self.seed, class_id)
        return self._glyphs[class_id]

    def drawer(self, writers: Sequence[int]) -> ClassDrawer:
        """A :data:`ClassDrawer` whose examples come from writers picked at random from ``writers``."""
        styles = [writer_style(self.seed, w) for w in writers]

        def draw(class_id: int, count: int, rng: np.random.Generator) -> np.ndarray:
            picks = rng.integers(len(styles), size=count)
            return np.stack([render(self.glyph(class_id), styles[p], rng) for p in picks])

        return draw


@dataclass(frozen=True)
class CharacterTask:
    """A device's task: one writer classifying their own ``n_way`` characters."""

    writer: int
    style: WriterStyle
    classes: tuple[int, ...]
    slant_drift_per_sample: float = 0.0  # the writer's hand changing over the stream


def sample_task(
    seed: int, device: int, classes: Sequence[int], n_way: int = 5, slant_drift_per_sample: float = 0.0
) -> CharacterTask:
    """Device ``device`` is writer ``device``, holding ``n_way`` classes drawn from ``classes``."""
    rng = np.random.default_rng([seed, _TASK, device])
    chosen = tuple(int(c) for c in rng.choice(np.asarray(classes), size=n_way, replace=False))
    return CharacterTask(device, writer_style(seed, device), chosen, slant_drift_per_sample)


class CharacterStream:
    """Labelled images a device's writer produces, one at a time, labels 0..n_way-1."""

    def __init__(self, task: CharacterTask, characters: CharacterSet, seed: int | tuple[int, ...]) -> None:
        self.task = task
        self.characters = characters
        self._rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), _SAMPLE])
        self.samples_emitted = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        return self

    def __next__(self) -> tuple[np.ndarray, int]:
        label = int(self._rng.integers(len(self.task.classes)))
        drift = self.task.slant_drift_per_sample * self.samples_emitted
        image = render(self.characters.glyph(self.task.classes[label]), self.task.style, self._rng, drift)
        self.samples_emitted += 1
        return image, label

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [next(self) for _ in range(n)]
        return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)
